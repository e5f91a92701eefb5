"""The database's own view of a failover's loss, beside the users': hand-written samples of known lag."""

from __future__ import annotations

import pytest

from drdrill.checkers import Validity
from drdrill.checkers.db_loss import loss_figures
from drdrill.checkers.rpo import check_rpo
from drdrill.config import default_config
from drdrill.history import History
from tests.histories import T0, fault, replication, write

CONFIG = default_config()
FAULT = T0 + 30
PROMOTED = FAULT + 8


def payments(start_s: float, end_s: float, rate_per_s: float = 20.0) -> tuple[list[dict], list[tuple[str, float]]]:
    ops, keys = [], []
    i = 0
    while (t := start_s + i / rate_per_s) < end_s:
        key = f"run-p-{i:06d}"
        ops += write("payments", key, t)
        keys.append((key, t))
        i += 1
    return ops, keys


def failover(replayed_until_s: float, lost_from_s: float, samples: bool = True, promoted: bool = True,
             objective_s: float | None = None, wan_rtt_ms: float | None = None):
    """Payments at 20/s until the fault; those written from ``lost_from_s`` on are missing from the
    final read; the DR replayed commits up to ``replayed_until_s`` and was promoted 8 s after the fault."""
    ops, keys = payments(T0, FAULT)
    present = [k for k, t in keys if t < lost_from_s]
    if samples:
        ops += replication(T0, FAULT + 15, [t for _, t in keys], replayed_until_s,
                           promoted_s=PROMOTED if promoted else None, primary_until_s=FAULT)
    overrides = {"financial": objective_s} if objective_s is not None else None
    result = check_rpo(History.from_ops(ops + fault(FAULT)), CONFIG, {"present": {"payments": present}},
                       overrides, wan_rtt_ms=wan_rtt_ms)
    return result.find("rpo:financial"), keys


def test_the_database_and_the_users_agree_on_a_half_second_loss():
    result, keys = failover(replayed_until_s=FAULT - 0.51, lost_from_s=FAULT - 0.5, wan_rtt_ms=70.2)
    m = result.metrics
    users_s, db_s, agree = loss_figures(result)
    assert m["lost_count"] == 10
    assert users_s == pytest.approx(0.5 - 0.003, abs=1e-6)
    # the last replayed commit is the last write before FAULT - 0.5: 0.55 s before the fault
    assert db_s == pytest.approx(0.55, abs=1e-6)
    assert agree is True
    assert m["db_sample_period_s"] == pytest.approx(0.1)
    assert m["write_interval_s"] == pytest.approx(0.05)
    assert m["first_lost_latency_s"] == pytest.approx(0.003, abs=1e-6)  # its commit lies within it
    assert m["tolerance_s"] == pytest.approx(0.153, abs=1e-6)
    assert m["db_promoted_s"] == pytest.approx(PROMOTED, abs=0.1)
    # at the last samples before the fault (0.1 s before it) the primary had committed 9 writes the
    # DR had not replayed
    assert m["db_lag_bytes_at_fault"] == 9 * 500
    assert m["write_rate_per_s"] == pytest.approx(20.0)
    assert result.validity is Validity.VALID
    assert "finding" not in result.evidence
    text = " ".join(result.explanation)
    assert "4500 bytes of WAL behind" in text and "70.2 ms" in text and "20.0/s" in text
    assert "The database agrees" in text


def test_a_disagreement_is_a_finding_that_leaves_a_verdict_both_sides_support():
    # the database says it replayed nothing in the last 3 s, the users lost only 0.5 s
    result, _ = failover(replayed_until_s=FAULT - 3.0, lost_from_s=FAULT - 0.5)
    users_s, db_s, agree = loss_figures(result)
    assert agree is False
    assert db_s - users_s == pytest.approx(3.0 - 0.5 + 0.003, abs=0.06)
    assert "either the harness" in result.evidence["finding"].lower()
    assert result.evidence["finding"] in result.explanation
    assert result.validity is Validity.VALID  # 0.5 s and 3 s are both within 5 min


def test_a_disagreement_across_the_objective_makes_the_verdict_unknown():
    result, _ = failover(replayed_until_s=FAULT - 3.0, lost_from_s=FAULT - 0.5, objective_s=1.0)
    assert result.metrics["db_agrees"] is False
    assert result.validity is Validity.UNKNOWN
    assert "different sides of the RPO objective of 1 s" in result.explanation[0]


def test_without_samples_the_database_side_is_absent_not_a_failure():
    result, _ = failover(replayed_until_s=FAULT - 0.51, lost_from_s=FAULT - 0.5, samples=False)
    assert loss_figures(result)[1:] == (None, None)
    assert result.metrics["db_samples"] == {"dr": 0, "primary": 0}
    assert result.validity is Validity.VALID
    assert "database's own view is absent" in " ".join(result.explanation)


def test_samples_without_loss_agree_on_a_window_of_one_write_interval():
    result, _ = failover(replayed_until_s=FAULT, lost_from_s=FAULT + 1)
    users_s, db_s, agree = loss_figures(result)
    assert result.metrics["lost_count"] == 0 and users_s == 0.0
    assert db_s == pytest.approx(0.05, abs=1e-6)  # the last commit, one write interval before the fault
    assert agree is True
    assert result.metrics["db_lag_bytes_at_fault"] == 0


def test_a_dr_never_promoted_reports_its_lag_but_no_loss_window():
    result, _ = failover(replayed_until_s=FAULT - 0.51, lost_from_s=FAULT - 0.5, promoted=False)
    assert result.metrics["db_loss_window_s"] is None and result.metrics["db_agrees"] is None
    assert result.metrics["db_lag_bytes_at_fault"] == 4500
    assert "not promoted" in " ".join(result.explanation)


def test_platform_ops_are_not_client_ops():
    ops, _ = payments(T0, T0 + 1)
    history = History.from_ops(ops + replication(T0, T0 + 1, [], T0))
    assert history.n == len(ops)
    assert len(history.platform) == 20 and all(op["process"] == "platform" for op in history.platform)


def test_a_history_file_keeps_every_sample_field(tmp_path):
    from drdrill.history import HistoryWriter, load_history

    ops = replication(T0, T0 + 0.3, [T0 + 0.05], T0 + 0.05, promoted_s=T0 + 0.2)
    with HistoryWriter(tmp_path / "history.jsonl") as writer:
        for op in ops:
            writer.append(op)
    loaded = load_history(tmp_path / "history.jsonl").platform
    expected = History.from_ops(ops).platform
    assert loaded == expected
    assert {"in_recovery", "replay_lsn", "last_replay_s", "current_lsn", "lag_bytes", "replay_lag_s",
            "side", "member"} <= set().union(*loaded)


def test_commits_replayed_while_the_fault_took_effect_mean_no_loss_by_the_database():
    # isolating a region takes about a second: writes kept being acknowledged and replayed until 0.3 s
    # after t_fault (as a real cross-region failover on the mirror showed), and none was lost
    ops, keys = payments(T0, FAULT + 0.5)
    ops += replication(T0, FAULT + 15, [t for _, t in keys], FAULT + 0.34, promoted_s=PROMOTED, primary_until_s=FAULT)
    result = check_rpo(History.from_ops(ops + fault(FAULT)), CONFIG,
                       {"present": {"payments": [k for k, _ in keys]}}).find("rpo:financial")
    users_s, db_s, agree = loss_figures(result)
    assert users_s == 0.0 and db_s == pytest.approx(-0.3, abs=1e-6) and agree is True
    assert result.metrics["db_difference_s"] == 0.0
    assert result.metrics["db_replayed_after_fault_s"] == pytest.approx(0.3, abs=1e-6)
    assert "replayed commits made up to 0.300 s after the fault began" in " ".join(result.explanation)


def test_a_loss_that_begins_while_the_fault_takes_effect_is_compared_without_t_fault():
    # replication cut 0.3 s after t_fault: the writes of the 0.1 s before the cut are lost
    ops, keys = payments(T0, FAULT + 0.5)
    ops += replication(T0, FAULT + 15, [t for _, t in keys], FAULT + 0.21, promoted_s=PROMOTED,
                       primary_until_s=FAULT + 0.3)
    present = [k for k, t in keys if t < FAULT + 0.21]
    result = check_rpo(History.from_ops(ops + fault(FAULT, duration_s=1.2)), CONFIG,
                       {"present": {"payments": present}}).find("rpo:financial")
    users_s, db_s, agree = loss_figures(result)
    assert result.metrics["lost_count"] == 5  # acknowledged at +0.253 .. +0.453
    # both windows count back from the moment of loss, the last lost acknowledgement (+0.453), not
    # from t_fault: the users' loss spans 0.2 s, the database's reaches back to its commit at +0.2
    assert result.metrics["loss_point_s"] == pytest.approx(FAULT + 0.453, abs=1e-6)
    assert users_s == pytest.approx(0.2, abs=1e-6) and db_s == pytest.approx(0.253, abs=1e-6)
    assert result.metrics["db_replayed_after_fault_s"] == pytest.approx(0.2, abs=1e-6)
    assert result.metrics["db_difference_s"] == pytest.approx(0.053, abs=1e-6) and agree is True
