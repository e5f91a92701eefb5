"""The ground-truth service as a subprocess: start it, stop it, and call its control API."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import drdrill
from drdrill.testing.groundtruth.server import HOST

__all__ = ["GroundTruthError", "GroundTruthService"]


class GroundTruthError(RuntimeError):
    """The ground-truth service could not start, or refused a control request."""


class GroundTruthService:
    """Runs the ground-truth service in a subprocess; a context manager."""

    def __init__(self, region: str = "primary") -> None:
        self.region = region
        self.port: int | None = None
        self.control_port: int | None = None
        self.pid: int | None = None
        self.base_url = ""
        self.control_url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float = 10.0) -> GroundTruthService:
        """Spawn the service and wait (up to ``timeout_s``) for its ready line."""
        if self.running:
            raise GroundTruthError(f"ground-truth service already running (pid {self.pid})")
        env = dict(os.environ)
        root = str(Path(drdrill.__file__).resolve().parents[1])  # the child finds drdrill uninstalled
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "drdrill.testing.groundtruth",
               "--port", "0", "--control-port", "0", "--region", self.region]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
        try:
            ready = self._read_ready_line(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.port = int(ready["port"])
        self.control_port = int(ready["control_port"])
        self.pid = int(ready["pid"])
        self.base_url = f"http://{HOST}:{self.port}"
        self.control_url = f"http://{HOST}:{self.control_port}"
        return self

    def _read_ready_line(self, timeout_s: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        buf = b""
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in buf:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GroundTruthError(f"ground-truth service not ready within {timeout_s} s")
                if not sel.select(remaining):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    code = self._proc.wait()
                    raise GroundTruthError(f"ground-truth service exited with {code} before ready")
                buf += chunk
        line = buf.split(b"\n", 1)[0]
        try:
            return json.loads(line)
        except ValueError:
            raise GroundTruthError(f"ground-truth service printed {line[:200]!r}, not its ready line") from None

    def stop(self) -> None:
        """SIGTERM the service, wait for it, kill it if it lingers. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> GroundTruthService:
        return self if self.running else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- control calls -------------------------------------------------------------------------

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        if not self.control_url:
            raise GroundTruthError("ground-truth service not started")
        url = self.control_url + path
        data = None if method == "GET" else json.dumps(payload or {}).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with self._opener.open(req, timeout=10.0) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise GroundTruthError(f"{method} {url} answered {exc.code}: {detail}") from None

    def outage(self, duration_s: float, mode: str = "refuse",
               services: list[str] | None = None) -> dict[str, Any]:
        """Start an outage now; returns ``{"start_s", "planned_end_s"}``."""
        payload: dict[str, Any] = {"duration_s": duration_s, "mode": mode}
        if services is not None:
            payload["services"] = list(services)
        return self._call("POST", "/_control/outage", payload)

    def failover(self, duration_s: float, lose_last_s: float, mode: str = "refuse") -> dict[str, Any]:
        """Lose the writes of the last ``lose_last_s`` s, then an outage; returns what was lost."""
        payload = {"duration_s": duration_s, "lose_last_s": lose_last_s, "mode": mode}
        return self._call("POST", "/_control/failover", payload)

    def truth(self) -> dict[str, Any]:
        return self._call("GET", "/_control/truth")

    def lookup(self, prefix: str) -> dict[str, list[str]]:
        return self._call("GET", "/_lookup?prefix=" + urllib.parse.quote(prefix, safe=""))

    def reset(self) -> None:
        self._call("POST", "/_control/reset")
