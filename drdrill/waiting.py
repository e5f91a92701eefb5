"""Waiting for a condition until a deadline: the one retry loop drdrill uses (built on tenacity).

``wait_until(check, timeout_s=..., interval_s=..., what=...)`` calls ``check()`` until it returns a
truthy value, which it returns. When ``timeout_s`` passes first it raises :class:`~drdrill.errors.WaitTimeout` (a
``TargetError``) saying what was awaited, for how long, and the last value or
exception ``check`` gave — so the caller's message names the resource and what it looked like last.
``errors`` lists the exception types that count as "not yet" (retried); any other one propagates.
A ``check`` that is itself a bound on time (``deadline`` arguments) uses :func:`remaining_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import tenacity

from drdrill.errors import WaitTimeout

__all__ = ["WaitTimeout", "remaining_s", "wait_until"]

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    *,
    timeout_s: float,
    interval_s: float = 0.5,
    what: str = "the condition",
    errors: tuple[type[BaseException], ...] = (),
) -> T:
    """``check()``'s first truthy value, trying every ``interval_s`` for up to ``timeout_s``."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(max(timeout_s, 0.0)),
        wait=tenacity.wait_fixed(interval_s),
        retry=tenacity.retry_if_result(lambda value: not value)
        | tenacity.retry_if_exception_type(errors or ()),
        retry_error_callback=lambda state: _timed_out(state, what, timeout_s),
        reraise=True,
    )
    return retrying(check)


def remaining_s(deadline: float) -> float:
    """Seconds left until the ``time.monotonic()`` deadline (never negative)."""
    return max(0.0, deadline - time.monotonic())


def _timed_out(state: tenacity.RetryCallState, what: str, timeout_s: float) -> None:
    outcome = state.outcome
    if outcome is not None and outcome.failed:
        exc = outcome.exception()
        last: object = exc
        shown = f"{type(exc).__name__}: {exc}"
    else:
        last = outcome.result() if outcome is not None else None
        shown = repr(last)
    raise WaitTimeout(f"{what} did not happen within {timeout_s:g} s "
                      f"({state.attempt_number} checks; last: {shown})", last)
