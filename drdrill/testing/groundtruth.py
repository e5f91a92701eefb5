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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drdrill.catalog import SERVICES, WRITE_SERVICES

__all__ = [
    "MODES",
    "SERVICES",
    "WRITE_SERVICES",
    "GroundTruthError",
    "GroundTruthServer",
    "GroundTruthService",
    "main",
]

HOST = "127.0.0.1"
MODES = ("refuse", "503", "hang")
OUTAGE_TARGETS = (*SERVICES, "healthz")
NO_SERVER_BODY = b"no server available"
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
LISTEN_BACKLOG = 1024
RELISTEN_RETRY_S = 0.05

_REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}

_STOREFRONT = [
    {"sku": "sticker-pack", "name": "Sticker pack", "price_cents": 499},
    {"sku": "signed-print", "name": "Signed print", "price_cents": 2500},
    {"sku": "hoodie", "name": "Creator hoodie", "price_cents": 5400},
]


class GroundTruthError(RuntimeError):
    """The ground-truth service could not start, or refused a control request."""


# --------------------------------------------------------------------------------------------
# HTTP/1.1: just enough of it
# --------------------------------------------------------------------------------------------


class _HttpError(Exception):
    """A request the server answers with an error status and then closes the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


async def _read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> _Request | None:
    """Read one request; None on a clean end of stream between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise _HttpError(400, "incomplete request head") from None
    except asyncio.LimitOverrunError:
        raise _HttpError(431, "request head too large") from None
    text = head.decode("latin-1").lstrip("\r\n")
    if not text.strip():
        raise _HttpError(400, "empty request")
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HttpError(400, f"malformed request line {lines[0][:100]!r}")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _HttpError(400, f"malformed header line {line[:100]!r}")
        headers[name.lower()] = value.strip()

    if target.startswith(("http://", "https://")):  # absolute-form
        target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
    path, _, query = target.partition("?")

    if headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    body = b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise _HttpError(400, "bad Content-Length") from None
        if length < 0:
            raise _HttpError(400, "bad Content-Length")
        if length > MAX_BODY_BYTES:
            raise _HttpError(413, "body too large")
        if length:
            body = await reader.readexactly(length)

    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        keep_alive = "keep-alive" in connection
    else:
        keep_alive = "close" not in connection
    return _Request(method, path, query, headers, body, keep_alive)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _HttpError(400, "bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        total += size
        if total > MAX_BODY_BYTES:
            raise _HttpError(413, "body too large")
        chunks.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise _HttpError(400, "bad chunk terminator")


def _response(status: int, body: bytes, content_type: str, extra: bytes, keep_alive: bool) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
    )
    if not keep_alive:
        head += "Connection: close\r\n"
    return head.encode("latin-1") + extra + b"\r\n" + body


def _segments(path: str) -> list[str]:
    return [urllib.parse.unquote(s) for s in path.split("/") if s]


def _number(payload: dict[str, Any], name: str, minimum: float, strict: bool) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _HttpError(400, f"{name} must be a number of seconds")
    if value < minimum or (strict and value == minimum):
        raise _HttpError(400, f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return float(value)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body or b"{}")
    except ValueError:
        raise _HttpError(400, "body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise _HttpError(400, "body must be a JSON object")
    return payload


def _string_field(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise _HttpError(400, f"{name} must be a non-empty string")
    return value


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Outage:
    mode: str
    services: frozenset[str] | None  # None: every path on the service port but /_lookup
    record: dict[str, Any]  # the truth entry, updated in place
    ended: asyncio.Event
    handle: asyncio.TimerHandle | None = None

    def covers(self, target: str) -> bool:
        return self.services is None or target in self.services


_Reply = tuple[int, Any, str]  # (status, JSON-able body, X-Served-By)


class GroundTruthServer:
    """The asyncio server itself (runs inside the subprocess; see :class:`GroundTruthService`)."""

    def __init__(self, region: str = "primary", port: int = 0, control_port: int = 0) -> None:
        self.region = region
        self.port = port
        self.control_port = control_port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listen_sock: socket.socket | None = None
        self._control_server: asyncio.Server | None = None
        self._service_conns: set[asyncio.StreamWriter] = set()
        self._control_conns: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._region_header = f"X-Region: {region}\r\n".encode("latin-1")
        self._served_by_headers: dict[str, bytes] = {}
        self._active: list[_Outage] = []
        self._reset_state()

    # ---- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._start_listening()
        self._control_server = await asyncio.start_server(
            self._on_control_connection, HOST, self.control_port,
            limit=MAX_HEAD_BYTES, reuse_address=True, backlog=LISTEN_BACKLOG,
        )
        self.control_port = self._control_server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._closing = True
        for outage in self._active:
            if outage.handle is not None:
                outage.handle.cancel()
            outage.ended.set()
        self._active.clear()
        self._stop_listening()
        if self._control_server is not None:
            self._control_server.close()
        for writer in list(self._control_conns):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.sleep(0)

    def _reset_state(self) -> None:
        for outage in list(self._active):
            self._end_outage(outage)
        self._data: dict[str, dict[str, dict[str, Any]]] = {s: {} for s in WRITE_SERVICES}
        self._truth_outages: list[dict[str, Any]] = []
        self._truth_failovers: list[dict[str, Any]] = []
        self._writes_committed = 0

    # ---- the service port's listening socket ------------------------------------------------------

    def _start_listening(self) -> None:
        assert self._loop is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self.port))
            sock.listen(LISTEN_BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._listen_sock = sock
        self._loop.add_reader(sock.fileno(), self._accept_ready)

    def _stop_listening(self) -> None:
        sock = self._listen_sock
        if sock is not None:
            assert self._loop is not None
            self._loop.remove_reader(sock.fileno())
            sock.close()
            self._listen_sock = None
        for writer in list(self._service_conns):
            writer.close()

    def _accept_ready(self) -> None:
        sock = self._listen_sock
        if sock is None:
            return
        assert self._loop is not None
        for _ in range(64):
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again on the next readiness event
                print(f"groundtruth: accept failed: {exc}", file=sys.stderr)
                return
            conn.setblocking(False)
            task = self._loop.create_task(self._on_service_connection(conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _refusing(self) -> bool:
        return any(o.mode == "refuse" for o in self._active)

    # ---- connections ---------------------------------------------------------------------------

    async def _on_service_connection(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEAD_BYTES)
        except OSError:
            conn.close()
            return
        await self._serve(reader, writer, service_port=True)

    async def _on_control_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._serve(reader, writer, service_port=False)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, service_port: bool
    ) -> None:
        conns = self._service_conns if service_port else self._control_conns
        if service_port and (self._refusing() or self._listen_sock is None):
            # Accepted just before a refuse outage began: it must not be served.
            writer.transport.abort()
            return
        conns.add(writer)
        try:
            while not self._closing:
                try:
                    req = await _read_request(reader, writer)
                except _HttpError as exc:
                    if not writer.is_closing():
                        writer.write(self._encode(exc.status, {"error": exc.message}, "platform", False))
                    break
                if req is None:
                    break
                if service_port:
                    target = req.path.split("/", 2)[1] if req.path.startswith("/") else ""
                    outage = None if target == "_lookup" else self._outage_for(target)
                    if outage is not None:
                        if outage.mode == "503":
                            writer.write(_response(503, NO_SERVER_BODY, "text/plain", b"", req.keep_alive))
                            await writer.drain()
                            if req.keep_alive:
                                continue
                            break
                        if outage.mode == "hang":
                            await outage.ended.wait()
                        break  # hang over, or refusing: close without a response
                    reply = self._dispatch(self._route_service, req)
                else:
                    reply = self._dispatch(self._route_control, req)
                if writer.is_closing():
                    break
                writer.write(self._encode(*reply, req.keep_alive))
                await writer.drain()
                if not req.keep_alive:
                    break
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            conns.discard(writer)
            writer.close()

    def _outage_for(self, target: str) -> _Outage | None:
        found: _Outage | None = None
        rank = {"refuse": 3, "hang": 2, "503": 1}
        for outage in self._active:
            if outage.covers(target) and (found is None or rank[outage.mode] > rank[found.mode]):
                found = outage
        return found

    def _dispatch(self, route: Any, req: _Request) -> _Reply:
        try:
            return route(req)
        except _HttpError as exc:
            return exc.status, {"error": exc.message}, "platform"
        except Exception:  # a bug here must not look like an outage
            traceback.print_exc()
            return 500, {"error": "internal error"}, "platform"

    def _encode(self, status: int, obj: Any, served_by: str, keep_alive: bool) -> bytes:
        extra = self._served_by_headers.get(served_by)
        if extra is None:
            extra = f"X-Served-By: {served_by}\r\n".encode("latin-1") + self._region_header
            self._served_by_headers[served_by] = extra
        body = json.dumps(obj, separators=(",", ":")).encode()
        return _response(status, body, "application/json", extra, keep_alive)

    # ---- platform API ------------------------------------------------------------------------

    def _route_service(self, req: _Request) -> _Reply:
        segs = _segments(req.path)
        head = segs[0] if segs else ""
        method = req.method
        if head == "_lookup" and len(segs) == 1:
            return self._lookup(req)
        if head == "healthz" and len(segs) == 1:
            _allow(method, "GET")
            return 200, {"ok": True}, "platform"
        if head == "payments":
            if len(segs) == 1:
                _allow(method, "POST")
                return self._create_payment(_json_object(req.body))
            if len(segs) == 2:
                _allow(method, "GET")
                record = self._data["payments"].get(segs[1])
                if record is None:
                    return 404, {"error": f"no payment {segs[1]!r}"}, "payments"
                return 200, record, "payments"
        elif head == "auth":
            if segs == ["auth", "login"]:
                _allow(method, "POST")
                user = _string_field(_json_object(req.body), "user")
                return 200, {"user": user, "token": "tok-" + secrets.token_hex(12)}, "auth"
        elif head == "users":
            if len(segs) == 2:
                _allow(method, "GET", "PUT")
                if method == "GET":
                    return 200, _profile(segs[1]), "users"
                return self._put_user(segs[1], _json_object(req.body))
        elif head == "storefront":
            if len(segs) == 1:
                _allow(method, "GET")
                return 200, _STOREFRONT, "storefront"
        elif head == "analytics":
            if segs == ["analytics", "events"]:
                _allow(method, "POST")
                payload = _json_object(req.body)
                key = _string_field(payload, "key")
                name = _string_field(payload, "name")
                self._commit("analytics", key, {"key": key, "name": name})
                return 202, {"key": key, "status": "accepted"}, "analytics"
        served_by = head if head in SERVICES else "platform"
        return 404, {"error": f"no route for {method} {req.path}"}, served_by

    def _commit(self, service: str, key: str, record: dict[str, Any]) -> bool:
        """Store ``record`` under ``key`` unless the key is already stored; True if stored now."""
        store = self._data[service]
        if key in store:
            return False
        record["commit_s"] = time.time()
        store[key] = record
        self._writes_committed += 1
        return True

    def _create_payment(self, payload: dict[str, Any]) -> _Reply:
        key = _string_field(payload, "key")
        amount = payload.get("amount_cents")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise _HttpError(400, "amount_cents must be an integer")
        record = {"key": key, "amount_cents": amount, "status": "captured"}
        created = self._commit("payments", key, record)
        stored = self._data["payments"][key]
        body = {"key": key, "status": stored["status"], "amount_cents": stored["amount_cents"]}
        return (201 if created else 200), body, "payments"

    def _put_user(self, user_id: str, payload: dict[str, Any]) -> _Reply:
        key = _string_field(payload, "key")
        display_name = payload.get("display_name")
        if not isinstance(display_name, str):
            raise _HttpError(400, "display_name must be a string")
        self._commit("users", key, {"key": key, "user_id": user_id, "display_name": display_name})
        return 200, {"id": user_id, "key": key, "display_name": display_name}, "users"

    def _lookup(self, req: _Request) -> _Reply:
        _allow(req.method, "GET")
        prefix = urllib.parse.parse_qs(req.query).get("prefix", [""])[0]
        found = {s: [k for k in self._data[s] if k.startswith(prefix)] for s in WRITE_SERVICES}
        return 200, found, "lookup"

    # ---- control API ------------------------------------------------------------------------

    def _route_control(self, req: _Request) -> _Reply:
        segs = _segments(req.path)
        if segs == ["_lookup"]:
            return self._lookup(req)
        if len(segs) != 2 or segs[0] != "_control":
            return 404, {"error": f"no route for {req.method} {req.path}"}, "control"
        name = segs[1]
        if name == "outage":
            _allow(req.method, "POST")
            payload = _json_object(req.body)
            duration_s = _number(payload, "duration_s", 0.0, strict=True)
            mode = _mode(payload)
            services = _services(payload, mode)
            record = self._begin_outage(duration_s, mode, services).record
            return 200, {"start_s": record["start_s"], "planned_end_s": record["planned_end_s"]}, "control"
        if name == "failover":
            _allow(req.method, "POST")
            payload = _json_object(req.body)
            duration_s = _number(payload, "duration_s", 0.0, strict=False)
            lose_last_s = _number(payload, "lose_last_s", 0.0, strict=False)
            return 200, self._failover(duration_s, lose_last_s, _mode(payload)), "control"
        if name == "truth":
            _allow(req.method, "GET")
            truth = {
                "outages": self._truth_outages,
                "failovers": self._truth_failovers,
                "writes_committed": self._writes_committed,
            }
            return 200, truth, "control"
        if name == "reset":
            _allow(req.method, "POST")
            self._reset_state()
            return 200, {"ok": True}, "control"
        return 404, {"error": f"no control endpoint {name!r}"}, "control"

    def _begin_outage(self, duration_s: float, mode: str, services: frozenset[str] | None) -> _Outage:
        assert self._loop is not None
        if mode == "refuse":
            self._stop_listening()
        start_s = time.time()
        record = {
            "start_s": start_s,
            "end_s": None,
            "planned_end_s": start_s + duration_s,
            "duration_s": duration_s,
            "mode": mode,
            "services": sorted(services) if services is not None else None,
        }
        outage = _Outage(mode, services, record, asyncio.Event())
        self._active.append(outage)
        self._truth_outages.append(record)
        outage.handle = self._loop.call_later(duration_s, self._end_outage, outage)
        return outage

    def _end_outage(self, outage: _Outage) -> None:
        if outage not in self._active:
            return
        if outage.handle is not None:
            outage.handle.cancel()
        self._active.remove(outage)
        if outage.mode == "refuse" and not self._closing:
            self._relisten(outage)
        else:
            outage.record["end_s"] = time.time()
            outage.ended.set()

    def _relisten(self, outage: _Outage) -> None:
        if not self._refusing() and self._listen_sock is None:
            try:
                self._start_listening()
            except OSError as exc:  # someone grabbed the port meanwhile: the outage goes on
                print(f"groundtruth: cannot listen on {HOST}:{self.port} again: {exc}", file=sys.stderr)
                assert self._loop is not None
                self._active.append(outage)
                outage.handle = self._loop.call_later(RELISTEN_RETRY_S, self._end_outage, outage)
                return
        outage.record["end_s"] = time.time()
        outage.ended.set()

    def _failover(self, duration_s: float, lose_last_s: float, mode: str) -> dict[str, Any]:
        time_s = time.time()
        cutoff_s = time_s - lose_last_s
        lost: list[dict[str, Any]] = []
        for service in WRITE_SERVICES:
            store = self._data[service]
            for key in [k for k, r in store.items() if r["commit_s"] >= cutoff_s]:
                lost.append({"service": service, "key": key, "commit_s": store.pop(key)["commit_s"]})
        lost.sort(key=lambda entry: entry["commit_s"])
        self._truth_failovers.append({
            "time_s": time_s,
            "lose_last_s": lose_last_s,
            "duration_s": duration_s,
            "mode": mode,
            "lost": lost,
        })
        outage = self._begin_outage(duration_s, mode, None) if duration_s > 0 else None
        return {
            "time_s": time_s,
            "lose_last_s": lose_last_s,
            "lost": lost,
            "start_s": outage.record["start_s"] if outage else None,
            "planned_end_s": outage.record["planned_end_s"] if outage else None,
        }


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise _HttpError(405, f"method {method} not allowed here (allowed: {', '.join(allowed)})")


def _mode(payload: dict[str, Any]) -> str:
    mode = payload.get("mode", "refuse")
    if mode not in MODES:
        raise _HttpError(400, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _services(payload: dict[str, Any], mode: str) -> frozenset[str] | None:
    services = payload.get("services")
    if services is None or services == "all":
        return None
    if not isinstance(services, list) or not services or not all(isinstance(s, str) for s in services):
        raise _HttpError(400, "services must be a non-empty list of service names, \"all\" or absent")
    unknown = sorted(set(services) - set(OUTAGE_TARGETS))
    if unknown:
        raise _HttpError(400, f"unknown services {unknown}; known: {', '.join(OUTAGE_TARGETS)}")
    if set(SERVICES) <= set(services):
        return None
    if mode == "refuse":
        raise _HttpError(400, "mode refuse closes the whole port: services must be absent or all")
    return frozenset(services)


def _profile(user_id: str) -> dict[str, Any]:
    crc = zlib.crc32(user_id.encode())
    return {
        "id": user_id,
        "display_name": f"Creator {user_id}",
        "followers": crc % 100_000,
        "verified": crc % 7 == 0,
    }


# --------------------------------------------------------------------------------------------
# Process entry point
# --------------------------------------------------------------------------------------------


async def _amain(args: argparse.Namespace) -> int:
    server = GroundTruthServer(region=args.region, port=args.port, control_port=args.control_port)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ready = {"port": server.port, "control_port": server.control_port, "pid": os.getpid()}
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    await stop.wait()
    await server.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drdrill.testing.groundtruth",
        description="A fake platform API whose outages and data losses are known exactly.",
    )
    parser.add_argument("--port", type=int, default=0, help="service port on 127.0.0.1 (0: any free)")
    parser.add_argument("--control-port", type=int, default=0, help="control port (0: any free)")
    parser.add_argument("--region", default="primary", help="echoed in X-Region (default primary)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_amain(args))
    except KeyboardInterrupt:
        return 0


# --------------------------------------------------------------------------------------------
# The subprocess helper
# --------------------------------------------------------------------------------------------


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
        root = str(Path(__file__).resolve().parents[2])  # so the child finds drdrill uninstalled
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


if __name__ == "__main__":
    sys.exit(main())
