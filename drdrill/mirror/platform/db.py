"""PostgreSQL for the platform services: a small bounded pool whose every operation has a deadline.

psycopg2 runs in "green" mode (a process-wide wait callback), so connecting and every query wait
with ``select`` against the calling thread's deadline: a hung database (``docker pause``) or a
silent network costs a request at most ``timeout_s``, never a stuck thread. The server-side
``statement_timeout`` bounds lock waits as well. The host name is resolved in a helper thread with
the same deadline (libpq would resolve it synchronously, and DNS stalls in a disconnected container).

Broken connections are discarded, never returned to the pool. When a connection taken from the pool
turns out broken (a Patroni failover cut it through HAProxy) or read-only (it still points at a
demoted leader), every idle connection is dropped and the operation is retried once on a fresh one,
so the first request after a failover already reaches the new leader. All operations the services
run are idempotent, which makes that retry safe.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions as ext

from .net import resolve

__all__ = ["Database", "DatabaseUnavailable", "READ_ONLY", "UNDEFINED_TABLE"]

T = TypeVar("T")

READ_ONLY = "25006"  # read_only_sql_transaction: a standby, or default_transaction_read_only
UNDEFINED_TABLE = "42P01"
_RETRYABLE_CODES = {READ_ONLY, "57P01", "57P02", "57P03"}  # read-only, admin/crash shutdown, starting

_local = threading.local()


class DatabaseUnavailable(Exception):
    """The database could not do it now (unreachable, read-only, too slow); the answer is a 503."""

    def __init__(self, reason: str, pgcode: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pgcode = pgcode


class _Deadline(psycopg2.OperationalError):
    pass


def _wait(conn: Any) -> None:
    """psycopg2 wait callback: poll the connection until done or the thread's deadline passes."""
    deadline = getattr(_local, "deadline", None) or time.monotonic() + 3.0
    fd = conn.fileno()
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Deadline("database did not answer in time")
        if state == ext.POLL_READ:
            select.select([fd], [], [], remaining)
        elif state == ext.POLL_WRITE:
            select.select([], [fd], [], remaining)
        else:  # pragma: no cover - psycopg2 only returns the states above
            raise psycopg2.OperationalError(f"bad poll state {state}")


ext.set_wait_callback(_wait)


class Database:
    """A bounded pool of autocommit connections to one DSN; :meth:`run` does one unit of work."""

    def __init__(self, dsn: str, pool_size: int = 5, timeout_s: float = 2.5,
                 application_name: str = "drdrill-platform") -> None:
        params = ext.parse_dsn(dsn)
        statement_ms = max(int(timeout_s * 1000), 100)
        options = params.get("options", "")
        params["options"] = f"{options} -c statement_timeout={statement_ms}".strip()
        params.setdefault("application_name", application_name)
        params.setdefault("connect_timeout", str(max(int(timeout_s + 0.999), 1)))
        for name, value in (("keepalives", "1"), ("keepalives_idle", "5"),
                            ("keepalives_interval", "2"), ("keepalives_count", "2")):
            params.setdefault(name, value)
        self._params = params
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self._slots = threading.BoundedSemaphore(pool_size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Database(host={self._params.get('host')!r}, pool={self.pool_size})"

    # ---- the unit of work ----------------------------------------------------------------------

    def run(self, work: Callable[[Any], T]) -> T:
        """``work(cursor)`` on a pooled autocommit connection, within ``timeout_s``.

        Raises DatabaseUnavailable for anything that is the database's condition rather than the
        request's (connection errors, timeouts, read-only, shutdown); other psycopg2 errors (bad
        data) propagate as they are.
        """
        deadline = time.monotonic() + self.timeout_s
        outer = getattr(_local, "deadline", None)
        _local.deadline = deadline
        try:
            for attempt in range(2):
                conn, reused = self._acquire(deadline)
                try:
                    with conn.cursor() as cur:
                        result = work(cur)
                except psycopg2.Error as exc:
                    broken = bool(conn.closed) or isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
                    stale = broken or exc.pgcode in _RETRYABLE_CODES
                    clean = not stale and conn.get_transaction_status() == ext.TRANSACTION_STATUS_IDLE
                    self._release(conn, keep=clean)
                    if stale:
                        self.drop_idle()
                        if reused and attempt == 0 and not isinstance(exc, _Deadline):
                            continue
                        raise DatabaseUnavailable(_describe(exc), exc.pgcode) from None
                    raise
                except BaseException:  # not the database's doing (e.g. a NUL in a string): keep it
                    idle = not conn.closed and (
                        conn.get_transaction_status() == ext.TRANSACTION_STATUS_IDLE)
                    self._release(conn, keep=idle)
                    raise
                self._release(conn, keep=True)
                return result
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            _local.deadline = outer

    # ---- the pool ------------------------------------------------------------------------------

    def _acquire(self, deadline: float) -> tuple[Any, bool]:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not self._slots.acquire(timeout=remaining):
            raise DatabaseUnavailable(f"all {self.pool_size} database connections are busy")
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            return conn, True
        try:
            return self._connect(deadline), False
        except BaseException:
            self._slots.release()
            raise

    def _connect(self, deadline: float) -> Any:
        params = dict(self._params)
        host = params.get("host", "")
        if host and "hostaddr" not in params and not host.startswith("/") and "," not in host:
            port = int(params.get("port", "5432") or 5432)
            try:
                params["hostaddr"] = resolve(host, port, deadline - time.monotonic())
            except OSError as exc:
                raise DatabaseUnavailable(f"database host: {exc}") from None
        try:
            conn = psycopg2.connect(**params)
            conn.autocommit = True
        except psycopg2.Error as exc:
            raise DatabaseUnavailable(_describe(exc), exc.pgcode) from None
        return conn

    def _release(self, conn: Any, keep: bool) -> None:
        if keep and not conn.closed:
            with self._lock:
                self._idle.append(conn)
        else:
            _close(conn)
        self._slots.release()

    def drop_idle(self) -> None:
        """Close every idle connection (they point at a database that went away or was demoted)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            _close(conn)

    def close(self) -> None:
        self.drop_idle()


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection may complain; it is gone anyway
        pass


def _describe(exc: psycopg2.Error) -> str:
    if exc.pgcode == READ_ONLY:
        return "database is read-only"
    text = (str(exc) or type(exc).__name__).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return f"database unavailable: {first[:200]}"
