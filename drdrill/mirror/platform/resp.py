"""A minimal Redis client (RESP2 over a socket), enough for auth sessions: PING, SET ... EX, GET, TTL.

Stdlib only, so the node image needs no extra wheel. Connections are pooled; name resolution,
connecting and every reply have a timeout (``timeout_s`` each, so a command costs at most about
three of them); a pooled connection that turns out broken (Redis restarted) is discarded and the
command retried once on a fresh connection (the commands used are idempotent), but one that timed
out is not retried.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
from typing import Any

from .net import resolve

__all__ = ["Redis", "RedisError", "RedisUnavailable"]

MAX_IDLE = 8


class RedisUnavailable(Exception):
    """Redis could not be reached or did not answer in time."""


class RedisError(Exception):
    """Redis answered with an error reply."""


class _Conn:
    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.sock = socket.create_connection((resolve(host, port, timeout_s), port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def call(self, *args: str | bytes | int) -> Any:
        out = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _reply(self) -> Any:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.reader.read(size + 2)
            if len(data) != size + 2:
                raise ConnectionError("redis closed the connection mid-reply")
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            return None if count < 0 else [self._reply() for _ in range(count)]
        raise ConnectionError(f"unexpected redis reply {line[:40]!r}")

    def close(self) -> None:
        for thing in (self.reader, self.sock):
            try:
                thing.close()
            except OSError:
                pass


class Redis:
    """``redis://[:password@]host[:port][/db]``; :meth:`call` runs one command."""

    def __init__(self, url: str, timeout_s: float = 0.8) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "redis" or not parts.hostname:
            raise ValueError(f"not a redis://host[:port][/db] URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 6379
        self.db = int(parts.path.strip("/") or 0)
        self.password = urllib.parse.unquote(parts.password) if parts.password else None
        self.username = urllib.parse.unquote(parts.username) if parts.username else None
        self.timeout_s = timeout_s
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Redis({self.host}:{self.port}/{self.db})"

    def call(self, *args: str | bytes | int) -> Any:
        for attempt in range(2):
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            try:
                if conn is None:
                    conn = self._connect()
                reply = conn.call(*args)
            except RedisError:
                self._put(conn)
                raise
            except (OSError, ValueError) as exc:  # ConnectionError and timeouts are OSErrors
                if conn is not None:
                    conn.close()
                self._drop_idle()
                if reused and attempt == 0 and not isinstance(exc, TimeoutError):
                    continue  # a stale connection (Redis restarted); a slow Redis is not retried
                raise RedisUnavailable(f"redis at {self.host}:{self.port}: {exc or type(exc).__name__}") from None
            self._put(conn)
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    def ping(self) -> bool:
        return self.call("PING") == "PONG"

    def set(self, key: str, value: str | bytes, ex_s: int | None = None) -> None:
        args: list[str | bytes | int] = ["SET", key, value]
        if ex_s is not None:
            args += ["EX", int(ex_s)]
        self.call(*args)

    def get(self, key: str) -> bytes | None:
        return self.call("GET", key)

    def ttl(self, key: str) -> int:
        return self.call("TTL", key)

    def _connect(self) -> _Conn:
        conn = _Conn(self.host, self.port, self.timeout_s)
        try:
            if self.password is not None:
                auth = ("AUTH", self.username, self.password) if self.username else ("AUTH", self.password)
                conn.call(*auth)
            if self.db:
                conn.call("SELECT", self.db)
        except BaseException:
            conn.close()
            raise
        return conn

    def _put(self, conn: _Conn | None) -> None:
        if conn is None:
            return
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        self._drop_idle()
