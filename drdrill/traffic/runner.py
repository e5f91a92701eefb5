"""The traffic runner: starts the synthetic Locust users in a subprocess, waits until requests flow, stops them.

Locust runs in its own process because it monkey-patches the interpreter with gevent (in-process it
breaks boto3 and pytest, and stalls while a blocking step runs). It appends client ops to the run's
``history.jsonl``; its own output goes to ``traffic.log`` next to it.

Terms and units: ``users`` simulated users (spread evenly over the services); ``rate_per_user``
requests per second each; ``payments_per_s`` a production write rate: payment writers beside those
users create this many payments per second between them, reached over ``ramp_s`` seconds (see
:mod:`drdrill.traffic.load`; checked before Locust starts); ``max_duration_s`` a hard bound after which Locust stops by itself (its
``-t``), even if the harness died; ``timeout_s`` seconds a request may take before it counts as
timed out (outcome ``info``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from drdrill.catalog import SERVICES
from drdrill.errors import TrafficError
from drdrill.settings import LOCUSTFILE as DEFAULT_LOCUSTFILE
from drdrill.traffic.load import PaymentLoad

__all__ = ["DEFAULT_LOCUSTFILE", "TrafficRun"]

DEFAULT_SERVICES = SERVICES


class TrafficRun:
    """One Locust subprocess recording into a history; a context manager that always stops it."""

    def __init__(
        self,
        host: str,
        history_path: str | os.PathLike[str],
        run_id: str,
        users: int = 10,
        rate_per_user: float = 10.0,
        max_duration_s: float = 3600.0,
        timeout_s: float = 5.0,
        locustfile: str | os.PathLike[str] = DEFAULT_LOCUSTFILE,
        log_path: str | os.PathLike[str] | None = None,
        payments_per_s: float | None = None,
        ramp_s: float = 0.0,
    ) -> None:
        if users < 1:
            raise TrafficError(f"need at least one synthetic user, got {users}")
        if not host.startswith(("http://127.0.0.1", "http://localhost", "https://127.0.0.1")):
            raise TrafficError(
                f"synthetic traffic goes to 127.0.0.1 only on this harness; refusing host {host!r}")
        if not (isinstance(rate_per_user, int | float) and 0 < rate_per_user <= 1000):
            raise TrafficError(f"requests per second per user must be in (0, 1000], got {rate_per_user!r}")
        self.load = PaymentLoad(payments_per_s, ramp_s) if payments_per_s is not None else None
        if self.load is None and ramp_s:
            raise TrafficError("a ramp needs a payment rate (payments_per_s) to ramp to")
        self.host = host
        self.history_path = Path(history_path)
        self.run_id = run_id
        self.users = users
        self.rate_per_user = rate_per_user
        self.max_duration_s = max_duration_s
        self.timeout_s = timeout_s
        self.locustfile = Path(locustfile)
        self.log_path = Path(log_path) if log_path else self.history_path.with_name("traffic.log")
        self.process: subprocess.Popen[bytes] | None = None
        self.started_s: float | None = None

    def __repr__(self) -> str:
        load = f" + {self.load.payments_per_s:g} payments/s" if self.load else ""
        return f"TrafficRun({self.users} users{load} → {self.host})"

    @property
    def total_users(self) -> int:
        """Users Locust runs once any ramp is done: the browsing users plus the payment writers."""
        return self.users + (self.load.writers if self.load else 0)

    def command(self) -> list[str]:
        """The Locust command line."""
        return [
            sys.executable, "-m", "locust", "-f", str(self.locustfile), "--headless",
            "-u", str(self.users), "-r", str(self.users), "-H", self.host,
            "-t", f"{int(self.max_duration_s)}s", "--stop-timeout", "2",
            "--exit-code-on-error", "0", "--only-summary", "--loglevel", "WARNING",
            "--drdrill-history", str(self.history_path), "--drdrill-run-id", self.run_id,
            "--drdrill-rate", str(self.rate_per_user), "--drdrill-timeout", str(self.timeout_s),
        ] + ([] if self.load is None else [
            "--drdrill-payments-per-s", repr(self.load.payments_per_s),
            "--drdrill-ramp-s", repr(self.load.ramp_s),
        ])

    def start(self) -> TrafficRun:
        """Start Locust; returns at once (see :meth:`wait_until_flowing`)."""
        if not self.locustfile.is_file():
            raise TrafficError(f"no locustfile at {self.locustfile}")
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        self.history_path.touch()
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, start_new_session=True)
        log.close()
        self.started_s = time.time()
        return self

    def wait_until_flowing(self, timeout_s: float = 30.0,
                           services: Iterable[str] = DEFAULT_SERVICES) -> None:
        """Block until every service has at least one ``ok`` request in the history.

        TrafficError (with the tail of Locust's log) when Locust exits or the timeout passes first.
        """
        from drdrill.history import read_ops

        waiting = set(services)
        deadline = time.monotonic() + timeout_s
        offset_ops = 0
        while True:
            ops = list(read_ops(self.history_path))
            for op in ops[offset_ops:]:
                if op.get("type") == "ok":
                    waiting.discard(op.get("service"))
            offset_ops = len(ops)
            if not waiting:
                return
            if self.process is None or self.process.poll() is not None:
                raise TrafficError(f"Locust exited (code {self.process.returncode if self.process else '?'}) "
                                   f"before traffic flowed to {', '.join(sorted(waiting))}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TrafficError(
                    f"no successful request to {', '.join(sorted(waiting))} at {self.host} within "
                    f"{timeout_s:g} s; is the platform up? Locust log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """Stop Locust (SIGTERM, then SIGKILL after ``timeout_s``); its ops are flushed. Idempotent."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> TrafficRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
