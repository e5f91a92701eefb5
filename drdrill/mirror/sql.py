"""SQL on the mirror from the host (psycopg 3): connections, recovery state, the one replication-lag query.

Every query reaches a published port on 127.0.0.1 (a region's ALB, or one Patroni member) as the
superuser. Connections are autocommit; ``timeout_s`` bounds the connection (libpq's minimum is 2 s)
and, as ``statement_timeout``, every statement.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import psycopg

from drdrill.mirror.plan import DR_SLOT, SUPERUSER

if TYPE_CHECKING:
    from drdrill.mirror.state import MirrorState

__all__ = ["connect", "in_recovery", "replication_lag", "writable"]

# Every walsender of a writable leader: the slot it uses (a region's name for a cross-region
# replica), the replica's application name, state, sync state, bytes and seconds of replay lag.
_LAG_QUERY = (
    "select coalesce(s.slot_name, ''), r.application_name, r.state, r.sync_state, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, "
    "coalesce(extract(epoch from r.replay_lag), 0)::float8 "
    "from pg_stat_replication r left join pg_replication_slots s on s.active_pid = r.pid"
)


def connect(host: str, port: int, *, timeout_s: float = 5.0, dbname: str = "postgres") -> psycopg.Connection:
    """An autocommit connection as the mirror's superuser; psycopg.Error or OSError when that fails."""
    return psycopg.connect(
        host=host, port=int(port), user=SUPERUSER[0], password=SUPERUSER[1], dbname=dbname,
        connect_timeout=max(2, math.ceil(timeout_s)), application_name="drdrill", autocommit=True,
        options=f"-c statement_timeout={int(timeout_s * 1000)}",
    )  # fmt: skip


def in_recovery(state: MirrorState, region: str) -> bool | None:
    """Whether ``region``'s ALB SQL port reaches a server in recovery; None when none answers."""
    try:
        with state.connect(region, timeout_s=2.0) as conn:
            row = conn.execute("select pg_is_in_recovery()").fetchone()
    except (psycopg.Error, OSError):
        return None
    return bool(row[0]) if row else None


def writable(state: MirrorState, region: str) -> bool:
    """Whether ``region``'s ALB SQL port reaches a writable (not in recovery) PostgreSQL."""
    state.check_region(region)
    return in_recovery(state, region) is False


def replication_lag(state: MirrorState) -> dict[str, dict[str, Any]]:
    """Walsenders of every writable region's leader: name -> {bytes, seconds, state, upstream}.

    A walsender using a slot named after a region (``dr``, or an old primary rebuilt as replica) is
    keyed by that region (the DR slot by the dr-role region whatever its name); in-region replicas by their member name. A region with role ``dr`` that
    nobody streams to shows ``{"bytes": None, "seconds": None, "state": "not streaming"}``.
    """
    out: dict[str, dict[str, Any]] = {}
    dr = state.dr_region
    for region in state.regions:
        if not writable(state, region):
            continue
        try:
            with state.connect(region, timeout_s=2.0) as conn:
                rows = conn.execute(_LAG_QUERY).fetchall()
        except (psycopg.Error, OSError):
            continue
        for slot, app, st, sync, lag_bytes, lag_s in rows:
            name = slot if slot in state.regions else (dr if dr and slot == DR_SLOT else app)
            out[name] = {
                "bytes": int(lag_bytes or 0),
                "seconds": float(lag_s or 0),
                "state": f"{st}, {sync}",
                "upstream": region,
            }
    for region, info in state.regions.items():
        if info["role"] == "dr" and region not in out:
            out[region] = {"bytes": None, "seconds": None, "state": "not streaming"}
    return out
