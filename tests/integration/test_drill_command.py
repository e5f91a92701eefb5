"""`drdrill drill` end to end: pytest-bdd + Locust + chaoslib + checkers, Allure results, verdict table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
CHECKOUT = ["--features", str(ROOT / "features"), "--experiments", str(ROOT / "experiments")]  # run from tmp


def test_drill_prints_verdicts_writes_allure_and_a_recheckable_run(tmp_path):
    runs, allure = tmp_path / "runs", tmp_path / "allure"
    result = subprocess.run(
        [sys.executable, "-m", "drdrill.cli", "drill", *CHECKOUT, "--runs-dir", str(runs), "--alluredir",
         str(allure), "-m", "groundtruth", "--report-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "traffic: flowing to every service" in out  # progress is visible
    assert "critical RTO (objective)" in out and "VALID" in out
    (run_dir,) = runs.iterdir()
    stored = json.loads((run_dir / "results.json").read_text())
    assert stored["validity"] == "valid"

    (allure_result,) = [json.loads(p.read_text()) for p in allure.glob("*-result.json")]
    assert allure_result["status"] == "passed"
    step_names = [step["name"] for step in allure_result["steps"]]
    assert any("the experiment" in name for name in step_names)
    attachments = {a["name"] for a in allure_result.get("attachments", [])}
    assert {"results.json", "journal.json", "verdicts", "timeline"} <= attachments
    assert (run_dir / "timeline.png").read_bytes().startswith(b"\x89PNG")
    assert "DR test report:" in out and (tmp_path / "report" / "dr-test-report.html").is_file()
    assert any(p["name"] == "run directory" and p.get("excluded") for p in allure_result["parameters"])

    recheck = subprocess.run([sys.executable, "-m", "drdrill.cli", "check", "--json", str(run_dir)],
                             capture_output=True, text=True, timeout=120)
    assert recheck.returncode == 0
    assert json.loads(recheck.stdout) == stored  # re-judging offline gives the same verdicts


def test_sigterm_to_the_drill_command_stops_the_session_cleanly(tmp_path):
    import signal
    import time

    from drdrill.history import read_ops

    runs = tmp_path / "runs"
    process = subprocess.Popen(
        [sys.executable, "-m", "drdrill.cli", "drill", *CHECKOUT, "--runs-dir", str(runs), "--alluredir",
         str(tmp_path / "allure"), "-m", "groundtruth", "--report-dir", str(tmp_path / "report")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while True:  # mid-experiment: the fault action has started
        histories = list(runs.glob("*/history.jsonl")) if runs.is_dir() else []
        if histories and any(op.get("f") == "start:lossy-failover" for op in read_ops(histories[0])):
            break
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the experiment never started"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, out[-3000:] + err[-3000:]
    assert "SIGTERM: stopping the drill" in err and "interrupted" in err
    (run_dir,) = runs.iterdir()
    assert json.loads((run_dir / "journal.json").read_text())["status"] == "interrupted"
    assert (run_dir / "results.json").is_file()  # the run directory is left analysable
    assert not list(run_dir.glob("*.tmp"))
