"""The ground-truth server: the platform API, its outages and failovers, and the truth it records.

:class:`GroundTruthServer` runs on an asyncio loop in its own process (:func:`main`, ``python -m
drdrill.testing.groundtruth``): the service port (the platform API, subject to outages) and the
control port (``/_control/*``, never subject to outages). The terms are in the package docstring
(:mod:`drdrill.testing.groundtruth`); the HTTP parsing in :mod:`drdrill.testing.groundtruth.wire`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import sys
import time
import traceback
import urllib.parse
import zlib
from dataclasses import dataclass
from typing import Any

from drdrill.catalog import SERVICES, WRITE_SERVICES
from drdrill.testing.groundtruth.wire import (
    MAX_HEAD_BYTES,
    HttpError,
    Request,
    allow,
    json_object,
    number,
    read_request,
    response,
    segments,
    string_field,
)

__all__ = ["HOST", "MODES", "OUTAGE_TARGETS", "GroundTruthServer", "main"]

HOST = "127.0.0.1"
MODES = ("refuse", "503", "hang")
OUTAGE_TARGETS = (*SERVICES, "healthz")
NO_SERVER_BODY = b"no server available"
LISTEN_BACKLOG = 1024
RELISTEN_RETRY_S = 0.05

_STOREFRONT = [
    {"sku": "sticker-pack", "name": "Sticker pack", "price_cents": 499},
    {"sku": "signed-print", "name": "Signed print", "price_cents": 2500},
    {"sku": "hoodie", "name": "Creator hoodie", "price_cents": 5400},
]


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
                    req = await read_request(reader, writer)
                except HttpError as exc:
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
                            writer.write(response(503, NO_SERVER_BODY, "text/plain", b"", req.keep_alive))
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

    def _dispatch(self, route: Any, req: Request) -> _Reply:
        try:
            return route(req)
        except HttpError as exc:
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
        return response(status, body, "application/json", extra, keep_alive)

    # ---- platform API ------------------------------------------------------------------------

    def _route_service(self, req: Request) -> _Reply:
        segs = segments(req.path)
        head = segs[0] if segs else ""
        method = req.method
        if head == "_lookup" and len(segs) == 1:
            return self._lookup(req)
        if head == "healthz" and len(segs) == 1:
            allow(method, "GET")
            return 200, {"ok": True}, "platform"
        if head == "payments":
            if len(segs) == 1:
                allow(method, "POST")
                return self._create_payment(json_object(req.body))
            if len(segs) == 2:
                allow(method, "GET")
                record = self._data["payments"].get(segs[1])
                if record is None:
                    return 404, {"error": f"no payment {segs[1]!r}"}, "payments"
                return 200, record, "payments"
        elif head == "auth":
            if segs == ["auth", "login"]:
                allow(method, "POST")
                user = string_field(json_object(req.body), "user")
                return 200, {"user": user, "token": "tok-" + secrets.token_hex(12)}, "auth"
        elif head == "users":
            if len(segs) == 2:
                allow(method, "GET", "PUT")
                if method == "GET":
                    return 200, _profile(segs[1]), "users"
                return self._put_user(segs[1], json_object(req.body))
        elif head == "storefront":
            if len(segs) == 1:
                allow(method, "GET")
                return 200, _STOREFRONT, "storefront"
        elif head == "analytics":
            if segs == ["analytics", "events"]:
                allow(method, "POST")
                payload = json_object(req.body)
                key = string_field(payload, "key")
                name = string_field(payload, "name")
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
        key = string_field(payload, "key")
        amount = payload.get("amount_cents")
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise HttpError(400, "amount_cents must be an integer")
        record = {"key": key, "amount_cents": amount, "status": "captured"}
        created = self._commit("payments", key, record)
        stored = self._data["payments"][key]
        body = {"key": key, "status": stored["status"], "amount_cents": stored["amount_cents"]}
        return (201 if created else 200), body, "payments"

    def _put_user(self, user_id: str, payload: dict[str, Any]) -> _Reply:
        key = string_field(payload, "key")
        display_name = payload.get("display_name")
        if not isinstance(display_name, str):
            raise HttpError(400, "display_name must be a string")
        self._commit("users", key, {"key": key, "user_id": user_id, "display_name": display_name})
        return 200, {"id": user_id, "key": key, "display_name": display_name}, "users"

    def _lookup(self, req: Request) -> _Reply:
        allow(req.method, "GET")
        prefix = urllib.parse.parse_qs(req.query).get("prefix", [""])[0]
        found = {s: [k for k in self._data[s] if k.startswith(prefix)] for s in WRITE_SERVICES}
        return 200, found, "lookup"

    # ---- control API ------------------------------------------------------------------------

    def _route_control(self, req: Request) -> _Reply:
        segs = segments(req.path)
        if segs == ["_lookup"]:
            return self._lookup(req)
        if len(segs) != 2 or segs[0] != "_control":
            return 404, {"error": f"no route for {req.method} {req.path}"}, "control"
        name = segs[1]
        if name == "outage":
            allow(req.method, "POST")
            payload = json_object(req.body)
            duration_s = number(payload, "duration_s", 0.0, strict=True)
            mode = _mode(payload)
            services = _services(payload, mode)
            record = self._begin_outage(duration_s, mode, services).record
            return 200, {"start_s": record["start_s"], "planned_end_s": record["planned_end_s"]}, "control"
        if name == "failover":
            allow(req.method, "POST")
            payload = json_object(req.body)
            duration_s = number(payload, "duration_s", 0.0, strict=False)
            lose_last_s = number(payload, "lose_last_s", 0.0, strict=False)
            return 200, self._failover(duration_s, lose_last_s, _mode(payload)), "control"
        if name == "truth":
            allow(req.method, "GET")
            truth = {
                "outages": self._truth_outages,
                "failovers": self._truth_failovers,
                "writes_committed": self._writes_committed,
            }
            return 200, truth, "control"
        if name == "reset":
            allow(req.method, "POST")
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


def _mode(payload: dict[str, Any]) -> str:
    mode = payload.get("mode", "refuse")
    if mode not in MODES:
        raise HttpError(400, f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _services(payload: dict[str, Any], mode: str) -> frozenset[str] | None:
    services = payload.get("services")
    if services is None or services == "all":
        return None
    if not isinstance(services, list) or not services or not all(isinstance(s, str) for s in services):
        raise HttpError(400, "services must be a non-empty list of service names, \"all\" or absent")
    unknown = sorted(set(services) - set(OUTAGE_TARGETS))
    if unknown:
        raise HttpError(400, f"unknown services {unknown}; known: {', '.join(OUTAGE_TARGETS)}")
    if set(SERVICES) <= set(services):
        return None
    if mode == "refuse":
        raise HttpError(400, "mode refuse closes the whole port: services must be absent or all")
    return frozenset(services)


def _profile(user_id: str) -> dict[str, Any]:
    crc = zlib.crc32(user_id.encode())
    return {
        "id": user_id,
        "display_name": f"Creator {user_id}",
        "followers": crc % 100_000,
        "verified": crc % 7 == 0,
    }


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
