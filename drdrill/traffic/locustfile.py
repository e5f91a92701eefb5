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
"""

from __future__ import annotations

import random
import time

from locust import FastHttpUser, events, task

from drdrill.traffic.recorder import install

recorder = install(events)


class PlatformUser(FastHttpUser):
    """A user of one platform service; subclasses set ``service``."""

    abstract = True
    service = ""
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
        self.rate = options.drdrill_rate if options is not None else 10.0
        self.next_task_s: float | None = None

    def wait_time(self) -> float:
        """Pace the user at ``rate`` tasks per second, at a random phase of its own.

        Users started together would otherwise send in the same millisecond and sample the platform
        only as finely as one user does. A user that fell behind (a slow request) does not burst
        to catch up.
        """
        now = time.monotonic()
        interval_s = 1.0 / self.rate
        if self.next_task_s is None:
            self.next_task_s = now + random.uniform(0, interval_s)
        else:
            self.next_task_s = max(self.next_task_s + interval_s, now)
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


class PaymentsUser(PlatformUser):
    service = "payments"

    def on_start(self):
        self.recent_keys: list[str] = []

    @task(1)
    def create(self):
        # one payment in four is a saga: left pending, settled later by the platform's reconciler
        key = self.write("payments.create", "POST", "/payments",
                         {"amount_cents": random.randint(100, 50_000), "saga": random.random() < 0.25})
        if key is not None:
            self.recent_keys = (self.recent_keys + [key])[-20:]

    @task(1)
    def read(self):
        key = random.choice(self.recent_keys) if self.recent_keys else "none"
        super().read("payments.read", f"/payments/{key}", lookup=True)


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
