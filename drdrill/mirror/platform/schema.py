"""The platform's tables, and the keeper that creates them once the database is writable.

Every service creates every table (idempotently, serialised by an advisory lock), so the services can
start in any order. Keys are primary keys: a write sent again with the same key is stored once.
Times come from the database clock (``clock_timestamp()``), so the saga deadline is measured on one
clock whichever service replica inserted the payment and whichever reconciles it.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from .db import Database, DatabaseUnavailable

__all__ = ["DDL", "SchemaKeeper", "STOREFRONT_ITEMS", "writable"]

STOREFRONT_ITEMS = (
    ("sticker-pack", "Sticker pack", 499),
    ("signed-print", "Signed print", 2500),
    ("hoodie", "Creator hoodie", 5400),
)

_LOCK_ID = 0x6472_6472  # "drdr": serialises concurrent CREATE TABLE IF NOT EXISTS of the services

DDL = f"""
SELECT pg_advisory_xact_lock({_LOCK_ID});
CREATE TABLE IF NOT EXISTS payments (
    key          text PRIMARY KEY,
    amount_cents bigint NOT NULL,
    status       text NOT NULL CHECK (status IN ('pending', 'captured', 'compensated')),
    saga         boolean NOT NULL DEFAULT false,
    region       text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS payments_pending ON payments (created_at) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS user_updates (
    key          text PRIMARY KEY,
    user_id      text NOT NULL,
    display_name text NOT NULL,
    region       text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS user_updates_by_user ON user_updates (user_id, created_at DESC);
CREATE TABLE IF NOT EXISTS analytics_events (
    key          text PRIMARY KEY,
    name         text NOT NULL,
    region       text,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS storefront_items (
    sku          text PRIMARY KEY,
    name         text NOT NULL,
    price_cents  integer NOT NULL
);
INSERT INTO storefront_items (sku, name, price_cents) VALUES
    {", ".join(f"('{sku}', '{name}', {price})" for sku, name, price in STOREFRONT_ITEMS)}
    ON CONFLICT (sku) DO NOTHING;
"""

_PROBE = "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'"


def writable(cur: Any) -> str | None:
    """None when the database behind ``cur`` accepts writes, else why not."""
    cur.execute(_PROBE)
    in_recovery, read_only = cur.fetchone()
    if in_recovery:
        return "database is in recovery (a read-only standby)"
    if read_only:
        return "database is read-only (default_transaction_read_only)"
    return None


class SchemaKeeper:
    """Creates the schema in the background, retrying every ``interval_s`` until it succeeds.

    :meth:`invalidate` (a query found a table missing: the database was replaced) starts it again.
    """

    def __init__(self, db: Database, interval_s: float = 1.0, log: Any = None) -> None:
        self.db = db
        self.interval_s = interval_s
        self.ready = threading.Event()
        self.last_error = "schema not created yet"
        self._wake = threading.Event()
        self._attempt = threading.Lock()
        self._log = log or (lambda message: print(message, file=sys.stderr, flush=True))
        self._thread: threading.Thread | None = None

    def start(self) -> SchemaKeeper:
        self._thread = threading.Thread(target=self._loop, name="schema", daemon=True)
        self._thread.start()
        return self

    def ensure(self) -> bool:
        """Try once (unless another thread is trying right now); True when the schema exists."""
        if self.ready.is_set():
            return True
        if not self._attempt.acquire(blocking=False):
            return False
        try:
            def create(cur: Any) -> str | None:
                why = writable(cur)
                if why is None:
                    cur.execute(DDL)
                return why

            try:
                why = self.db.run(create)
            except DatabaseUnavailable as exc:
                why = exc.reason
            except Exception as exc:  # noqa: BLE001 - e.g. a concurrent-DDL race: retried
                why = f"schema creation failed: {exc}".strip()
            if why is None:
                self.ready.set()
                self.last_error = ""
                self._log("schema ready")
                return True
            if why != self.last_error:
                self._log(f"schema not created yet: {why}")
            self.last_error = why
            return False
        finally:
            self._attempt.release()

    def invalidate(self) -> None:
        if self.ready.is_set():
            self.ready.clear()
            self.last_error = "a table is missing"
            self._log("a table is missing: creating the schema again")
        self._wake.set()

    def _loop(self) -> None:
        while True:
            if self.ready.is_set():
                self._wake.wait()
                self._wake.clear()
            elif not self.ensure():
                self._wake.wait(self.interval_s)
                self._wake.clear()
