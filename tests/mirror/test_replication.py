"""The replication sampler on the shared mirror: both sides answer at the asked rate, positions only move forward."""

from __future__ import annotations

import time

import pytest

from drdrill.checkers.db_loss import replication_samples
from drdrill.history import HistoryWriter, load_history
from drdrill.mirror.replication import ReplicationSampler

pytestmark = pytest.mark.docker


def test_the_sampler_reads_both_leaders_ten_times_a_second_and_sees_a_commit_replayed(mirror, tmp_path):
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        sampler = ReplicationSampler(mirror, writer, interval_s=0.1).start()
        try:
            time.sleep(1.0)
            with mirror.connect("primary") as conn:
                conn.execute("select txid_current()")  # one commit the DR must replay
            committed_s = time.time()
            time.sleep(2.0)
        finally:
            stats = sampler.stop()
    platform = load_history(path).platform
    dr, primary = replication_samples(platform, "dr"), replication_samples(platform, "primary")
    assert len(dr) >= 25 and len(primary) >= 25, stats
    assert stats["dr"]["achieved_per_s"] >= 8 and stats["primary"]["achieved_per_s"] >= 8, stats
    assert all(op["in_recovery"] for op in dr) and not any(op["in_recovery"] for op in primary)
    for side, name in ((dr, "replay_lsn"), (dr, "receive_lsn"), (primary, "current_lsn"), (primary, "replay_lsn")):
        values = [op[name] for op in side]
        assert None not in values and values == sorted(values), name
    assert all(op["lag_bytes"] >= 0 for op in primary)
    # the DR replayed our commit: its last replayed commit time reached the moment we committed
    assert dr[-1]["last_replay_s"] >= committed_s - 0.5, (dr[-1], committed_s)
    assert dr[-1]["last_replay_s"] <= dr[-1]["end_s"]
    assert not [op for op in platform if op["f"] == "replication.unreachable"]
