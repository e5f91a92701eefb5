"""Synthetic users of the creator platform's API: one Locust user class per service.

It ships inside the package (:data:`drdrill.settings.LOCUSTFILE`). Run it by hand, from a checkout::

    locust -f drdrill/traffic/locustfile.py --headless -u 10 -r 10 -t 60s -H http://127.0.0.1:8080

or wherever drdrill is installed: ``locust -f "$(python -c 'import drdrill.settings as s;
print(s.LOCUSTFILE)')" ...``

and add ``--drdrill-history history.jsonl --drdrill-run-id myrun`` to record every request as a
drdrill history (that is what ``drdrill`` does). ``--drdrill-rate`` sets requests per second per
user (default 10); ``--drdrill-timeout`` the seconds before a request times out (default 5).

Users are spread evenly over the services, so ``-u 10`` gives two users per service. Every request
names its service and operation in its context; writes carry a client-generated unique key and are
logged as an invoke before they are sent (see :mod:`drdrill.traffic.recorder`).

A production write rate: ``--drdrill-payments-per-s 200`` adds payment writers (:class:`PaymentWriter`)
that create 200 payments a second between them, each paced on its own clock at most 5/s, so
ceil(200 / 5) = 40 writers (:class:`drdrill.traffic.load.PaymentLoad`). The ``-u`` browsing users keep
running beside them so every service has traffic; in this mode their payments user only reads (the
writers' payments), so the payment rate is exactly the one asked. ``--drdrill-ramp-s 60`` ramps the
writers from none to all over 60 s, then holds (:class:`PaymentRateShape`, a Locust load shape,
which ticks once a second; without a payment rate it just keeps ``-u`` users at ``-r``). ``-t``
still bounds the run::

    locust -f drdrill/traffic/locustfile.py --headless -u 5 -r 5 --drdrill-rate 2 -t 120s \
        -H http://127.0.0.1:8080 --drdrill-payments-per-s 200 --drdrill-ramp-s 30
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque
from typing import Any

from locust import FastHttpUser, LoadTestShape, events, task

from drdrill.errors import TrafficError
from drdrill.traffic.load import PaymentLoad, next_task_s, spread
from drdrill.traffic.recorder import install

recorder = install(events)

LOAD: PaymentLoad | None = None
"""The payment rate asked (``--drdrill-payments-per-s``); None: the browsing users alone."""

RECENT_PAYMENTS: deque[str] = deque(maxlen=200)
"""Keys of the payment writers' latest payments, which the browsing payments users read back."""


def _positive_or_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


@events.init_command_line_parser.add_listener
def _(parser: Any, **kwargs: Any) -> None:
    group = parser.add_argument_group("drdrill load", "a production write rate: payments per second")
    group.add_argument("--drdrill-payments-per-s", type=_positive_or_zero, default=0.0,
                       help="payments per second created by paced payment writers, beside the -u "
                            "browsing users (default 0: no writers)")
    group.add_argument("--drdrill-ramp-s", type=_positive_or_zero, default=0.0,
                       help="seconds over which the writers ramp from none to the rate, then hold "
                            "(default 0: all at once)")


@events.init.add_listener
def _(environment: Any, **kwargs: Any) -> None:
    global LOAD
    options = environment.parsed_options
    if options is None or not getattr(options, "drdrill_payments_per_s", 0):
        return
    try:
        LOAD = PaymentLoad(options.drdrill_payments_per_s, options.drdrill_ramp_s)
    except TrafficError as exc:
        raise SystemExit(f"drdrill: {exc}") from None
    # browsing users are a fixed count per service; the writers are the only weighted class, so
    # the shape's total beyond the browsing users is all writers
    counts = spread(options.num_users or 0, [c.service for c in BROWSING])
    for user_class in BROWSING:
        user_class.fixed_count = counts[user_class.service]
    PaymentWriter.rate_s = LOAD.per_writer_s


class PlatformUser(FastHttpUser):
    """A user of one platform service; subclasses set ``service``."""

    abstract = True
    service = ""
    rate_s = 0.0  # tasks per second of every user of the class; 0: --drdrill-rate
    connection_timeout = 2.0
    network_timeout = 5.0
    max_retries = 0

    def __init__(self, environment):
        options = environment.parsed_options
        if options is not None:
            type(self).network_timeout = options.drdrill_timeout
            type(self).connection_timeout = min(options.drdrill_timeout, 2.0)
        super().__init__(environment)
        self.process = recorder.next_process()
        self.rate = self.rate_s or (options.drdrill_rate if options is not None else 10.0)
        self.next_task_s: float | None = None

    def wait_time(self) -> float:
        """Pace the user at ``rate`` tasks per second, at a random phase of its own (re-drawn after a
        stall, so users a stall held back together do not go on in lockstep: :func:`next_task_s`)."""
        now = time.monotonic()
        self.next_task_s = next_task_s(self.next_task_s, now, 1.0 / self.rate)
        return self.next_task_s - now

    def context(self) -> dict:
        return {"process": self.process, "service": self.service}

    def read(self, f: str, path: str, lookup: bool = False) -> None:
        self.client.get(path, name=f, context={"f": f, "lookup": lookup})

    def write(self, f: str, method: str, path: str, body: dict) -> str | None:
        """Send a write with a fresh key, logging its invoke first; returns the key (None: not sent)."""
        key = recorder.new_key(self.service, self.process)
        if not recorder.invoke(self.process, f, self.service, key, time.time()):
            return None  # Locust is quitting: the attempt could no longer be recorded
        self.client.request(method, path, name=f, json={**body, "key": key},
                            context={"f": f, "key": key})
        return key


    def create_payment(self) -> str | None:
        """Create one payment; one in four is a saga, left pending and settled later by the platform."""
        return self.write("payments.create", "POST", "/payments",
                          {"amount_cents": random.randint(100, 50_000), "saga": random.random() < 0.25})


class PaymentsUser(PlatformUser):
    service = "payments"

    def on_start(self):
        self.recent_keys: list[str] = []

    @task(1)
    def create(self):
        if LOAD is not None:  # the writers create the payments, at the asked rate; this user reads them
            self.read()
            return
        key = self.create_payment()
        if key is not None:
            self.recent_keys = (self.recent_keys + [key])[-20:]

    @task(1)
    def read(self):
        keys = self.recent_keys or RECENT_PAYMENTS
        key = random.choice(keys) if keys else "none"
        super().read("payments.read", f"/payments/{key}", lookup=True)


class PaymentWriter(PlatformUser):
    """Creates payments only, paced at its share of ``--drdrill-payments-per-s`` (spawned only then)."""

    service = "payments"

    @task
    def create(self):
        key = self.create_payment()
        if key is not None:
            RECENT_PAYMENTS.append(key)


class AuthUser(PlatformUser):
    service = "auth"

    @task
    def login(self):
        self.client.post("/auth/login", name="auth.login", json={"user": self.process},
                         context={"f": "auth.login"})


class UsersUser(PlatformUser):
    service = "users"

    @task(3)
    def read(self):
        super().read("users.read", f"/users/{random.randint(1, 1000)}")

    @task(1)
    def update(self):
        user_id = random.randint(1, 1000)
        self.write("users.update", "PUT", f"/users/{user_id}", {"display_name": f"user {user_id}"})


class StorefrontUser(PlatformUser):
    service = "storefront"

    @task
    def browse(self):
        super().read("storefront.browse", "/storefront")


class AnalyticsUser(PlatformUser):
    service = "analytics"

    @task
    def event(self):
        self.write("analytics.event", "POST", "/analytics/events", {"name": "page_view"})


BROWSING = [PaymentsUser, AuthUser, UsersUser, StorefrontUser, AnalyticsUser]


class PaymentRateShape(LoadTestShape):
    """Browsing users (``-u`` at ``-r``) plus, with a payment rate, writers ramping over ``--drdrill-ramp-s``.

    ``use_common_options``: ``-u``, ``-r`` and ``-t`` keep their meaning. The shape itself ends the
    run at ``-t`` (headless Locust starts its ``-t`` timer only after a shape has ended).
    """

    use_common_options = True

    def tick(self) -> tuple[int, float, list[type[PlatformUser]]] | None:
        options = self.runner.environment.parsed_options
        if options.run_time and self.get_run_time() >= options.run_time:
            return None
        browsing = options.num_users or 0
        known = set(self.runner.user_classes)
        if LOAD is None:
            return browsing, float(options.spawn_rate or browsing or 1), [c for c in BROWSING if c in known]
        users, spawn_rate = LOAD.tick(self.get_run_time(), browsing)
        classes = [c for c in BROWSING if c.fixed_count and c in known] + [PaymentWriter]
        return users, spawn_rate, classes
