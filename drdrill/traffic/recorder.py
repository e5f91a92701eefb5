"""The request recorder: a Locust event listener that writes one history op per request (runs inside Locust).

A locustfile calls :func:`install` once at import. With ``--drdrill-history PATH`` on the Locust
command line every request becomes an op in that history (see :mod:`drdrill.history`); without it
nothing is recorded and the locustfile runs as plain Locust.

Per request, the listener reads from the request's ``context``: ``service`` (which platform service),
``f`` (the operation name, also the request's Locust name) and, for writes, ``key``. Writes are
logged as an ``invoke`` with :meth:`Recorder.invoke` *before* they are sent (written through to
disk) and completed by the listener afterwards. Completions are flushed at least every 0.5 s, and on
test stop / quit.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

from drdrill.history import HistoryWriter
from drdrill.traffic.outcome import classify, error_kind

__all__ = ["Recorder", "install", "recorder"]

FLUSH_INTERVAL_S = 0.5


class Recorder:
    """Writes client ops of one Locust process; ``enabled`` only when a history path was given."""

    def __init__(self) -> None:
        self.writer: HistoryWriter | None = None
        self.closed = False
        self.run_id = "run"
        self._processes = itertools.count(1)
        self._sequences: dict[str, itertools.count] = {}

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def open(self, path: str, run_id: str) -> None:
        """Start recording into ``path``; keys start with ``run_id``."""
        self.writer = HistoryWriter(path, flush_interval_s=FLUSH_INTERVAL_S)
        self.run_id = run_id

    def next_process(self) -> str:
        """A fresh ``client-<n>`` name for a new simulated user."""
        return f"client-{next(self._processes)}"

    def new_key(self, service: str, process: str) -> str:
        """A unique write key: ``<run id>-<service>-<user>-<sequence>``; each user's sequence counts 1, 2, ...

        Consecutive keys of one user differ only in the zero-padded sequence, so lost keys compress
        into ranges in the evidence.
        """
        sequence = self._sequences.setdefault(process, itertools.count(1))
        return f"{self.run_id}-{service}-{process.removeprefix('client-')}-{next(sequence):08d}"

    def invoke(self, process: str, f: str, service: str, key: str, time_s: float) -> bool:
        """Log a write's intent, on disk before the request is sent; False: do not send it.

        After the recording has closed (Locust is quitting) a write must not be sent: nothing would
        record that it was attempted, and the final read would find a key no client wrote.
        """
        if self.closed:
            return False
        if self.writer is not None:
            self.writer.append({"process": process, "type": "invoke", "f": f, "service": service,
                                "key": key, "time_s": time_s}, flush=True)
        return True

    def on_request(self, request_type: str = "", name: str = "", response_time: float = 0.0,
                   response: Any = None, context: dict | None = None, exception: Any = None,
                   start_time: float | None = None, **kwargs: Any) -> None:
        """Locust ``request`` event listener: one completion op per request."""
        if self.writer is None:
            return
        context = context or {}
        status = getattr(response, "status_code", None) or None
        headers = getattr(response, "headers", None)  # not `or {}`: its truth test sums every header
        served_by = _header(headers, "x-served-by")
        kind = error_kind(getattr(response, "error", None) or exception) if status is None else None
        if status is not None and exception is not None and status < 400:
            kind = error_kind(exception)  # the body broke off after a good status line
        op_type = classify(status, kind, served_by is not None, lookup=bool(context.get("lookup")))
        error = kind if kind else (f"http {status}" if status and status >= 400 else None)
        if error and exception is not None and kind in ("other",):
            error = f"other: {type(exception).__name__}: {str(exception)[:120]}"
        time_s = start_time if start_time is not None else 0.0
        self.writer.append({
            "process": context.get("process", "client-0"),
            "type": op_type,
            "f": context.get("f", name),
            "service": context.get("service"),
            "key": context.get("key"),
            "time_s": time_s,
            "end_s": time_s + response_time / 1000.0,
            "latency_ms": round(response_time, 3),
            "status": status,
            "error": error,
            "region": _header(headers, "x-region"),
        })

    def flush(self, **kwargs: Any) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self, **kwargs: Any) -> None:
        if self.writer is not None:
            self.closed = True
            self.writer.close()
            self.writer = None


def _header(headers: Any, name: str) -> str | None:
    if headers is None:
        return None
    try:
        value = headers.get(name)
    except Exception:  # noqa: BLE001 - odd header containers on error responses
        return None
    return value or None


recorder = Recorder()


def install(events: Any) -> Recorder:
    """Register the ``--drdrill-*`` options and the listeners on a Locust ``events`` object."""

    @events.init_command_line_parser.add_listener
    def _(parser: Any, **kwargs: Any) -> None:
        group = parser.add_argument_group("drdrill", "record every request into a drdrill history")
        group.add_argument("--drdrill-history", default=os.environ.get("DRDRILL_HISTORY", ""),
                           help="history.jsonl to append client ops to (recording is off without it)")
        group.add_argument("--drdrill-run-id", default=os.environ.get("DRDRILL_RUN_ID", "run"),
                           help="prefix of every write key (the final read looks keys up by it)")
        group.add_argument("--drdrill-rate", type=float, default=10.0,
                           help="requests per second per simulated user (default 10)")
        group.add_argument("--drdrill-timeout", type=float, default=5.0,
                           help="seconds before a request counts as timed out (default 5)")

    @events.init.add_listener
    def _(environment: Any, **kwargs: Any) -> None:
        options = environment.parsed_options
        if options is not None and options.drdrill_history:
            recorder.open(options.drdrill_history, options.drdrill_run_id)
            import gevent

            def flush_periodically() -> None:
                while recorder.enabled:
                    gevent.sleep(FLUSH_INTERVAL_S / 2)
                    recorder.flush()

            gevent.spawn(flush_periodically)

    events.request.add_listener(recorder.on_request)
    events.test_stop.add_listener(recorder.flush)
    events.quitting.add_listener(recorder.close)
    return recorder
