"""The platform service process: ``drdrill-platform --service S --region R --port P``.

:class:`App` holds the routes of one service plus ``/healthz``, ``/readyz`` and ``/_lookup`` (see
the package docstring), a background schema keeper, and for payments the saga reconciler. It is
served by a stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive (one thread per client
connection; every response has a Content-Length and goes out in one write with TCP_NODELAY; see
:mod:`drdrill.mirror.platform.web`). Request lines are not logged.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import signal
import sys
import threading
import time
import traceback
import urllib.parse
import zlib
from dataclasses import dataclass
from typing import Any

import psycopg2

from . import ENV, SERVICES, WRITE_SERVICES
from .db import UNDEFINED_TABLE, Database, DatabaseUnavailable
from .schema import STOREFRONT_ITEMS, SchemaKeeper, writable
from .sessions import REDIS_TIMEOUT_S, SessionStoreError, describe, session_store
from .web import HttpError, allow, json_object, key_field, make_server, string_field

__all__ = ["App", "Settings", "main"]

_Reply = tuple[int, Any]


class Unavailable(Exception):
    """Answered 503 by the service (with X-Served-By): a dependency cannot do it now."""


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    service: str
    region: str
    pg_dsn: str
    redis_url: str | None = None
    replica: str | None = None
    saga_deadline_s: float = 5.0
    saga_interval_s: float = 1.0
    pg_pool: int = 5
    db_timeout_s: float = 2.5
    session_ttl_s: int = 3600

    @classmethod
    def from_env(cls, service: str, region: str, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
        dsn = env.get(ENV["pg_dsn"], "").strip()
        if not dsn:
            raise ValueError(f"{ENV['pg_dsn']} is not set (a libpq DSN of the region's database)")
        redis_url = env.get(ENV["redis_url"], "").strip() or None
        if service == "auth" and not redis_url:
            raise ValueError(f"auth needs {ENV['redis_url']} (redis://host:port/db) for its sessions")

        def number(name: str, default: float, minimum: float) -> float:
            raw = env.get(ENV[name], "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{ENV[name]}={raw!r} is not a number") from None
            if not math.isfinite(value) or value < minimum:
                raise ValueError(f"{ENV[name]}={raw!r} must be a number >= {minimum}")
            return value

        return cls(
            service=service,
            region=region,
            pg_dsn=dsn,
            redis_url=redis_url,
            replica=env.get(ENV["replica"], "").strip() or None,
            saga_deadline_s=number("saga_deadline_s", 5.0, 0.0),
            saga_interval_s=number("saga_interval_s", 1.0, 0.05),
            pg_pool=int(number("pg_pool", 5, 1)),
            db_timeout_s=number("db_timeout_s", 2.5, 0.1),
            session_ttl_s=int(number("session_ttl_s", 3600, 1)),
        )


# --------------------------------------------------------------------------------------------
# The application: routes → (status, JSON body)
# --------------------------------------------------------------------------------------------


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.service = settings.service
        self.region = settings.region
        self.db = Database(settings.pg_dsn, pool_size=settings.pg_pool,
                           timeout_s=settings.db_timeout_s,
                           application_name=f"drdrill-{settings.service}")
        self.redis = session_store(settings.redis_url) if settings.redis_url else None
        self.schema = SchemaKeeper(self.db, log=log)
        self.started_s = time.time()
        self._reconciler: threading.Thread | None = None
        self._stopping = threading.Event()
        extra = f"X-Served-By: {self.service}\r\nX-Region: {self.region}\r\n"
        if settings.replica:
            extra += f"X-Replica: {settings.replica}\r\n"
        self.extra_headers = extra.encode("latin-1")

    def start(self) -> App:
        self.schema.start()
        if self.service == "payments":
            self._reconciler = threading.Thread(target=self._reconcile_loop, name="saga", daemon=True)
            self._reconciler.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.db.close()
        if self.redis is not None:
            self.redis.close()

    # ---- dispatch ------------------------------------------------------------------------------

    def handle(self, method: str, target: str, body: bytes) -> _Reply:
        path, _, query = target.partition("?")
        try:
            return self._route(method, [urllib.parse.unquote(s) for s in path.split("/") if s],
                               query, body)
        except HttpError as exc:
            return exc.status, {"error": exc.message}
        except Unavailable as exc:
            return 503, {"error": str(exc)}
        except DatabaseUnavailable as exc:
            return 503, {"error": exc.reason}
        except SessionStoreError as exc:
            return 503, {"error": self._session_store_problem(exc)}
        except psycopg2.Error as exc:
            if exc.pgcode == UNDEFINED_TABLE:
                self.schema.invalidate()
                return 503, {"error": "schema not created yet"}
            if isinstance(exc, psycopg2.DataError):
                return 400, {"error": f"rejected by the database: {_first_line(exc)}"}
            return 503, {"error": f"database error: {_first_line(exc)}"}
        except Exception:  # a bug must not look like an outage, nor kill the connection
            traceback.print_exc()
            return 500, {"error": "internal error"}

    def _route(self, method: str, segs: list[str], query: str, body: bytes) -> _Reply:
        head = segs[0] if segs else ""
        n = len(segs)
        if n == 1 and head == "healthz":
            allow(method, "GET", "HEAD")
            return 200, {"ok": True, "service": self.service, "region": self.region,
                         "replica": self.settings.replica, "uptime_s": round(time.time() - self.started_s, 1)}
        if n == 1 and head == "readyz":
            allow(method, "GET", "HEAD")
            return self.readyz()
        if n == 1 and head == "_lookup":
            allow(method, "GET")
            prefix = urllib.parse.parse_qs(query).get("prefix", [""])[0]
            return 200, self.lookup(prefix)
        if head == self.service:
            route = getattr(self, f"_{self.service}")
            reply = route(method, segs[1:], body)
            if reply is not None:
                return reply
        return 404, {"error": f"no route for {method} /{'/'.join(segs)} on {self.service}"}

    # ---- health --------------------------------------------------------------------------------

    def readyz(self) -> _Reply:
        redis_problem: list[str] = []
        checker = None
        if self.redis is not None:  # checked alongside the database: both bounded, not summed
            checker = threading.Thread(target=self._check_redis, args=(redis_problem,), daemon=True)
            checker.start()
        reasons: list[str] = []
        try:
            why = self.db.run(writable)
            if why is not None:
                self.db.drop_idle()  # they may point at a demoted leader
                reasons.append(why)
            elif not self.schema.ensure():
                reasons.append(self.schema.last_error or "schema not created yet")
        except DatabaseUnavailable as exc:
            reasons.append(exc.reason)
        if checker is not None:
            checker.join(3 * REDIS_TIMEOUT_S + 0.2)
            reasons.extend(redis_problem if not checker.is_alive() else
                           ["session store unavailable: no answer in time"])
        body = {"ready": not reasons, "service": self.service, "region": self.region,
                "reasons": reasons}
        return (503 if reasons else 200), body

    def _check_redis(self, problems: list[str]) -> None:
        assert self.redis is not None
        try:
            if not self.redis.ping():
                problems.append("session store unavailable: PING not answered PONG")
        except SessionStoreError as exc:
            problems.append(self._session_store_problem(exc))

    def _session_store_problem(self, exc: Exception) -> str:
        assert self.redis is not None
        return f"session store unavailable: {describe(self.redis)}: {exc or type(exc).__name__}"

    # ---- the final read ------------------------------------------------------------------------

    def lookup(self, prefix: str) -> dict[str, list[str]]:
        tables = {"payments": "payments", "users": "user_updates", "analytics": "analytics_events"}
        queries = " UNION ALL ".join(
            f"(SELECT '{service}', key, created_at FROM {table} WHERE starts_with(key, %(p)s))"
            for service, table in tables.items()
        )

        def read(cur: Any) -> dict[str, list[str]]:
            cur.execute("SELECT to_regclass('payments') IS NOT NULL AND to_regclass('user_updates') "
                        "IS NOT NULL AND to_regclass('analytics_events') IS NOT NULL")
            found: dict[str, list[str]] = {s: [] for s in WRITE_SERVICES}
            if not cur.fetchone()[0]:
                return found  # no schema at all: nothing was ever stored here
            cur.execute(f"{queries} ORDER BY 3, 2", {"p": prefix})
            for service, key, _created in cur.fetchall():
                found[service].append(key)
            return found

        return self.db.run(read)

    # ---- payments ------------------------------------------------------------------------------

    def _payments(self, method: str, rest: list[str], body: bytes) -> _Reply | None:
        if not rest:
            allow(method, "POST")
            return self._create_payment(json_object(body))
        if rest == ["_pending"]:
            allow(method, "GET")
            return 200, self.db.run(_pending_summary)
        if len(rest) == 1:
            allow(method, "GET")
            row = self.db.run(lambda cur: _fetch_payment(cur, rest[0]))
            if row is None:
                return 404, {"error": f"no payment {rest[0]!r}"}
            return 200, row
        return None

    def _create_payment(self, payload: dict[str, Any]) -> _Reply:
        key = key_field(payload)
        amount = payload.get("amount_cents")
        if isinstance(amount, bool) or not isinstance(amount, int) or abs(amount) >= 2**63:
            raise HttpError(400, "amount_cents must be an integer")
        saga = payload.get("saga", False)
        if not isinstance(saga, bool):
            raise HttpError(400, "saga must be true or false")

        def create(cur: Any) -> tuple[bool, dict[str, Any]]:
            # Step 1 (its own commit): the payment exists, pending.
            cur.execute(
                "INSERT INTO payments (key, amount_cents, status, saga, region) "
                "VALUES (%s, %s, 'pending', %s, %s) ON CONFLICT (key) DO NOTHING",
                (key, amount, saga, self.region),
            )
            created = cur.rowcount == 1
            # Step 2 (a second commit): capture it, unless a saga leaves that to the reconciler.
            cur.execute(
                "UPDATE payments SET status = 'captured', updated_at = clock_timestamp() "
                f"WHERE key = %s AND status = 'pending' AND NOT saga RETURNING {_PAYMENT_COLUMNS}",
                (key,),
            )
            row = cur.fetchone()
            return created, (_payment(row) if row else _fetch_payment(cur, key))

        created, record = self.db.run(create)
        if record is None:  # deleted between the two statements: only by hand
            raise Unavailable("payment vanished while being created")
        return (201 if created else 200), record

    def _reconcile_loop(self) -> None:
        deadline_s = self.settings.saga_deadline_s
        last = ""

        def settle(cur: Any) -> int:
            cur.execute(
                "UPDATE payments SET status = CASE WHEN amount_cents %% 2 <> 0 THEN 'compensated' "
                "ELSE 'captured' END, updated_at = clock_timestamp() "
                "WHERE status = 'pending' AND created_at < clock_timestamp() - %s * interval '1 second'",
                (deadline_s,),
            )
            return cur.rowcount

        while not self._stopping.wait(self.settings.saga_interval_s):
            if not self.schema.ready.is_set():
                continue
            try:
                settled = self.db.run(settle)
                message = f"saga: settled {settled} pending payment(s)" if settled else ""
            except DatabaseUnavailable as exc:
                message = f"saga: cannot reconcile now: {exc.reason}"
            except psycopg2.Error as exc:
                if exc.pgcode == UNDEFINED_TABLE:
                    self.schema.invalidate()
                message = f"saga: reconcile failed: {_first_line(exc)}"
            if message and (message != last or "settled" in message):
                log(message)
            last = message

    # ---- auth ----------------------------------------------------------------------------------

    def _auth(self, method: str, rest: list[str], body: bytes) -> _Reply | None:
        assert self.redis is not None
        if rest == ["login"]:
            allow(method, "POST")
            user = string_field(json_object(body), "user")
            token = "tok-" + secrets.token_hex(12)
            session = json.dumps({"user": user, "region": self.region, "created_s": time.time()})
            self.redis.set(f"session:{token}", session, ex=self.settings.session_ttl_s)
            return 200, {"user": user, "token": token, "ttl_s": self.settings.session_ttl_s}
        if len(rest) == 2 and rest[0] == "sessions":
            allow(method, "GET")
            raw = self.redis.get(f"session:{rest[1]}")
            if raw is None:
                return 404, {"error": "no such session"}
            return 200, {"token": rest[1], **json.loads(raw)}
        return None

    # ---- users ---------------------------------------------------------------------------------

    def _users(self, method: str, rest: list[str], body: bytes) -> _Reply | None:
        if len(rest) != 1:
            return None
        user_id = rest[0]
        allow(method, "GET", "PUT")
        if method == "GET":
            def read(cur: Any) -> str | None:
                cur.execute("SELECT display_name FROM user_updates WHERE user_id = %s "
                            "ORDER BY created_at DESC LIMIT 1", (user_id,))
                row = cur.fetchone()
                return row[0] if row else None

            return 200, _profile(user_id, self.db.run(read))
        payload = json_object(body)
        key = key_field(payload)
        display_name = payload.get("display_name")
        if not isinstance(display_name, str) or "\x00" in display_name:
            raise HttpError(400, "display_name must be a string")

        def write(cur: Any) -> None:
            cur.execute("INSERT INTO user_updates (key, user_id, display_name, region) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO NOTHING",
                        (key, user_id, display_name, self.region))

        self.db.run(write)
        return 200, {"id": user_id, "key": key, "display_name": display_name}

    # ---- storefront ----------------------------------------------------------------------------

    def _storefront(self, method: str, rest: list[str], body: bytes) -> _Reply | None:
        if rest:
            return None
        allow(method, "GET")

        def read(cur: Any) -> list[dict[str, Any]]:
            cur.execute("SELECT sku, name, price_cents FROM storefront_items ORDER BY price_cents, sku")
            return [{"sku": s, "name": n, "price_cents": p} for s, n, p in cur.fetchall()]

        try:
            items = self.db.run(read)
        except psycopg2.errors.UndefinedTable:  # a fresh standby: the catalogue is static anyway
            self.schema.invalidate()
            self.db.run(lambda cur: cur.execute("SELECT 1"))
            items = []
        if not items:
            items = [{"sku": s, "name": n, "price_cents": p} for s, n, p in STOREFRONT_ITEMS]
        return 200, items

    # ---- analytics -----------------------------------------------------------------------------

    def _analytics(self, method: str, rest: list[str], body: bytes) -> _Reply | None:
        if rest != ["events"]:
            return None
        allow(method, "POST")
        payload = json_object(body)
        key = key_field(payload)
        name = string_field(payload, "name")

        def write(cur: Any) -> None:
            cur.execute("INSERT INTO analytics_events (key, name, region) VALUES (%s, %s, %s) "
                        "ON CONFLICT (key) DO NOTHING", (key, name, self.region))

        self.db.run(write)
        return 202, {"key": key, "status": "accepted"}


_PAYMENT_COLUMNS = ("key, amount_cents, status, saga, region, "
                    "extract(epoch FROM created_at), extract(epoch FROM updated_at)")


def _payment(row: tuple) -> dict[str, Any]:
    key, amount, status, saga, region, created, updated = row
    return {"key": key, "amount_cents": amount, "status": status, "saga": saga, "region": region,
            "created_s": float(created), "updated_s": float(updated)}


def _fetch_payment(cur: Any, key: str) -> dict[str, Any] | None:
    cur.execute(f"SELECT {_PAYMENT_COLUMNS} FROM payments WHERE key = %s", (key,))
    row = cur.fetchone()
    return _payment(row) if row else None


def _pending_summary(cur: Any) -> dict[str, Any]:
    cur.execute("SELECT count(*), extract(epoch FROM clock_timestamp() - min(created_at)) "
                "FROM payments WHERE status = 'pending'")
    count, oldest = cur.fetchone()
    return {"pending": count, "oldest_pending_age_s": float(oldest) if oldest is not None else None}


def _profile(user_id: str, display_name: str | None) -> dict[str, Any]:
    crc = zlib.crc32(user_id.encode())
    return {
        "id": user_id,
        "display_name": display_name if display_name is not None else f"Creator {user_id}",
        "followers": crc % 100_000,
        "verified": crc % 7 == 0,
    }


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="drdrill-platform",
        description="One service of the drdrill reference creator platform (see drdrill.mirror.platform).",
    )
    parser.add_argument("--service", required=True, choices=SERVICES)
    parser.add_argument("--region", default="primary", help="echoed in X-Region (default primary)")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(args.service, args.region)
    except ValueError as exc:
        print(f"drdrill-platform: {exc}", file=sys.stderr)
        return 2
    app = App(settings)
    server = make_server(app, args.host, args.port)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    app.start()
    print(json.dumps({"service": settings.service, "region": settings.region,
                      "replica": settings.replica, "port": server.server_address[1],
                      "pid": os.getpid()}), flush=True)
    log(f"{settings.service} ({settings.region}) listening on {args.host}:{server.server_address[1]}, "
        f"database {app.db!r}" + (f", sessions {describe(app.redis)}" if app.redis else ""))
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        app.stop()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
