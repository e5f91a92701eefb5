"""The one outcome classifier: what a user's request certainly did (ok), certainly did not (fail), or may have done (info).

Terms
-----
status
    The HTTP status code of the response, or None when no response arrived.
error kind
    Why no (good) response arrived, as :func:`error_kind` names it: ``refused`` (connection refused:
    nothing listened, the request was never sent), ``dns`` (the name did not resolve: never sent),
    ``timeout`` (no answer in time: it may have been processed), ``reset`` (the connection broke
    mid-request: it may have been processed), ``other`` (anything else: treated as unknown).
served by a service
    The response carries the ``X-Served-By`` header that every platform service sets; a 503 without
    it came from a load balancer that had no backend to send the request to.

Rules (Jepsen's discipline: when in doubt, ``info``):

    ============================================  =======
    2xx/3xx, no error                             ok
    404 served by a service, for a lookup         ok      (answered; whether data was lost is the
                                                          final read's question, not availability's)
    4xx                                           fail    (rejected: it did not take effect)
    503 not served by a service                   fail    (a load balancer with no backend)
    other 5xx                                     info    (a service or gateway may have acted)
    2xx/3xx but the body broke off               info
    no response: refused, dns                     fail
    no response: timeout, reset, other            info
    ============================================  =======
"""

from __future__ import annotations

import errno
import socket

__all__ = ["classify", "error_kind"]

_NEVER_SENT = {"refused", "dns"}


def classify(status: int | None, error: str | None, served_by_service: bool,
             lookup: bool = False) -> str:
    """``ok``, ``fail`` or ``info`` for a request (see the module docstring).

    ``lookup``: the request reads a record that may legitimately be absent (a 404 is an answer).
    """
    if status is not None and status > 0:
        if lookup and status == 404 and served_by_service and not error:
            return "ok"
        if 400 <= status < 500:
            return "fail"
        if status >= 500:
            return "fail" if status == 503 and not served_by_service else "info"
        return "info" if error else "ok"
    if error in _NEVER_SENT:
        return "fail"
    return "info"


def error_kind(exception: BaseException | None) -> str | None:
    """Name the kind of a connection-level exception (None when there was none)."""
    if exception is None:
        return None
    if isinstance(exception, ConnectionRefusedError) or getattr(exception, "errno", None) == errno.ECONNREFUSED:
        return "refused"
    if isinstance(exception, socket.gaierror):
        return "dns"
    if isinstance(exception, TimeoutError | socket.timeout) or "timeout" in type(exception).__name__.lower():
        return "timeout"
    if isinstance(exception, ConnectionResetError | BrokenPipeError | ConnectionAbortedError) or getattr(
        exception, "errno", None) in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    name = type(exception).__name__
    if name in {"RemoteDisconnected", "IncompleteRead", "HTTPParseError", "BadStatusLine"}:
        return "reset"
    return "other"
