"""Sampling the DR replica's replication position into a drill's history: the database's own view of the loss.

:class:`ReplicationSampler` asks, every ``interval_s`` (default 0.1 s), the DR region's standby
leader where its replay stands and the primary region's leader where its WAL and the DR walsender
stand, and appends each answer as a ``replication.sample`` platform op (fields in
:mod:`drdrill.history`). Both are reached through their region's ALB SQL port on 127.0.0.1
(:meth:`~drdrill.mirror.state.MirrorState.connect`: the primary's ALB forwards to the writable
leader, the DR's to its standby leader).

One thread and one persistent connection per side, so the primary dying (a region loss) never
delays the DR's samples. A side that stops answering is written once as ``replication.unreachable``
(with the error) and reconnected with exponential backoff (0.1 s doubling to 2 s) until the
sampler stops; each reconnection reads the state file afresh, because undoing an isolation
publishes the reconnected containers' ports anew (:func:`drdrill.mirror.faults.undo`). Nothing here raises into the drill: a sampler that cannot reach a side only leaves
fewer samples (the RPO checker then says the database's view is absent or thin).

Its own cost is measured (:meth:`ReplicationSampler.stats`): samples per second achieved against
asked, mean query time, outages per side.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import psycopg
import tenacity

from drdrill.mirror.plan import DR_SLOT

if TYPE_CHECKING:
    from drdrill.history import HistoryWriter
    from drdrill.mirror.state import MirrorState

__all__ = ["DEFAULT_INTERVAL_S", "SIDES", "ReplicationSampler"]

log = logging.getLogger("drdrill")

DEFAULT_INTERVAL_S = 0.1
SIDES = ("dr", "primary")
TIMEOUT_S = 1.0  # statement timeout; libpq's connect timeout cannot be below 2 s

_LSN = "pg_wal_lsn_diff({}, '0/0')::bigint"
_DR_QUERY = (
    "select pg_is_in_recovery(), " + _LSN.format("pg_last_wal_replay_lsn()") + ", "
    + _LSN.format("pg_last_wal_receive_lsn()") + ", "
    "extract(epoch from pg_last_xact_replay_timestamp())::float8, host(inet_server_addr())"
)
# The primary's WAL position and its DR walsender (the one on the DR slot), one row even without it.
_PRIMARY_QUERY = (
    "select pg_is_in_recovery(), case when pg_is_in_recovery() then null else "
    + _LSN.format("pg_current_wal_lsn()") + " end, w.sent, w.flush, w.replay, w.lag, host(inet_server_addr()) "
    "from (select 1) one left join lateral (select " + _LSN.format("r.sent_lsn") + " sent, "
    + _LSN.format("r.flush_lsn") + " flush, " + _LSN.format("r.replay_lsn") + " replay, "
    "extract(epoch from r.replay_lag)::float8 lag from pg_stat_replication r "
    "join pg_replication_slots s on s.active_pid = r.pid where s.slot_name = %s limit 1) w on true"
)


class ReplicationSampler:
    """Samples both sides' replication positions into ``writer`` until :meth:`stop` (a context manager).

    ``regions``: side -> region name (default: the state's DR and primary regions).
    """

    def __init__(self, state: MirrorState, writer: HistoryWriter, interval_s: float = DEFAULT_INTERVAL_S,
                 regions: dict[str, str] | None = None) -> None:  # fmt: skip
        if interval_s <= 0:
            raise ValueError(f"replication sampling interval must be > 0 s, got {interval_s}")
        self.state = state
        self.writer = writer
        self.interval_s = interval_s
        self.regions = regions or {"dr": state.dr_region, "primary": state.primary_region}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._counts: dict[str, dict[str, float]] = {
            side: {"samples": 0, "query_s": 0.0, "outages": 0} for side in self.regions}
        self._started_s: float | None = None
        self._stopped_s: float | None = None

    def __enter__(self) -> ReplicationSampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ReplicationSampler:
        """Start one sampling thread per side whose region exists (a mirror without DR samples nothing)."""
        self._started_s = time.monotonic()
        for side, region in self.regions.items():
            if region is None:
                continue
            thread = threading.Thread(target=self._run, args=(side, region), daemon=True,
                                      name=f"drdrill-replication-{side}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout_s: float = 3.0) -> dict[str, Any]:
        """Stop sampling (idempotent); returns :meth:`stats`."""
        if self._stopped_s is None:
            self._stop.set()
            for thread in self._threads:
                thread.join(timeout_s)
            self._stopped_s = time.monotonic()
            self.writer.flush()
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """The sampler's cost: per side samples, achieved samples/s against asked, mean query ms, outages."""
        end = self._stopped_s if self._stopped_s is not None else time.monotonic()
        elapsed_s = max(end - (self._started_s or end), 1e-9)
        out: dict[str, Any] = {"interval_s": self.interval_s, "asked_per_s": round(1.0 / self.interval_s, 3),
                               "elapsed_s": round(elapsed_s, 3)}
        for side, counts in self._counts.items():
            samples = int(counts["samples"])
            out[side] = {
                "region": self.regions[side], "samples": samples,
                "achieved_per_s": round(samples / elapsed_s, 3),
                "query_ms_mean": round(1000 * counts["query_s"] / samples, 3) if samples else None,
                "outages": int(counts["outages"]),
            }  # fmt: skip
        return out

    # ------------------------------------------------------------------ one side

    def _run(self, side: str, region: str) -> None:
        try:
            self._sample_until_stopped(side, region)
        except Exception as exc:  # noqa: BLE001 - a sampler bug must never break the drill
            log.warning("replication sampler (%s side) stopped: %s: %s", side, type(exc).__name__, exc)

    def _sample_until_stopped(self, side: str, region: str) -> None:
        reachable = [True]

        def lost(error: BaseException) -> None:
            if reachable[0]:
                reachable[0] = False
                self._counts[side]["outages"] += 1
                self.writer.append({"process": "platform", "type": "info", "f": "replication.unreachable",
                                    "side": side, "region": region, "time_s": time.time(),
                                    "error": f"{type(error).__name__}: {str(error).strip()[:200]}"})

        connecting = tenacity.Retrying(
            wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
            stop=tenacity.stop_when_event_set(self._stop),
            retry=tenacity.retry_if_exception_type((psycopg.Error, OSError)),
            sleep=self._stop.wait,
            before_sleep=lambda retry: lost(retry.outcome.exception()),
            retry_error_callback=lambda _: None,
        )
        query, params = (_DR_QUERY, None) if side == "dr" else (_PRIMARY_QUERY, (DR_SLOT,))
        conn: psycopg.Connection | None = None
        next_s = time.monotonic()
        try:
            while not self._stop.is_set():
                if conn is None:
                    conn = connecting(self._connect, region)
                    if conn is None:
                        return
                sent_s = time.time()
                try:
                    row = conn.execute(query, params).fetchone()
                except (psycopg.Error, OSError) as exc:
                    lost(exc)
                    conn.close()
                    conn = None
                    continue
                done_s = time.time()
                reachable[0] = True
                self._counts[side]["samples"] += 1
                self._counts[side]["query_s"] += done_s - sent_s
                self.writer.append(_op(side, region, row, sent_s, done_s))
                next_s += self.interval_s
                now = time.monotonic()
                if next_s < now:  # late (a slow answer): sample at once, without a burst to catch up
                    next_s = now
                self._stop.wait(next_s - now)
        finally:
            if conn is not None:
                conn.close()


    def _connect(self, region: str) -> psycopg.Connection:
        """A connection to ``region``'s ALB SQL port as the state file publishes it now."""
        state = self.state
        path = getattr(state, "path", None)
        if path is not None:
            from drdrill.errors import TargetError
            from drdrill.mirror.state import load_state

            try:
                state = load_state(path)
            except TargetError:
                state = self.state
        return state.connect(region, timeout_s=TIMEOUT_S)


def _op(side: str, region: str, row: Any, sent_s: float, done_s: float) -> dict[str, Any]:
    """One ``replication.sample`` platform op from a query's row."""
    op: dict[str, Any] = {"process": "platform", "type": "info", "f": "replication.sample", "side": side,
                          "region": region, "time_s": sent_s, "end_s": done_s,
                          "latency_ms": round(1000 * (done_s - sent_s), 3)}
    if side == "dr":
        in_recovery, replay, receive, last_replay, member = row
        op.update(in_recovery=in_recovery, replay_lsn=replay, receive_lsn=receive,
                  last_replay_s=last_replay, member=member)
    else:
        in_recovery, current, sent, flush, replay, lag_s, member = row
        op.update(in_recovery=in_recovery, current_lsn=current, sent_lsn=sent, flush_lsn=flush,
                  replay_lsn=replay, replay_lag_s=lag_s, member=member,
                  lag_bytes=max(0, current - replay) if current is not None and replay is not None else None)
    return op
