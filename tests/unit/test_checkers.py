"""Checkers on hand-written histories: outages of known length, lost writes, flapping, thin traffic."""

from __future__ import annotations

import pytest

from drdrill.checkers import CheckResult, Validity, check_run, merge_validity, run_checker
from drdrill.checkers.rpo import check_rpo, key_ranges
from drdrill.checkers.rto import check_rto, fault_start_s, service_rto
from drdrill.config import RecoveryWindow, default_config
from drdrill.history import History
from tests.histories import T0, fault, reads, write

CONFIG = default_config()
ALL = [s.name for s in CONFIG.services]


def platform_reads(start_s, end_s, rate_per_s=20.0, down=(), services=ALL, **kwargs):
    ops = []
    for service in services:
        ops += reads(service, start_s, end_s, rate_per_s, down, **kwargs)
    return ops


# ---------------------------------------------------------------- RTO


@pytest.mark.parametrize("outage_s", [2.0, 5.0, 20.0])
def test_outage_of_known_length_measures_as_that_length(outage_s):
    fault_at = T0 + 30
    ops = platform_reads(T0, T0 + 80, down=[(fault_at, fault_at + outage_s)]) + fault(fault_at)
    result = check_rto(History.from_ops(ops), CONFIG)
    for service in ALL:
        measured = result.find(f"rto:{service}").metrics["measured_rto_s"]
        # ops every 50 ms: the first success after the outage is at most one step late
        assert outage_s <= measured < outage_s + 0.05 + 1e-9, service
    assert result.validity is Validity.VALID
    assert result.find("rto-tier:critical").metrics["measured_rto_s"] == pytest.approx(outage_s, abs=0.05)


def test_no_degradation_measures_zero():
    ops = platform_reads(T0, T0 + 60) + fault(T0 + 20)
    result = check_rto(History.from_ops(ops), CONFIG)
    assert result.validity is Validity.VALID
    assert result.find("rto:payments").metrics["measured_rto_s"] == 0.0
    assert "no degradation" in result.find("rto:payments").explanation[0]


def test_flapping_recovery_counts_until_the_last_relapse():
    fault_at = T0 + 20
    # down 5 s, up 3 s, down 4 s, then up for good
    down = [(fault_at, fault_at + 5), (fault_at + 8, fault_at + 12)]
    ops = platform_reads(T0, T0 + 70, down=down) + fault(fault_at)
    measured = check_rto(History.from_ops(ops), CONFIG).find("rto:users").metrics["measured_rto_s"]
    assert measured == pytest.approx(12.0, abs=0.051)


def test_isolated_errors_after_recovery_are_tolerated_by_the_threshold():
    fault_at = T0 + 20
    ops = platform_reads(T0, T0 + 70, down=[(fault_at, fault_at + 3)], services=["auth"])
    # one stray error 20 s later: 1 in 200 requests of its window, above the 99 % threshold
    stray = next(op for op in ops if op["time_s"] >= fault_at + 23)
    stray.update(type="info", status=None, error="timeout")
    ops += fault(fault_at)
    measured = check_rto(History.from_ops(ops), CONFIG).find("rto:auth").metrics["measured_rto_s"]
    assert measured == pytest.approx(3.0, abs=0.051)


def test_never_recovered_is_invalid_with_a_lower_bound():
    fault_at = T0 + 20
    ops = platform_reads(T0, T0 + 60, down=[(fault_at, T0 + 1000)], services=["payments"]) + fault(fault_at)
    result = service_rto(History.from_ops(ops), "payments", fault_at, 3600, RecoveryWindow())
    assert result.validity is Validity.INVALID
    assert result.metrics["measured_rto_s"] is None
    assert result.metrics["rto_lower_bound_s"] == pytest.approx(30.0, abs=0.1)
    assert "did not recover" in result.explanation[0]


def test_recovery_later_than_the_objective_is_invalid():
    fault_at = T0 + 20
    ops = platform_reads(T0, T0 + 60, down=[(fault_at, fault_at + 5)]) + fault(fault_at)
    result = check_rto(History.from_ops(ops), CONFIG, objective_override_s={"critical": 4.0})
    assert result.find("rto:payments").validity is Validity.INVALID
    assert result.find("rto-tier:critical").validity is Validity.INVALID
    assert result.find("rto-tier:non-critical").validity is Validity.VALID
    assert result.validity is Validity.INVALID
    assert "NOT within" in result.find("rto:payments").explanation[0]


def test_thin_traffic_is_unknown_not_a_pass():
    fault_at = T0 + 20
    ops = platform_reads(T0, T0 + 120, rate_per_s=0.2, services=["storefront"]) + fault(fault_at)
    result = service_rto(History.from_ops(ops), "storefront", fault_at, 14400, RecoveryWindow())
    assert result.validity is Validity.UNKNOWN
    assert "Too little traffic" in result.explanation[0]


def test_thin_traffic_after_an_outage_is_unknown():
    fault_at = T0 + 20
    ops = reads("users", T0, fault_at + 5, 20, down=[(fault_at, fault_at + 5)])
    ops += reads("users", fault_at + 5, fault_at + 60, 0.3)
    result = service_rto(History.from_ops(ops + fault(fault_at)), "users", fault_at, 3600, RecoveryWindow())
    assert result.validity is Validity.UNKNOWN


def test_no_traffic_after_the_fault_is_unknown():
    ops = platform_reads(T0, T0 + 10, services=["users"]) + fault(T0 + 30)
    result = service_rto(History.from_ops(ops), "users", T0 + 30, 3600, RecoveryWindow())
    assert result.validity is Validity.UNKNOWN


def test_no_fault_is_unknown():
    history = History.from_ops(platform_reads(T0, T0 + 30))
    assert fault_start_s(history) is None
    assert check_rto(history, CONFIG).validity is Validity.UNKNOWN


def test_tier_rto_is_the_slowest_service():
    fault_at = T0 + 20
    ops = platform_reads(T0, T0 + 60, down=[(fault_at, fault_at + 2)], services=["auth", "users"])
    ops += platform_reads(T0, T0 + 60, down=[(fault_at, fault_at + 7)], services=["payments"])
    ops += platform_reads(T0, T0 + 60, services=["storefront", "analytics"]) + fault(fault_at)
    critical = check_rto(History.from_ops(ops), CONFIG).find("rto-tier:critical")
    assert critical.metrics["measured_rto_s"] == pytest.approx(7.0, abs=0.051)


def test_fault_time_is_the_first_method_action_not_a_probe_or_rollback():
    ops = platform_reads(T0, T0 + 30, services=["auth"]) + [
        {"process": "nemesis", "type": "info", "f": "start:health", "time_s": T0 + 5,
         "phase": "steady-state", "kind": "probe"},
        {"process": "nemesis", "type": "info", "f": "start:lag", "time_s": T0 + 6,
         "phase": "method", "kind": "probe"},
        *fault(T0 + 7),
        {"process": "nemesis", "type": "info", "f": "start:restore", "time_s": T0 + 9,
         "phase": "rollback", "kind": "action"},
    ]
    assert fault_start_s(History.from_ops(ops)) == T0 + 7


def test_rto_of_service_with_timeouts_counts_info_as_not_served():
    fault_at = T0 + 20
    ops = platform_reads(T0, T0 + 60, down=[(fault_at, fault_at + 4)], services=["auth"],
                         failed_type="info") + fault(fault_at)
    measured = check_rto(History.from_ops(ops), CONFIG).find("rto:auth").metrics["measured_rto_s"]
    assert measured == pytest.approx(4.0, abs=0.051)


# ---------------------------------------------------------------- RPO


def payment_writes(start_s, end_s, rate_per_s=10.0, prefix="run-p-"):
    ops, keys = [], []
    i = 0
    while (t := start_s + i / rate_per_s) < end_s:
        key = f"{prefix}{i:06d}"
        ops += write("payments", key, t)
        keys.append((key, t))
        i += 1
    return ops, keys


def test_lost_acknowledged_writes_are_counted_with_their_window():
    fault_at = T0 + 30
    ops, keys = payment_writes(T0, fault_at)
    lost = [k for k, t in keys if t >= fault_at - 2.0]  # the last 2 s never replicated
    present = [k for k, _ in keys if k not in set(lost)]
    result = check_rpo(History.from_ops(ops + fault(fault_at)), CONFIG,
                       {"present": {"payments": present}}).find("rpo:financial")
    assert result.metrics["lost_count"] == len(lost) == 20
    assert result.metrics["data_loss_window_s"] == pytest.approx(2.0 - 0.003, abs=1e-6)
    assert result.validity is Validity.VALID  # 2 s < 5 min
    assert result.evidence["lost_keys"] == [f"run-p-{len(keys) - 20:06d}..{len(keys) - 1:06d}"]
    assert "20 of 300 acknowledged financial writes were lost" in result.explanation[0]


def test_no_loss_measures_zero_window():
    fault_at = T0 + 30
    ops, keys = payment_writes(T0, fault_at)
    result = check_rpo(History.from_ops(ops + fault(fault_at)), CONFIG,
                       {"present": {"payments": [k for k, _ in keys]}}).find("rpo:financial")
    assert result.validity is Validity.VALID
    assert result.metrics["lost_count"] == 0
    assert result.metrics["data_loss_window_s"] == 0.0


def test_loss_window_beyond_the_objective_is_invalid():
    fault_at = T0 + 400
    ops, keys = payment_writes(T0, fault_at, rate_per_s=1)
    present = [k for k, t in keys if t < fault_at - 310]
    result = check_rpo(History.from_ops(ops + fault(fault_at)), CONFIG,
                       {"present": {"payments": present}}).find("rpo:financial")
    assert result.validity is Validity.INVALID
    assert result.metrics["data_loss_window_s"] > 300
    assert "NOT within the RPO objective of 300 s" in result.explanation[0]


def test_unexpected_present_writes_are_invalid():
    fault_at = T0 + 30
    ops, keys = payment_writes(T0, fault_at)
    present = [k for k, _ in keys] + ["run-p-999999"]
    result = check_rpo(History.from_ops(ops + fault(fault_at)), CONFIG,
                       {"present": {"payments": present}}).find("rpo:financial")
    assert result.validity is Validity.INVALID
    assert result.metrics["unexpected_count"] == 1
    assert result.evidence["unexpected_keys"] == ["run-p-999999"]


def test_failed_writes_found_present_are_invalid():
    fault_at = T0 + 30
    ops, keys = payment_writes(T0, fault_at)
    ops += write("payments", "run-p-failed-1", fault_at - 1, outcome="fail")
    present = [k for k, _ in keys] + ["run-p-failed-1"]
    result = check_rpo(History.from_ops(ops + fault(fault_at)), CONFIG,
                       {"present": {"payments": present}}).find("rpo:financial")
    assert result.validity is Validity.INVALID
    assert result.metrics["failed_but_present_count"] == 1


def test_unknown_outcome_writes_that_landed_are_recovered_not_errors():
    fault_at = T0 + 30
    ops, keys = payment_writes(T0, fault_at)
    ops += write("payments", "run-p-info-1", fault_at + 0.5, outcome="info")
    ops += write("payments", "run-p-info-2", fault_at + 0.6, outcome="info")
    ops += write("payments", "run-p-crashed", fault_at + 0.7, outcome=None)
    present = [k for k, _ in keys] + ["run-p-info-1", "run-p-crashed"]
    result = check_rpo(History.from_ops(ops + fault(fault_at)), CONFIG,
                       {"present": {"payments": present}}).find("rpo:financial")
    assert result.validity is Validity.VALID
    assert result.metrics["recovered_count"] == 1
    assert result.metrics["info_count"] == 2
    assert result.metrics["never_completed_count"] == 1
    assert result.metrics["unexpected_count"] == 0  # its invoke was logged: attempted


def test_never_read_is_unknown():
    fault_at = T0 + 30
    ops, _ = payment_writes(T0, fault_at)
    result = check_rpo(History.from_ops(ops + fault(fault_at)), CONFIG, None)
    assert result.validity is Validity.UNKNOWN
    assert "No final read" in result.find("rpo:financial").explanation[0]


def test_writes_acknowledged_after_the_fault_and_lost_are_split_brain():
    fault_at = T0 + 30
    ops, keys = payment_writes(T0, fault_at + 5.05)
    ops = [op for op in ops if not fault_at <= op["time_s"] < fault_at + 0.05]
    present = [k for k, t in keys if t < fault_at]
    result = check_rpo(History.from_ops(ops + fault(fault_at)), CONFIG,
                       {"present": {"payments": present}}).find("rpo:financial")
    assert result.validity is Validity.INVALID
    assert result.metrics["lost_after_fault_count"] == 50
    assert result.metrics["lost_count"] == 50
    assert result.metrics["data_loss_window_s"] == 0.0
    assert "split brain" in result.explanation[0]


def test_writes_acknowledged_while_the_fault_was_being_applied_are_ordinary_loss():
    fault_at = T0 + 30
    ops, keys = payment_writes(T0, fault_at)
    ops += write("payments", "run-p-in-flight", fault_at + 0.002)  # acked at +0.005, action ends at +0.01
    present = [k for k, t in keys if t < fault_at - 1]
    result = check_rpo(History.from_ops(ops + fault(fault_at, duration_s=0.01)), CONFIG,
                       {"present": {"payments": present}}).find("rpo:financial")
    assert result.metrics["lost_after_fault_count"] == 0
    assert result.metrics["lost_count"] == 11
    assert result.validity is Validity.VALID
    # a write acknowledged after the action completed is split brain
    late = ops + write("payments", "run-p-late", fault_at + 0.02)
    result = check_rpo(History.from_ops(late + fault(fault_at, duration_s=0.01)), CONFIG,
                       {"present": {"payments": present}}).find("rpo:financial")
    assert result.metrics["lost_after_fault_count"] == 1
    assert result.validity is Validity.INVALID


def test_thin_write_traffic_cannot_prove_the_rpo():
    fault_at = T0 + 1000
    ops = write("payments", "run-p-000001", T0)  # the only write, 1000 s before the fault
    result = check_rpo(History.from_ops(ops + fault(fault_at)), CONFIG,
                       {"present": {"payments": ["run-p-000001"]}}).find("rpo:financial")
    assert result.validity is Validity.UNKNOWN
    assert result.metrics["rpo_resolution_s"] == pytest.approx(1000 - 0.003)


def test_other_data_class_gathers_its_services():
    fault_at = T0 + 30
    ops = write("users", "run-u-1", T0 + 1) + write("analytics", "run-a-1", T0 + 2)
    ops += write("payments", "run-p-1", T0 + 3)
    result = check_rpo(History.from_ops(ops + fault(fault_at)), CONFIG,
                       {"present": {"users": ["run-u-1"], "payments": ["run-p-1"]}})
    other = result.find("rpo:other")
    assert other.metrics["lost_count"] == 1
    assert other.evidence["lost_keys"] == ["run-a-1"]
    assert result.find("rpo:financial").metrics["lost_count"] == 0


def test_key_ranges_compress_consecutive_numbers():
    keys = ["r-c1-000007", "r-c1-000008", "r-c1-000009", "r-c1-000011", "r-c2-000001", "odd"]
    assert key_ranges(keys) == ["odd", "r-c1-000007..000009", "r-c1-000011", "r-c2-000001"]
    assert key_ranges([f"k{i}" for i in range(0, 200, 2)], limit=3)[-1] == "... and 97 more ranges"


# ---------------------------------------------------------------- composition


def test_a_checker_that_raises_is_unknown_never_a_pass():
    def broken() -> CheckResult:
        raise ZeroDivisionError("boom")

    result = run_checker("rto", broken)
    assert result.validity is Validity.UNKNOWN
    assert "ZeroDivisionError" in result.evidence["error"]


def test_invalid_beats_unknown_beats_valid():
    assert merge_validity([Validity.VALID, Validity.UNKNOWN]) is Validity.UNKNOWN
    assert merge_validity([Validity.UNKNOWN, Validity.INVALID, Validity.VALID]) is Validity.INVALID
    assert merge_validity([Validity.VALID, Validity.VALID]) is Validity.VALID
    assert merge_validity([]) is Validity.UNKNOWN


def test_check_run_composes_and_round_trips():
    fault_at = T0 + 30
    ops = platform_reads(T0, T0 + 70, down=[(fault_at, fault_at + 3)])
    writes, keys = payment_writes(T0, T0 + 70)
    ops += writes + write("users", "run-u-1", T0 + 1) + write("analytics", "run-a-1", T0 + 2)
    present = {"payments": [k for k, _ in keys], "users": ["run-u-1"], "analytics": ["run-a-1"]}
    result = check_run(History.from_ops(ops + fault(fault_at)), CONFIG, {"present": present})
    assert result.validity is Validity.VALID, [r.summary() for r in result.children]
    assert CheckResult.from_dict(result.to_dict()).to_dict() == result.to_dict()
    assert result.find("availability:payments").metrics["ok_ratio_before_fault"] == 1.0


def test_unhealthy_before_the_fault_is_invalid():
    fault_at = T0 + 30
    ops = platform_reads(T0, T0 + 70, down=[(T0 + 5, T0 + 10)], services=["auth"]) + fault(fault_at)
    result = check_run(History.from_ops(ops), CONFIG, None).find("availability:auth")
    assert result.validity is Validity.INVALID
    assert "already unhealthy" in result.explanation[0]
