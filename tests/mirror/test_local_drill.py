"""`drdrill drill --suite nightly`: the nightly suite of Gherkin drills on the real mirror, end to end.

The README's "run a drill" command: pre-flight, mirror up, every @nightly scenario (service,
database, AZ and region failover), mirror down, the verdict table and exit code 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker]
ROOT = Path(__file__).resolve().parents[2]


def test_the_nightly_suite_runs_end_to_end_on_the_mirror(tmp_path):
    state = tmp_path / "state.json"
    result = subprocess.run(
        [sys.executable, "-m", "drdrill.cli", "drill", "--suite", "nightly",
         "--features", str(ROOT / "features"), "--experiments", str(ROOT / "experiments"),
         "--runs-dir", str(tmp_path / "runs"), "--alluredir", str(tmp_path / "allure"),
         "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=1500, cwd=tmp_path,
        env={**os.environ, "DRDRILL_MIRROR_STATE": str(state)})
    out = result.stdout
    assert result.returncode == 0, out[-6000:] + result.stderr[-3000:]
    assert "pre-flight passed: 4 scenario(s)" in out
    assert "4 scenario(s) in" in out and ": VALID." in out
    runs = {json.loads((d / "drill.json").read_text())["scenario"]: d
            for d in (tmp_path / "runs").iterdir()}
    assert len(runs) == 4

    def find(node, name):
        if node["name"] == name:
            return node
        return next((hit for child in node["children"] if (hit := find(child, name))), None)

    by_experiment = {json.loads((d / "drill.json").read_text())["experiment"]["name"]: d
                     for d in runs.values()}
    assert set(by_experiment) == {"service-failure", "database-leader-crash", "az-power-loss",
                                  "cross-region-failover"}
    for name, run_dir in by_experiment.items():
        results = json.loads((run_dir / "results.json").read_text())
        assert results["validity"] == "valid", name
        assert find(results, "rpo:financial")["metrics"]["lost_after_fault_count"] == 0, name
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
    failover = next(c for c in cases if "cross-region" in json.dumps(c["testStage"]["steps"]))
    attachments = {a["name"] for a in failover["testStage"]["attachments"]}
    assert {"timeline", "RTO", "RPO", "runbook steps", "journal.json"} <= attachments
    environment = {e["name"] for e in json.loads(embedded_files(page)["widgets/environment.json"])}
    assert {"target", "topology", "version.patroni", "drdrill.git_revision"} <= environment
    # the drill brought the mirror up, so it took it down (down removes the state file)
    assert not state.exists()
