"""Ground-truth service: a fake creator-platform API whose outages and data losses are known exactly.

drdrill measures RTO (how long users were not served) and RPO (how many seconds of acknowledged
writes were lost) from the client side. To test those measurements, this module provides a
platform whose downtime and data loss are *chosen* and *recorded* by the platform itself; the
tests compare drdrill's measurement against this record (the "truth").

Terms and units
---------------
time
    Every instant is epoch seconds as returned by ``time.time()`` on this machine (wall clock,
    float), so it can be compared with client-side ``time.time()`` readings. Durations are
    seconds (float). Names carry their unit: ``_s`` seconds, ``_ms`` milliseconds. Outage
    durations are scheduled on the event loop's monotonic clock (``loop.call_later``); the
    wall-clock instants at which an outage was actually applied and lifted are what is recorded.
service port
    The TCP port (127.0.0.1 only) serving the platform API and ``GET /_lookup``.
control port
    A second TCP port serving ``/_control/*`` and ``GET /_lookup``. It is never subject to
    outages, so the control API stays reachable while the service port refuses connections.
service
    The first segment of a request path on the service port: ``payments``, ``auth``, ``users``,
    ``storefront`` or ``analytics`` (``SERVICES``). Every response a service produces carries
    ``X-Served-By: <service>`` (``platform`` for ``/healthz`` and unknown paths, ``lookup`` and
    ``control`` for those endpoints) and ``X-Region: <region>``.
region
    A free-form name given on the command line (default ``primary``), echoed in ``X-Region``.
write
    A request that stores a client-chosen ``key``: ``POST /payments``, ``PUT /users/<id>``,
    ``POST /analytics/events`` (``WRITE_SERVICES``). Keys are stored per service; the same key
    sent again to the same service is idempotent (answered, not stored again, its commit time
    unchanged).
commit time (``commit_s``)
    The instant a write was stored, taken just before its acknowledgement is sent.
writes committed (``writes_committed``)
    How many writes were stored since start or the last reset, including ones later lost.
outage
    A period during which the service port misbehaves in one of three modes (``MODES``):
    ``refuse``: the port stops listening and every established connection on it is closed, so
    connection attempts get ECONNREFUSED; when it ends the port listens again (SO_REUSEADDR).
    ``503``: requests for the affected services are answered 503 with body
    ``no server available`` and without ``X-Served-By``/``X-Region`` (a load balancer with no
    backend). ``hang``: requests for the affected services are read but not answered; when the
    outage ends their connections are closed without a response. An outage affects the
    services listed in ``services``, or every path but ``/_lookup`` when ``services`` is null
    (``refuse`` always affects the whole port). ``healthz`` may be listed as a service.
    Overlapping outages are allowed; refuse outranks hang, which outranks 503.
failover
    At the instant ``time_s`` of the call, every stored write (all services) with
    ``commit_s >= time_s - lose_last_s`` is deleted and recorded as lost; then an outage of
    ``duration_s`` (none if 0) in the given mode begins.
truth
    ``GET /_control/truth``: ``{"outages": [{"start_s", "end_s" (null while ongoing),
    "planned_end_s", "duration_s", "mode", "services" (null = all)}], "failovers": [{"time_s",
    "lose_last_s", "duration_s", "mode", "lost": [{"service", "key", "commit_s"}]}],
    "writes_committed": int}``.
lookup
    ``GET /_lookup?prefix=<p>``: ``{"payments": [...], "users": [...], "analytics": [...]}``,
    the surviving keys starting with ``p`` per service in commit order. Never subject to outages
    (but unreachable on the service port while it refuses; use the control port).

Run ``python -m drdrill.testing.groundtruth --port 0 --control-port 0 [--region R]``; once ready
it prints one line ``{"port": P, "control_port": C, "pid": N}`` to stdout. In Python, use
:class:`GroundTruthService`, which runs it in a subprocess. Stdlib only: asyncio streams and a
small HTTP/1.1 parser (Content-Length and chunked bodies, keep-alive, pipelining).

The package: :mod:`~drdrill.testing.groundtruth.wire` (the HTTP/1.1 parser and request checks),
:mod:`~drdrill.testing.groundtruth.server` (the server, its state and truth, the process entry
point), :mod:`~drdrill.testing.groundtruth.service` (the subprocess wrapper and its control calls).
"""

from __future__ import annotations

from drdrill.catalog import SERVICES, WRITE_SERVICES
from drdrill.testing.groundtruth.server import MODES, GroundTruthServer, main
from drdrill.testing.groundtruth.service import GroundTruthError, GroundTruthService

__all__ = [
    "MODES",
    "SERVICES",
    "WRITE_SERVICES",
    "GroundTruthError",
    "GroundTruthServer",
    "GroundTruthService",
    "main",
]
