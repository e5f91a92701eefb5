"""End to end: a Gherkin drill against the ground-truth service measures what really happened."""

from __future__ import annotations

import numpy as np
import pytest
from pytest_bdd import scenario

from drdrill.catalog import SERVICES
from drdrill.checkers.rto import fault_applied_s, fault_start_s
from drdrill.history import OK

pytestmark = [pytest.mark.integration]


@scenario("../../features/ground_truth/lossy_failover.feature", "A lossy failover is measured to the tenth of a second")
def test_lossy_failover_is_measured_exactly(drill, drdrill_target):
    """After the Gherkin steps passed: compare the measurements with the service's own record."""
    truth = drdrill_target.truth()
    history = drill.history()
    result = drill.run.check(history)
    fault_s = fault_start_s(history)
    (outage,) = truth["outages"]
    (failover,) = truth["failovers"]

    # RTO: users were refused from the outage start to its end; recovery = first success after it.
    for service in SERVICES:
        measured = result.find(f"rto:{service}").metrics["measured_rto_s"]
        assert measured == pytest.approx(outage["end_s"] - fault_s, abs=0.1), service

    # RPO: exactly the acknowledged writes among those the failover dropped are reported lost.
    keys = history.key_strings(history.key_id)
    acked = {key for key, row in zip(keys, history.key_row, strict=True) if history.type[row] == OK}
    truly_lost_and_acked = {lost["key"] for lost in failover["lost"]} & acked
    assert truly_lost_and_acked, "the failover should have dropped some acknowledged writes"
    reported = (result.find("rpo:financial").metrics["lost_count"]
                + result.find("rpo:other").metrics["lost_count"])
    assert reported == len(truly_lost_and_acked)
    # The loss window reaches back to the first lost acknowledged payment: exactly that, from truth.
    lost_payments = {lost["key"] for lost in failover["lost"] if lost["service"] == "payments"} & acked
    ack_s = {key: float(history.end_s[row])
             for key, row in zip(keys, history.key_row, strict=True) if history.type[row] == OK}
    window = result.find("rpo:financial").metrics["data_loss_window_s"]
    # counted back from the moment of loss: t_fault, or a lost write acknowledged while the fault was
    # still being applied (a write in flight across it)
    applied_s = fault_applied_s(history)
    loss_point_s = max([fault_s] + [ack_s[k] for k in lost_payments if ack_s[k] <= applied_s])
    assert window == pytest.approx(loss_point_s - min(ack_s[k] for k in lost_payments), abs=1e-6)
    # ... which is the replication lag the failover lost, less the gap before the next write
    # (about 10 payment writes per second here; bench/rpo_exactness.py measures it at high rates).
    assert failover["lose_last_s"] - 0.6 < window <= failover["lose_last_s"] + 0.05
    assert result.find("rpo:financial").metrics["unexpected_count"] == 0
    assert np.isfinite(fault_s)
