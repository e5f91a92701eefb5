"""The runbook: manual steps and their operators, the breakdown checker, the failback's maintenance window."""

from __future__ import annotations

import json
import threading
import time

import pytest

from drdrill import runbook
from drdrill.checkers import Validity, check_run, check_runbook
from drdrill.checkers.rto import check_rto, maintenance_windows
from drdrill.config import default_config
from drdrill.errors import RunbookError
from drdrill.history import History
from tests.histories import T0, fault, reads, runbook_step

CONFIG = default_config()
ALL = [s.name for s in CONFIG.services]


def names(result):
    return {result.name} | {n for child in result.children for n in names(child)}


def platform_reads(start_s, end_s, down=(), rate_per_s=20.0):
    return [op for service in ALL for op in reads(service, start_s, end_s, rate_per_s, down)]


# ------------------------------------------------------------------------------- manual steps


def test_manual_steps_come_from_configuration_and_environment(monkeypatch):
    monkeypatch.delenv(runbook.MANUAL_ENV, raising=False)
    assert runbook.manual_steps({}) == set()
    assert runbook.manual_steps({"runbook_manual": "declare, dns"}) == {"declare", "dns"}
    assert runbook.manual_steps({"runbook_manual": ["promote"]}) == {"promote"}
    monkeypatch.setenv(runbook.MANUAL_ENV, "validate")
    assert runbook.manual_steps({"runbook_manual": "dns"}) == {"dns", "validate"}
    monkeypatch.setenv(runbook.MANUAL_ENV, "all")
    assert runbook.manual_steps({}) == set(runbook.STEPS)


def test_an_unknown_manual_step_is_named_with_the_valid_ones(monkeypatch):
    monkeypatch.delenv(runbook.MANUAL_ENV, raising=False)
    with pytest.raises(RunbookError, match=r"'dnss'.*steps are detect, declare, scale-up"):
        runbook.manual_steps({"runbook_manual": "declare,dnss"})


def test_an_auto_step_runs_at_once_and_is_timed():
    record = runbook.run_step("promote", lambda: time.sleep(0.2) or {"region": "dr"})
    assert record["runbook_step"] == "promote" and record["phase"] == "promotion"
    assert record["mode"] == "auto" and record["operator_s"] == 0.0
    assert record["execute_s"] == pytest.approx(0.2, abs=0.1)
    assert record["result"] == {"region": "dr"}


def test_a_manual_step_waits_for_its_operator_and_records_how_long_they_took(tmp_path):
    performed = []

    def operator():
        deadline = time.monotonic() + 5
        while runbook.pending(tmp_path) is None:  # the harness announced the step
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert runbook.pending(tmp_path)["step"] == "dns"
        assert not performed, "the step ran before its operator confirmed it"
        time.sleep(0.5)
        runbook.confirm("dns", tmp_path, by="ic")

    thread = threading.Thread(target=operator)
    thread.start()
    record = runbook.run_step("dns", lambda: performed.append(time.time()) or "switched",
                              manual=True, directory=tmp_path, timeout_s=10)
    thread.join()
    assert record["mode"] == "manual" and record["confirmed_by"] == "ic"
    assert record["operator_s"] == pytest.approx(0.5, abs=0.3)
    assert record["result"] == "switched" and len(performed) == 1
    assert record["ended_s"] - record["started_s"] >= record["operator_s"]
    assert runbook.pending(tmp_path) is None and not list(tmp_path.glob("*.done"))


def test_confirming_names_the_step_that_is_actually_waiting(tmp_path):
    with pytest.raises(RunbookError, match="no runbook step is waiting"):
        runbook.confirm("dns", tmp_path)
    (tmp_path / "pending.json").write_text(json.dumps({"step": "declare", "since_s": time.time()}))
    with pytest.raises(RunbookError, match=r"step 'declare' is waiting.*drdrill runbook done declare"):
        runbook.confirm("dns", tmp_path)
    with pytest.raises(RunbookError, match="unknown runbook step 'dnz'"):
        runbook.confirm("dnz", tmp_path)
    runbook.confirm("declare", tmp_path)
    assert (tmp_path / "declare.done").is_file()


def test_an_unconfirmed_manual_step_times_out_without_running(tmp_path):
    ran = []
    with pytest.raises(RunbookError, match=r"nobody confirmed runbook step 'declare' within 0 s"):
        runbook.run_step("declare", lambda: ran.append(1), manual=True, directory=tmp_path,
                         timeout_s=0.3)
    assert not ran and runbook.pending(tmp_path) is None


# ------------------------------------------------------------------------ the runbook checker


FAILOVER = [("detect", 1.0, 8.0), ("declare", 9.0, 5.0), ("scale-up", 14.0, 1.5),
            ("promote", 15.5, 0.3), ("dns", 15.8, 0.1), ("deploy", 15.9, 7.0),
            ("validate", 22.9, 0.1), ("notify", 23.0, 0.0)]


def failover_ops(fault_at, manual=()):
    ops = fault(fault_at, "isolate-primary-region", duration_s=0.9)
    for step, offset, duration in FAILOVER:
        mode = "manual" if step in manual else "auto"
        ops += runbook_step(step, fault_at + offset, duration, mode=mode,
                            operator_s=duration - 0.1 if mode == "manual" else 0.0)
    return ops


def test_the_runbook_breakdown_is_rebuilt_from_the_history():
    fault_at = T0 + 30
    history = History.from_ops(platform_reads(T0, T0 + 100, [(fault_at, fault_at + 24)])
                               + failover_ops(fault_at, manual={"declare"}))
    result = check_runbook(history)
    assert result.validity is Validity.VALID
    rows = result.evidence["steps"]
    assert [r["step"] for r in rows] == [s for s, _, _ in FAILOVER]
    assert rows[0]["started_after_fault_s"] == pytest.approx(1.0)
    assert result.metrics["detection_s"] == pytest.approx(8.0)
    assert result.metrics["declaration_s"] == pytest.approx(5.0)
    assert result.metrics["deploy_s"] == pytest.approx(7.0)
    assert result.metrics["operator_s"] == pytest.approx(4.9)
    assert rows[1]["mode"] == "manual"
    assert "declare 5.0 s (4.9 s operator)" in result.explanation[0]
    assert check_run(history, CONFIG, None).find("runbook").validity is Validity.VALID


def test_a_failed_step_makes_the_runbook_invalid_and_an_interrupted_one_unknown():
    ops = fault(T0, "isolate") + runbook_step("detect", T0 + 1, 8) + runbook_step("declare", T0 + 9, 5)
    failed = ops + runbook_step("promote", T0 + 15, 30, outcome="fail")
    result = check_runbook(History.from_ops(failed))
    assert result.validity is Validity.INVALID
    assert "Runbook step 'promote'" in result.explanation[0] and "went wrong" in result.explanation[0]
    interrupted = ops + runbook_step("promote", T0 + 15, 3, outcome="info")
    assert check_runbook(History.from_ops(interrupted)).validity is Validity.UNKNOWN
    assert check_runbook(History.from_ops(fault(T0))) is None
    plain = check_run(History.from_ops(platform_reads(T0 - 20, T0 + 40) + fault(T0)), CONFIG, None)
    assert "runbook" not in names(plain)


# --------------------------------------------------------------- the failback's maintenance window


def test_the_failback_maintenance_window_is_judged_apart_from_the_failover():
    fault_at = T0 + 30
    maintenance_at = fault_at + 70  # well after the failover recovered
    down = [(fault_at, fault_at + 24), (maintenance_at, maintenance_at + 6)]
    ops = platform_reads(T0, T0 + 160, down) + failover_ops(fault_at)
    ops += runbook_step("maintenance", maintenance_at, 0.01)
    ops += runbook_step("switchover", maintenance_at + 0.01, 5.5)
    ops += runbook_step("dns-back", maintenance_at + 5.9, 0.01)
    history = History.from_ops(ops)
    assert maintenance_windows(history) == [(maintenance_at, pytest.approx(maintenance_at + 5.91),
                                             "runbook")]
    result = check_rto(history, CONFIG)
    # the failover: 24 s, not stretched to the end of the failback's planned outage
    assert result.find("rto-tier:critical").metrics["measured_rto_s"] == pytest.approx(24, abs=0.06)
    failback = result.find("rto-failback-tier:critical")
    assert failback.metrics["measured_rto_s"] == pytest.approx(6, abs=0.06)
    assert result.find("rto-failback").metrics["maintenance_s"] == pytest.approx(5.91)
    assert result.validity is Validity.VALID


def test_a_planned_outage_reported_by_a_rollback_is_excluded_and_not_a_failback():
    fault_at = T0 + 30
    restore_at = fault_at + 60
    down = [(fault_at, fault_at + 20), (restore_at, restore_at + 8)]
    ops = platform_reads(T0, T0 + 130, down) + fault(fault_at)
    ops += [{"process": "nemesis", "type": "ok", "f": "stop:restore-mirror", "time_s": restore_at - 1,
             "end_s": restore_at + 12, "phase": "rollback", "kind": "action",
             "maintenance_window_s": [restore_at, restore_at + 8.0]}]
    result = check_rto(History.from_ops(ops), CONFIG)
    assert result.find("rto-tier:critical").metrics["measured_rto_s"] == pytest.approx(20, abs=0.06)
    assert "rto-failback" not in names(result)


def test_without_a_maintenance_window_the_relapse_counts():
    fault_at = T0 + 30
    down = [(fault_at, fault_at + 24), (fault_at + 70, fault_at + 76)]
    result = check_rto(History.from_ops(platform_reads(T0, T0 + 160, down) + fault(fault_at)), CONFIG)
    assert result.find("rto-tier:critical").metrics["measured_rto_s"] == pytest.approx(76, abs=0.06)


# ------------------------------------------------------------ judgements of the Gherkin Then steps


def served(service, start_s, end_s, region, rate_per_s=10.0):
    ops = reads(service, start_s, end_s, rate_per_s)
    for op in ops:
        op["region"] = region
    return ops


def failover_history(fault_at):
    ops = []
    for service in ALL:
        ops += served(service, T0, fault_at, "primary")
        ops += served(service, fault_at + 20, fault_at + 60, "dr")
    return History.from_ops(ops + failover_ops(fault_at))


def test_served_by_judges_which_region_answered_users():
    from drdrill.run import judge

    fault_at = T0 + 30
    history = failover_history(fault_at)
    j = {"limit": 0, "step": ""}
    assert judge(history, CONFIG, None, {**j, "kind": "served-by", "subject": "dr"}).validity is Validity.VALID
    primary = judge(history, CONFIG, None, {**j, "kind": "served-by", "subject": "primary"})
    assert primary.validity is Validity.INVALID and "0 of" in primary.explanation[0]
    at_end = judge(history, CONFIG, None, {**j, "kind": "serving-at-end", "subject": "primary"})
    assert at_end.validity is Validity.INVALID and "served by region dr, not primary" in at_end.explanation[0]


def test_a_runbook_step_is_judged_against_its_deadline_from_the_fault():
    from drdrill.run import judge

    history = failover_history(T0 + 30)
    detect = {"kind": "step", "subject": "detect", "step": ""}
    assert judge(history, CONFIG, None, {**detect, "limit": 10}).validity is Validity.VALID  # done at 9 s
    late = judge(history, CONFIG, None, {**detect, "limit": 5})
    assert late.validity is Validity.INVALID and late.metrics["done_after_fault_s"] == pytest.approx(9.0)
    missing = judge(history, CONFIG, None, {**detect, "subject": "switchover", "limit": 5})
    assert missing.validity is Validity.UNKNOWN
    failback = judge(history, CONFIG, None, {"kind": "rto-failback", "subject": "critical",
                                             "limit": 3600, "step": ""})
    assert failback.validity is Validity.UNKNOWN and "No failback ran" in failback.explanation[0]


def test_the_saga_judgement_is_made_from_what_was_observed_and_judged_again_offline():
    from drdrill.run import judge

    history = History.from_ops(platform_reads(T0, T0 + 30))
    base = {"kind": "saga", "subject": "payments", "limit": 60, "step": ""}
    settled = {"limit_s": 60, "pending_at_start": 4, "pending_at_end": 0, "waited_s": 5.5}
    result = judge(history, CONFIG, None, {**base, "observed": settled})
    assert result.validity is Validity.VALID and "5.5 s" in result.explanation[0]
    stuck = {**settled, "pending_at_end": 2, "waited_s": 60.4, "oldest_pending_age_s": 75.0}
    result = judge(history, CONFIG, None, {**base, "observed": stuck})
    assert result.validity is Validity.INVALID and "2 payment(s) were still pending" in result.explanation[0]
    none = {"limit_s": 60, "pending_at_start": None, "pending_at_end": None, "waited_s": 0.0}
    assert judge(history, CONFIG, None, {**base, "observed": none}).validity is Validity.UNKNOWN
    assert judge(history, CONFIG, None, base).validity is Validity.UNKNOWN  # nothing observed
