"""Payment-rate load: how many paced payment writers a rate needs, and the ramp the load shape follows.

Pure functions, shared by the locustfile (inside Locust) and :class:`~drdrill.traffic.runner.TrafficRun`
(which checks the input before Locust starts).

Terms and units: ``payments_per_s`` the aggregate rate of payments the writers create (acknowledged
or not: an open-loop target, each writer paced on its own clock); ``writers`` the payment-writer
users that share it, each at ``per_writer_s`` = payments_per_s / writers, at most
:data:`MAX_PAYMENTS_PER_WRITER_S`; ``browsing`` the per-service users that keep running beside them
(spread over the services by :func:`spread`); ``ramp_s`` the seconds over which the writers go
from none to all of them (0: all at once), after which the rate holds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from drdrill.errors import TrafficError

__all__ = [
    "next_task_s",
    "MAX_PAYMENTS_PER_S",
    "MAX_PAYMENTS_PER_WRITER_S",
    "MAX_RAMP_S",
    "PaymentLoad",
    "spread",
]

MAX_PAYMENTS_PER_WRITER_S = 5.0
"""One writer sends one payment at a time: 5/s leaves it 200 ms a payment before it falls behind."""

MAX_PAYMENTS_PER_S = 5000.0
"""Far beyond what one Locust process drives on this harness (~5,000 req/s on one core, recorded)."""

MAX_RAMP_S = 86400.0


@dataclass(frozen=True)
class PaymentLoad:
    """An aggregate payment rate, reached over ``ramp_s`` and then held; checked when made."""

    payments_per_s: float
    ramp_s: float = 0.0

    def __post_init__(self) -> None:
        rate, ramp = self.payments_per_s, self.ramp_s
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) \
                or not 0 < rate <= MAX_PAYMENTS_PER_S:
            raise TrafficError(f"payments per second must be a number in (0, {MAX_PAYMENTS_PER_S:g}], "
                               f"got {rate!r}")
        if isinstance(ramp, bool) or not isinstance(ramp, int | float) or not math.isfinite(ramp) \
                or not 0 <= ramp <= MAX_RAMP_S:
            raise TrafficError(f"the ramp must be a number of seconds in [0, {MAX_RAMP_S:g}], got {ramp!r}")

    @property
    def writers(self) -> int:
        """Payment writers needed: ceil(rate / :data:`MAX_PAYMENTS_PER_WRITER_S`)."""
        return max(1, math.ceil(self.payments_per_s / MAX_PAYMENTS_PER_WRITER_S - 1e-9))

    @property
    def per_writer_s(self) -> float:
        """Payments per second each writer sends (≤ :data:`MAX_PAYMENTS_PER_WRITER_S`)."""
        return self.payments_per_s / self.writers

    def writers_at(self, elapsed_s: float) -> int:
        """Writers running ``elapsed_s`` after the start: a linear ramp to :attr:`writers`, then all."""
        if self.ramp_s <= 0 or elapsed_s >= self.ramp_s:
            return self.writers
        return min(self.writers, math.floor(self.writers * max(elapsed_s, 0.0) / self.ramp_s))

    def rate_at(self, elapsed_s: float) -> float:
        """The aggregate payment rate asked ``elapsed_s`` after the start (payments/s)."""
        return self.writers_at(elapsed_s) * self.per_writer_s

    def tick(self, elapsed_s: float, browsing: int) -> tuple[int, float]:
        """The load shape's answer at ``elapsed_s``: (total users, spawn rate per second).

        Browsing users are all there from the start; writers join along the ramp. The spawn rate is
        high enough that each one-second step of the ramp is spawned well within its second.
        """
        total = browsing + self.writers_at(elapsed_s)
        per_second = self.writers / self.ramp_s if self.ramp_s > 0 else self.writers
        return total, float(max(browsing, 4 * math.ceil(per_second), 1))


def spread(users: int, slots: Sequence[str]) -> dict[str, int]:
    """``users`` spread evenly over ``slots`` (the first ones take the remainder): 7 over 5 -> 2,2,1,1,1."""
    if users < 0:
        raise TrafficError(f"need a non-negative number of users, got {users}")
    base, extra = divmod(users, len(slots))
    return {slot: base + (1 if i < extra else 0) for i, slot in enumerate(slots)}


def next_task_s(previous_s: float | None, now_s: float, interval_s: float,
                rng: random.Random | None = None) -> float:  # fmt: skip
    """When a user paced at one task per ``interval_s`` sends next (monotonic seconds).

    The first task and any after falling a whole interval behind (a stall: a slow request, the
    platform pausing) start at a fresh random phase: users started together, or held back together by
    one stall, would otherwise send in the same millisecond from then on — payments in bursts, which
    a region loss takes or spares as a whole, and a platform sampled only as finely as one user
    samples it. A user behind by less keeps its phase and does not burst to catch up.
    """
    rng = rng or random
    if previous_s is None or previous_s + interval_s < now_s:
        return now_s + rng.uniform(0, interval_s)
    return previous_s + interval_s
