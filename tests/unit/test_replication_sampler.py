"""The replication sampler's own loop, against stand-in leaders: its ops, its pace, its outages."""

from __future__ import annotations

import time

import psycopg

from drdrill.history import HistoryWriter, load_history
from drdrill.mirror.replication import ReplicationSampler


class Answer:
    def __init__(self, row):
        self.row = row

    def fetchone(self):
        return self.row


class Leader:
    """A connection answering the sampler's queries with growing positions; breaks after ``fail_after``."""

    def __init__(self, side, fail_after=None):
        self.side, self.calls, self.fail_after = side, 0, fail_after

    def execute(self, query, params=None):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        lsn = 1000 * self.calls
        if self.side == "dr":
            return Answer((True, lsn, lsn + 10, 1_800_000_000.0 + self.calls, "172.30.2.11"))
        return Answer((False, lsn + 500, lsn + 400, lsn + 300, lsn, 0.012, "172.30.1.11"))

    def close(self):
        pass


class State:
    """What the sampler needs of a MirrorState; the primary region ``broken`` refuses connections."""

    dr_region, primary_region = "dr", "primary"

    def __init__(self, broken=(), fail_after=None):
        self.broken, self.fail_after, self.connects = set(broken), fail_after, []

    def connect(self, region, timeout_s=5.0):
        self.connects.append(region)
        if region in self.broken:
            raise psycopg.OperationalError(f"connection to {region} refused")
        return Leader(region, self.fail_after if region == "primary" else None)


def sample(tmp_path, state, seconds=0.6, interval_s=0.05):
    with HistoryWriter(tmp_path / "h.jsonl") as writer:
        sampler = ReplicationSampler(state, writer, interval_s=interval_s).start()
        time.sleep(seconds)
        started = time.monotonic()
        stats = sampler.stop()
        stop_s = time.monotonic() - started
    return load_history(tmp_path / "h.jsonl").platform, stats, stop_s


def test_both_sides_are_sampled_at_the_asked_pace_with_every_field(tmp_path):
    ops, stats, _ = sample(tmp_path, State())
    dr = [op for op in ops if op["side"] == "dr"]
    primary = [op for op in ops if op["side"] == "primary"]
    assert 9 <= len(dr) <= 14 and 9 <= len(primary) <= 14, stats  # 0.6 s at 20/s
    assert stats["asked_per_s"] == 20 and stats["dr"]["achieved_per_s"] >= 15
    assert dr[0]["in_recovery"] is True and dr[0]["replay_lsn"] == 1000 and dr[0]["receive_lsn"] == 1010
    assert dr[0]["last_replay_s"] == 1_800_000_001.0 and dr[0]["region"] == "dr"
    assert primary[0]["current_lsn"] == 1500 and primary[0]["replay_lsn"] == 1000
    assert primary[0]["lag_bytes"] == 500 and primary[0]["replay_lag_s"] == 0.012
    assert all(op["type"] == "info" and op["process"] == "platform" and op["end_s"] >= op["time_s"] for op in ops)


def test_a_dead_primary_is_written_once_and_never_delays_the_dr_nor_raises(tmp_path):
    state = State(fail_after=3)  # the primary answers 3 times, then its connection breaks and stays refused

    def refuse_after_first(region, timeout_s=5.0, connect=state.connect):
        if region == "primary" and "primary" in state.connects:
            state.connects.append(region)
            raise psycopg.OperationalError("connection refused")
        return connect(region, timeout_s)

    state.connect = refuse_after_first
    ops, stats, stop_s = sample(tmp_path, state, seconds=1.0)
    dr = [op for op in ops if op["side"] == "dr" and op["f"] == "replication.sample"]
    primary = [op for op in ops if op["side"] == "primary" and op["f"] == "replication.sample"]
    unreachable = [op for op in ops if op["f"] == "replication.unreachable"]
    assert len(primary) == 3 and len(dr) >= 15
    assert len(unreachable) == 1 and "closed the connection" in unreachable[0]["error"]
    assert stats["primary"]["outages"] == 1
    # backoff: 0.1, 0.2, 0.4 s... so a handful of reconnects in a second, not one per 50 ms
    assert 2 <= state.connects.count("primary") <= 7
    assert stop_s < 1.0


def test_a_reconnection_reads_the_state_file_afresh(tmp_path, monkeypatch):
    # undoing an isolation publishes new ports: the state the sampler started with refuses, the file's answers
    import drdrill.mirror.state

    stale = State(broken={"primary"})
    stale.path = tmp_path / "state.json"
    fresh = State()
    monkeypatch.setattr(drdrill.mirror.state, "load_state", lambda path: fresh)
    ops, stats, _ = sample(tmp_path, stale, seconds=0.4)
    assert stats["primary"]["samples"] >= 5 and stale.connects == []
    assert fresh.connects.count("primary") == 1
