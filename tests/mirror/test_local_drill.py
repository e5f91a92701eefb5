"""`drdrill drill --suite nightly`: the nightly suite of Gherkin drills on the real mirror, end to end.

The README's "run a drill" command: pre-flight, every @nightly scenario (service, database, AZ and
region failover), the verdict table and exit code 0. It runs against the session's shared mirror
(conftest.py): the drill finds it healthy through ``$DRDRILL_MIRROR_STATE`` and attaches to it, so it
leaves it up; that a drill takes down the mirror it brought up itself is checked where the shared
mirror is taken down (test_topology.py::test_down_removes_everything_labelled).

The nightly's four runs are also where their faults are checked in depth (each fault is exercised
once, here, rather than again through the fault API): from each run's journal, history and final
read: what the fault hit, what the rollback had to do, and the lost writes judged twice, by the
checkers and directly as acknowledged − present.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drdrill.history import read_ops
from drdrill.mirror.plan import LABEL
from tests.mirror.shared import assert_restored, lost_directly

pytestmark = [pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]

FAILOVER_BOUND_S = 60.0  # Patroni 4's ttl is at least 20 s: failover takes ~22 s


def find(node, name):
    if node["name"] == name:
        return node
    return next((hit for child in node["children"] if (hit := find(child, name))), None)


def outputs(journal):
    return {r["activity"]["name"]: r.get("output") for r in journal["run"]}


def ok_ratio(ops: list[dict], service: str, start_s: float, end_s: float) -> tuple[float, int]:
    done = [
        op for op in ops
        if op.get("service") == service and op.get("type") in ("ok", "fail", "info")
        and start_s <= op.get("time_s", 0) < end_s and op.get("process", "").startswith("client")
    ]  # fmt: skip
    return (sum(op["type"] == "ok" for op in done) / len(done) if done else 0.0), len(done)


def payments_restarts(client, mirror_id: str) -> dict[str, int]:
    selector = {"label": [f"{LABEL}={mirror_id}", "drdrill.region=primary", "drdrill.service=payments"]}
    return {c.id: c.attrs["RestartCount"] for c in client.containers.list(filters=selector)}


@pytest.mark.timeout(1600)
def test_the_nightly_suite_runs_end_to_end_on_the_mirror(shared_mirror, mirror, docker_client, tmp_path):
    restarts_before = payments_restarts(docker_client, mirror.mirror_id)
    result = subprocess.run(
        [sys.executable, "-m", "drdrill.cli", "drill", "--suite", "nightly",
         "--features", str(ROOT / "features"), "--experiments", str(ROOT / "experiments"),
         "--runs-dir", str(tmp_path / "runs"), "--alluredir", str(tmp_path / "allure"),
         "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=1500, cwd=tmp_path,
        env={**os.environ, "DRDRILL_MIRROR_STATE": str(shared_mirror.path)})
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-3000:]
    assert "pre-flight passed: 4 scenario(s)" in out
    assert "4 scenario(s) in" in out and ": VALID." in out
    runs = {json.loads((d / "drill.json").read_text())["scenario"]: d
            for d in (tmp_path / "runs").iterdir()}
    assert len(runs) == 4

    by_experiment = {json.loads((d / "drill.json").read_text())["experiment"]["name"]: d
                     for d in runs.values()}
    assert set(by_experiment) == {"service-failure", "database-leader-crash", "az-power-loss",
                                  "cross-region-failover"}
    journals = {name: json.loads((d / "journal.json").read_text()) for name, d in by_experiment.items()}
    for name, run_dir in by_experiment.items():
        results = json.loads((run_dir / "results.json").read_text())
        assert results["validity"] == "valid", name
        assert find(results, "rpo:financial")["metrics"]["lost_after_fault_count"] == 0, name
        # lost writes judged twice: by the checkers and directly as acknowledged − present
        lost = lost_directly(run_dir)
        assert sum(find(results, f"rpo:{c}")["metrics"]["lost_count"]
                   for c in ("financial", "other")) == len(lost), name
        assert journals[name]["rollbacks"][0]["status"] == "succeeded", name
    database = json.loads((by_experiment["database-leader-crash"] / "results.json").read_text())
    assert 5 < find(database, "rto-tier:critical")["metrics"]["measured_rto_s"] < 90
    failover = json.loads((by_experiment["cross-region-failover"] / "results.json").read_text())
    steps = [s["step"] for s in find(failover, "runbook")["evidence"]["steps"]]
    assert steps == ["detect", "declare", "scale-up", "promote", "dns", "deploy", "validate", "notify"]
    assert find(failover, "served-by:dr")["validity"] == "valid"
    report = (tmp_path / "report" / "dr-test-report.md").read_text()
    assert "**VALID** — 4 scenario(s)" in report and report.count("![timeline") == 4
    # the nightly's Allure report: one offline file, every scenario with its epic and evidence
    from drdrill.report.allure_html import embedded_files, external_urls

    page = (tmp_path / "report" / "allure-report.html").read_text()
    assert external_urls(page) == []
    cases = [json.loads(v) for k, v in embedded_files(page).items() if k.startswith("data/test-cases/")]
    assert sorted(c["status"] for c in cases) == ["passed"] * 4
    epics = {label["value"] for c in cases for label in c["labels"] if label["name"] == "epic"}
    assert epics == {"Service failure", "Database failure", "Availability-zone failure", "Region failure"}
    failover_case = next(c for c in cases if "cross-region" in json.dumps(c["testStage"]["steps"]))
    attachments = {a["name"] for a in failover_case["testStage"]["attachments"]}
    assert {"timeline", "RTO", "RPO", "runbook steps", "journal.json"} <= attachments
    environment = {e["name"] for e in json.loads(embedded_files(page)["widgets/environment.json"])}
    assert {"target", "topology", "version.patroni", "drdrill.git_revision"} <= environment
    # the drill found the session's mirror healthy and attached to it, so it left it up (healthy)
    assert f"mirror {mirror.mirror_id} is up; attaching to it" in out + result.stderr
    assert shared_mirror.path.exists()

    # --- the leader crash (a kill of the Patroni leader; synchronous replication)
    crash = journals["database-leader-crash"]
    fault = crash["run"][0]["output"]
    assert [c["role"] for c in fault["containers"]] == ["postgres"]
    assert [c["key"] for c in fault["containers"]] == ["primary/pg-a"]  # the leader was hit
    # Patroni promoted the synchronous standby, so the rollback switched the leader back to pg-a,
    # which it does only once the old leader has rejoined as a streaming synchronous standby
    assert "leader-back" in crash["rollbacks"][0]["output"]["layout"]["steps"]
    assert lost_directly(by_experiment["database-leader-crash"]) == set()
    assert find(database, "rpo:financial")["metrics"]["lost_count"] == 0
    assert find(database, "rpo:other")["metrics"]["lost_count"] == 0
    ops = list(read_ops(by_experiment["database-leader-crash"] / "history.jsonl"))
    served_s = crash["run"][1]["end"]  # the wait until every service was served again
    assert any(op.get("f") == "payments.create" and op.get("type") == "ok"
               and op["time_s"] >= _epoch(served_s) for op in ops)  # fmt: skip

    # --- the AZ power loss (every container of the leader's AZ crashed)
    az = journals["az-power-loss"]
    fault = az["run"][0]["output"]
    roles = sorted({c["role"] for c in fault["containers"]})
    assert "postgres" in roles and "etcd" in roles and "alb" not in roles
    assert {c["az"] for c in fault["containers"]} == {"a"}
    assert "primary/pg-a" in [c["key"] for c in fault["containers"]]  # the leader's AZ
    waited = az["run"][1]
    assert waited["output"]["served"] is True
    ops = list(read_ops(by_experiment["az-power-loss"] / "history.jsonl"))
    end_s = _epoch(waited["end"])  # payments served through the ALB over the last 10 s of the wait
    ratio, n = ok_ratio(ops, "payments", end_s - 10, end_s)
    print(f"\n[figure] AZ a lost: payments ok-ratio {ratio:.2f} over the wait's last 10 s ({n} ops)")
    assert ratio >= 0.9 and n >= 10
    az_results = json.loads((by_experiment["az-power-loss"] / "results.json").read_text())
    assert lost_directly(by_experiment["az-power-loss"]) == set()
    critical = find(az_results, "rto-tier:critical")
    assert critical["validity"] == "valid"
    assert critical["metrics"]["measured_rto_s"] < FAILOVER_BOUND_S

    # --- the region loss and the failover runbook
    fault = journals["cross-region-failover"]["run"][0]["output"]
    assert {c["region"] for c in fault["containers"]} == {"primary"}
    assert not any(c["role"] == "dns" for c in fault["containers"])
    ops = list(read_ops(by_experiment["cross-region-failover"] / "history.jsonl"))
    assert any(op.get("region") == "dr" and op.get("type") == "ok" and op.get("f") == "payments.create"
               for op in ops)  # fmt: skip
    crossed = outputs(journals["cross-region-failover"])
    assert crossed["validate-dr-critical-path"]["result"]["passed"] is True
    assert {c["region"] for c in crossed["validate-dr-critical-path"]["result"]["checks"]} == {"dr"}
    assert find(failover, "runbook")["validity"] == "valid"
    critical = find(failover, "rto-tier:critical")
    assert critical["validity"] == "valid" and critical["metrics"]["measured_rto_s"] < 300
    assert find(failover, "rpo")["validity"] == "valid"
    # the rollback failed back automatically, outside the judged window
    restore = journals["cross-region-failover"]["rollbacks"][0]["output"]
    assert restore["layout"]["steps"][:3] == ["rebuild", "maintenance", "switchover"]
    for data_class in ("financial", "other"):
        child = find(failover, f"rpo:{data_class}")
        assert child["metrics"]["lost_after_fault_count"] == 0, data_class
        assert child["metrics"]["unexpected_count"] == 0, data_class

    # --- the service failure: the orchestrator's restart policy brought every crashed replica back
    service = journals["service-failure"]
    crashed = [c["id"] for c in service["run"][0]["output"]["containers"]]
    assert outputs(service)["wait-until-every-service-is-served"]["served"] is True
    service_results = json.loads((by_experiment["service-failure"] / "results.json").read_text())
    rto = find(service_results, "rto:payments")
    assert rto["validity"] == "valid" and rto["metrics"]["measured_rto_s"] < 30
    assert find(service_results, "rpo:financial")["metrics"]["lost_count"] == 0
    restarts_after = payments_restarts(docker_client, mirror.mirror_id)
    assert restarts_after.keys() == restarts_before.keys()  # the same containers
    assert sorted(crashed) == sorted(restarts_before)  # every replica was crashed
    expected = _expected_restarts(restarts_before, journals)
    assert restarts_after == expected, (restarts_before, restarts_after)
    assert_restored(shared_mirror.path)  # every rollback left the mirror in its layout


def _epoch(value) -> float:
    """A journal timestamp (ISO 8601 as chaoslib writes it, UTC when naive) in epoch seconds."""
    from datetime import UTC, datetime

    if isinstance(value, int | float):
        return float(value)
    moment = datetime.fromisoformat(value)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _expected_restarts(before: dict[str, int], journals: dict[str, dict]) -> dict[str, int]:
    """Docker's restart count of each primary payments replica after the nightly, in the order the
    faults happened: a process crash (service-failure) is one restart by the restart policy; a
    power loss undone by ``docker start`` resets the count to 0."""
    counts = dict(before)
    events = []
    for name, journal in journals.items():
        fault = journal["run"][0]["output"]
        events.append((fault["started_s"], name, [c["id"] for c in fault["containers"]]))
    for _, name, ids in sorted(events):
        for cid in ids:
            if cid not in counts:
                continue
            if name == "service-failure":
                counts[cid] += 1
            elif name == "az-power-loss":
                counts[cid] = 0
    return counts
