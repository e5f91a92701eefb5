"""The outcome classifier: ok / fail / info for every way a request can end."""

from __future__ import annotations

import socket

import pytest

from drdrill.traffic.outcome import classify, error_kind


@pytest.mark.parametrize("status, error, served, expected", [
    (200, None, True, "ok"),
    (201, None, True, "ok"),
    (302, None, True, "ok"),
    (404, None, True, "fail"),
    (409, None, True, "fail"),
    (429, None, False, "fail"),
    (503, None, False, "fail"),   # load balancer with no backend: never reached a service
    (503, None, True, "info"),    # the service itself: it may have acted
    (500, None, True, "info"),
    (502, None, False, "info"),   # a gateway may have forwarded it
    (504, None, False, "info"),
    (200, "reset", True, "info"),  # body broke off
    (None, "refused", False, "fail"),
    (None, "dns", False, "fail"),
    (None, "timeout", False, "info"),
    (None, "reset", False, "info"),
    (None, "other", False, "info"),
    (0, "refused", False, "fail"),
])
def test_classify(status, error, served, expected):
    assert classify(status, error, served) == expected


def test_a_lookup_answered_not_found_by_the_service_is_served():
    assert classify(404, None, True, lookup=True) == "ok"
    assert classify(404, None, False, lookup=True) == "fail"  # not the service answering
    assert classify(404, None, True, lookup=False) == "fail"


def test_error_kinds():
    assert error_kind(None) is None
    assert error_kind(ConnectionRefusedError(111, "refused")) == "refused"
    assert error_kind(socket.gaierror(-2, "Name or service not known")) == "dns"
    assert error_kind(TimeoutError("timed out")) == "timeout"
    assert error_kind(ConnectionResetError(104, "reset")) == "reset"
    assert error_kind(BrokenPipeError(32, "pipe")) == "reset"
    assert error_kind(ValueError("odd")) == "other"

    class GeventTimeout(Exception):
        pass

    assert error_kind(GeventTimeout()) == "timeout"
