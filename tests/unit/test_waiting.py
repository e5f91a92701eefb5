"""The one wait-until-deadline helper: returns the first truthy value, retries listed errors, names the wait."""

from __future__ import annotations

import itertools

import pytest

from drdrill.errors import TargetError, WaitTimeout
from drdrill.waiting import wait_until


def test_returns_the_first_truthy_value():
    values = iter([None, 0, "", "ready"])
    assert wait_until(lambda: next(values), timeout_s=5, interval_s=0) == "ready"


def test_retries_the_listed_errors_only():
    calls = itertools.count()

    def flaky():
        if next(calls) < 2:
            raise ConnectionError("refused")
        return 42

    assert wait_until(flaky, timeout_s=5, interval_s=0, errors=(OSError,)) == 42
    with pytest.raises(ValueError, match="boom"):
        wait_until(lambda: (_ for _ in ()).throw(ValueError("boom")), timeout_s=5, interval_s=0,
                   errors=(OSError,))


def test_timeout_names_what_was_awaited_and_the_last_value():
    with pytest.raises(WaitTimeout, match=r"the leader did not happen within 0.2 s .*last: \[\]") as info:
        wait_until(list, timeout_s=0.2, interval_s=0.05, what="the leader")
    assert isinstance(info.value, TargetError)


def test_timeout_after_errors_reports_the_last_error():
    def refused():
        raise ConnectionRefusedError("port 8008")

    with pytest.raises(WaitTimeout, match="ConnectionRefusedError: port 8008") as info:
        wait_until(refused, timeout_s=0.2, interval_s=0.05, what="patroni", errors=(OSError,))
    assert isinstance(info.value.last, ConnectionRefusedError)
