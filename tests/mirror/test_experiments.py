"""The DR plan's experiments the nightly suite does not run, on the real mirror, with real traffic.

The nightly drill (test_local_drill.py) runs service-failure, database-leader-crash, az-power-loss
and cross-region-failover end to end and checks them in depth; this module runs every other shipped
experiment once: database-leader-hang, az-isolation, region-isolation, region-power-loss and failback
(with the disaster declared by hand), and interrupts a cross-region failover with SIGTERM.

On the session's shared mirror (``-m docker``, conftest.py), healthy before each test. Each test runs one shipped experiment
through :class:`drdrill.drill.Drill` (Locust users through the global entry, chaoslib with
rollbacks always, the final read, the checkers), then checks the expected effect (self-healing,
failover, DR serving, failback) and that the rollback left the mirror healthy in its own layout.
The last interrupts a failover with SIGTERM mid-runbook.

Figures (``[figure]`` lines) are printed for the closing note: measured RTO per tier, lost writes
and the data-loss window per data class, and the runbook's step durations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from drdrill.checkers import Validity
from drdrill.config import default_config
from drdrill.drill import Drill
from drdrill.history import read_ops
from drdrill.mirror import patroni
from drdrill.mirror.state import load_state
from drdrill.run import RunDir
from drdrill.targets.local import LocalTarget
from tests.mirror.shared import (
    assert_restored,
    loss_two_ways,
    lost_directly,
    payments_on_every_member,
)

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
USERS, RATE = 5, 4.0  # one user per service class, 4 requests/s each (2 cores run all of it)
CONFIG = default_config()
PRODUCTION_PAYMENTS_PER_S = 150  # the issue asks >= 100/s; 150/s makes a loss over a 70 ms WAN near certain


@pytest.fixture
def state_file(shared_mirror, mirror):
    """The session's shared mirror (conftest.py), healthy and in its layout."""
    return shared_mirror.path


@pytest.fixture
def target(state_file):
    target = LocalTarget(keep=True, state_file=str(state_file)).start()
    assert not target._started_here, "the session's mirror was not healthy before the test"
    return target


def run_drill(target, tmp_path, experiment, configuration=None, during=None, payments_per_s=None):
    """One drill: traffic, the experiment, recovery, final read; the run's results and journal."""
    run = RunDir.create(tmp_path / "runs", experiment, CONFIG, target="local")
    drill = Drill(target, CONFIG, run, [ROOT / "experiments"])
    try:
        drill.start_traffic(USERS, RATE, payments_per_s=payments_per_s)
        worker = threading.Thread(target=during, args=(run,), daemon=True) if during else None
        if worker:
            worker.start()
        journal = drill.run_experiment(experiment, configuration)
        if worker:
            worker.join(30)
        drill.wait_recovered(timeout_s=180)
    finally:
        result = drill.close()
    assert result is not None
    figures(experiment, result)
    return result, journal


def figures(name, result):
    def line(r):
        return f"{r.name} {r.validity.value}: " + ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in r.metrics.items() if k in ("measured_rto_s", "lost_count",
                                                   "acknowledged_count", "data_loss_window_s",
                                                   "lost_after_fault_count", "maintenance_s"))

    print(f"\n[figure] {name}")
    for key in ("rto-tier:critical", "rto-tier:non-critical", "rpo:financial", "rpo:other"):
        print(f"    {line(result.find(key))}")
    names = _names(result)
    if "rto-failback-tier:critical" in names:
        print(f"    {line(result.find('rto-failback-tier:critical'))}")
    if "runbook" in names:
        steps = result.find("runbook").evidence["steps"]
        print("    runbook: " + ", ".join(
            f"{s['step']} {s['duration_s']:.2f} s" + (f" ({s['operator_s']:.1f} s operator)"
                                                     if s["mode"] == "manual" else "")
            for s in steps))


def _names(result):
    return {result.name} | {n for child in result.children for n in _names(child)}


def lost(result, data_class):
    return result.find(f"rpo:{data_class}").metrics["lost_count"]


def outputs(journal):
    return {r["activity"]["name"]: r.get("output") for r in journal["run"]}


# --------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("experiment", ["database-leader-hang", "az-isolation"])
def test_database_and_az_failures_fail_over_within_the_region(target, state_file, tmp_path, experiment):
    assert patroni.leader(target.state, "primary") == "primary-pg-a"
    result, journal = run_drill(target, tmp_path, experiment)
    fault = journal["run"][0]["output"]
    assert "primary/pg-a" in [c["key"] for c in fault["containers"]]  # the leader was hit
    waited = next(o for name, o in outputs(journal).items() if name.startswith("wait-until"))
    assert waited["served"] is True
    # Patroni promoted the synchronous standby (so the rollback had to switch the leader back)
    assert "leader-back" in journal["rollbacks"][0]["output"]["layout"]["steps"]
    critical = result.find("rto-tier:critical")
    assert critical.validity is Validity.VALID
    assert 1 < critical.metrics["measured_rto_s"] < 90  # a real failover (Patroni ttl ≥ 20 s)
    assert lost(result, "financial") == 0 and lost(result, "other") == 0
    assert lost_directly(journal_path(tmp_path).parent) == set()  # acknowledged − present, too
    assert result.find("rpo").validity is Validity.VALID
    # AZ loss: storefront and analytics run one replica, in AZ a: down until the AZ returns,
    # which the non-critical RTO shows (still far within its 4 h objective)
    assert result.find("rto-tier:non-critical").validity is Validity.VALID
    assert_restored(state_file)


@pytest.mark.parametrize("experiment", ["region-isolation", "region-power-loss"])
def test_a_region_failure_without_the_runbook_is_down_until_the_region_returns(
        target, state_file, tmp_path, experiment):
    outage_s = 20
    result, journal = run_drill(target, tmp_path, experiment, {"outage_s": outage_s})
    critical = result.find("rto-tier:critical")
    # nobody failed over: users were down at least as long as the region was gone
    assert critical.metrics["measured_rto_s"] >= outage_s
    assert critical.validity is Validity.VALID  # the plan's 1 h objective is far away
    assert lost(result, "financial") == 0  # synchronous replication: the region came back whole
    assert journal["rollbacks"][0]["status"] == "succeeded"
    assert_restored(state_file)


@pytest.mark.timeout(600)
def test_failover_then_failback_returns_to_the_primary_region(target, state_file, tmp_path):
    """The failover and failback runbook, with the disaster declared by hand by the incident
    commander (from "another terminal": ``drdrill runbook done declare``), at a production write
    rate over the mirror's 70 ms WAN: the region loss loses the payments still in flight to DR."""
    runbook_dir = tmp_path / "runbook"

    def incident_commander(run):
        # waits for the harness to announce the declaration, then confirms it from "another terminal"
        deadline = time.monotonic() + 120
        while not (runbook_dir / "pending.json").is_file():
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)
        time.sleep(3)
        subprocess.run([sys.executable, "-m", "drdrill.cli", "runbook", "done", "declare",
                        "--dir", str(runbook_dir)], check=True, timeout=60)

    result, journal = run_drill(target, tmp_path, "failback",
                                {"runbook_manual": "declare", "runbook_dir": str(runbook_dir)},
                                during=incident_commander, payments_per_s=PRODUCTION_PAYMENTS_PER_S)
    out = outputs(journal)
    declared = out["declare-disaster"]
    assert declared["mode"] == "manual" and declared["operator_s"] >= 3
    assert result.find("runbook").validity is Validity.VALID
    assert result.find("runbook").metrics["operator_s"] >= 3
    # the region loss: every container of the primary region cut off, the global DNS untouched
    fault = journal["run"][0]["output"]
    assert {c["region"] for c in fault["containers"]} == {"primary"}
    assert not any(c["role"] == "dns" for c in fault["containers"])
    # the failover operations: DR promoted (writable), scaled to the primary's size, DNS to DR
    assert out["promote-dr-database"]["result"]["writable_after_s"] >= 0
    assert out["scale-up-dr-region"]["result"] == {
        s: v["replicas"] for s, v in load_state(state_file).regions["primary"]["services"].items()}
    assert out["switch-dns-to-dr"]["result"] == {"primary": 0, "dr": 100}
    # the failback operations: the old primary rebuilt as a standby cluster of DR, caught up
    rebuilt = out["rebuild-primary-as-replica"]["result"]
    assert (rebuilt["region"], rebuilt["upstream"]) == ("primary", "dr")
    caught_up = out["wait-primary-caught-up"]["result"]
    assert caught_up["upstream"] == "dr" and caught_up["state"].startswith("streaming")
    # data lost at the region loss (the replication lag), judged twice: by the checker and directly
    direct = lost_directly(journal_path(tmp_path).parent)
    assert lost(result, "financial") + lost(result, "other") == len(direct)
    # ... and in the database itself: every member of the rebuilt primary region holds each
    # acknowledged payment the final read found (writes made in DR came back), and no lost one
    run_dir = journal_path(tmp_path).parent
    acked = {op["key"] for op in read_ops(run_dir / "history.jsonl")
             if op.get("type") == "ok" and op.get("service") == "payments" and op.get("key")}  # fmt: skip
    lost_payments = acked & direct
    # at a production rate over the WAN the DR replica lagged: payments were lost, the checker lists
    # them (by key range), and the database's own replication position tells the same loss window
    financial = result.find("rpo:financial")
    assert financial.metrics["lost_count"] == len(lost_payments) > 0, financial.explanation
    assert financial.evidence["lost_keys"]
    users_s, db_s, agree = loss_two_ways(result)
    print(f"[figure] region loss at {PRODUCTION_PAYMENTS_PER_S}/s: {len(lost_payments)} payments lost, "
          f"users' window {users_s:.3f} s, database's {db_s:.3f} s, "
          f"difference {financial.metrics['db_difference_s']:+.3f} s (tolerance {financial.metrics['tolerance_s']:.3f} s)")
    assert agree, financial.explanation
    assert 0 < users_s < 5 and 0 < db_s < 5
    restored = load_state(state_file)
    on_members = payments_on_every_member(restored, "primary", acked)
    assert len(on_members) == len(restored.patroni("primary"))
    for member, keys in on_members.items():
        assert keys == acked - lost_payments, (member, sorted(acked - lost_payments - keys)[:5])
    # ... and the DR database (a standby again) holds none of the lost payments either, by key
    on_dr = payments_on_every_member(restored, "dr", lost_payments)
    assert on_dr and all(keys == set() for keys in on_dr.values()), on_dr
    assert {c["region"] for c in out["validate-dr-critical-path"]["result"]["checks"]} == {"dr"}
    assert {c["region"] for c in out["validate-primary-critical-path"]["result"]["checks"]} == {"primary"}
    steps = [s["step"] for s in result.find("runbook").evidence["steps"]]
    assert steps[8:] == ["rebuild", "catch-up", "maintenance", "switchover", "dns-back", "validate",
                         "notify", "scale-down"]
    failback = result.find("rto-failback-tier:critical")
    assert failback.validity is Validity.VALID and failback.metrics["measured_rto_s"] < 120
    assert result.find("rto-tier:critical").validity is Validity.VALID
    assert result.find("rpo").validity is Validity.VALID
    for data_class in ("financial", "other"):
        assert result.find(f"rpo:{data_class}").metrics["lost_after_fault_count"] == 0
    # what the DR plan's failback guarantees (§7: data replicated back, DNS reversed) the runbook
    # did: nothing of it was left to the rollback. Which AZ of the primary region leads is Patroni's
    # choice when the rebuilt region's standby leader is elected (on a busy machine not always AZ a);
    # putting it back in AZ a is the rollback's (assert_restored checks it).
    assert set(journal["rollbacks"][0]["output"]["layout"]["steps"]) <= {"leader-back"}
    assert_restored(state_file)


INTERRUPTED_FAILOVER = """
import sys
from pathlib import Path
from drdrill.chaos.runner import find_experiment, load_experiment, run_experiment
from drdrill.history import HistoryWriter
tmp, state = Path(sys.argv[1]), sys.argv[2]
experiment = load_experiment(find_experiment("cross-region-failover", ["experiments"]))
with HistoryWriter(tmp / "history.jsonl") as writer:
    run_experiment(experiment, writer, tmp / "journal.json", configuration={"mirror_state": state})
"""


@pytest.mark.timeout(600)
def test_sigterm_mid_failover_rolls_back_to_a_healthy_mirror(target, state_file, tmp_path):
    process = subprocess.Popen([sys.executable, "-c", INTERRUPTED_FAILOVER, str(tmp_path),
                                str(state_file)], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ})
    history = tmp_path / "history.jsonl"
    deadline = time.monotonic() + 120
    # the worst moment: DR promoted and DNS switched, the deploy running
    while not any(op.get("f") == "start:deploy-services-to-dr"
                  for op in (read_ops(history) if history.exists() else [])):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the runbook never reached the deploy"
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode != 0
    assert "KeyboardInterrupt" in stderr
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "interrupted"
    assert [r["activity"]["name"] for r in journal["rollbacks"]] == ["restore-mirror"]
    assert journal["rollbacks"][0]["status"] == "succeeded"
    names = [r["activity"]["name"] for r in journal["run"]]
    assert "validate-dr-critical-path" not in names  # the method stopped at the signal
    assert_restored(state_file)


def journal_path(tmp_path):
    (run,) = (tmp_path / "runs").iterdir()
    return run / "journal.json"
