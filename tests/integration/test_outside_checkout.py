"""A project of one's own, outside this checkout: ``drdrill validate`` and ``drdrill drill`` find the
features, the experiments and the reports folder from the current directory (or ``--features`` /
``--experiments``), and the step library and the synthetic users from the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path):
    """features/ (the ground-truth drill) and experiments/ copied into a directory of its own."""
    own = tmp_path / "my-drills"
    shutil.copytree(ROOT / "features" / "ground_truth", own / "features" / "ground_truth")
    (own / "experiments").mkdir()
    shutil.copy(ROOT / "experiments" / "ground-truth-lossy-failover.json", own / "experiments")
    return own


def drdrill(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drdrill.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd, env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip


def test_validate_and_a_drill_run_against_a_project_outside_the_checkout(project, tmp_path):
    checked = drdrill("validate", cwd=project)  # features/ of the current directory
    assert checked.returncode == 0, checked.stderr
    assert "1 feature file(s) valid" in checked.stdout
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    explicit = drdrill("validate", "--features", str(project / "features"), "--experiments",
                       str(project / "experiments"), cwd=elsewhere)  # fmt: skip
    assert explicit.returncode == 0, explicit.stderr
    (project / "experiments" / "ground-truth-lossy-failover.json").rename(project / "moved.json")
    missing = drdrill("validate", cwd=project / "features")  # a subdirectory: the project is found above
    assert missing.returncode == 3 and "unknown experiment 'ground-truth-lossy-failover'" in missing.stderr
    (project / "moved.json").rename(project / "experiments" / "ground-truth-lossy-failover.json")

    drilled = drdrill("drill", "--target", "groundtruth", "-k", "lossy", cwd=project)
    # a verdict was reached (0 valid, 1 invalid); whether this scenario's verdict is right is
    # tests/integration/test_ground_truth_drill.py's to pin (its exactness against the truth)
    assert drilled.returncode in (0, 1), drilled.stdout[-3000:] + drilled.stderr[-3000:]
    assert f"under {project / 'features'} against the groundtruth target" in drilled.stdout
    (run_dir,) = (project / "reports" / "runs").iterdir()  # reports/ of the project, not the checkout's
    validity = json.loads((run_dir / "results.json").read_text())["validity"]
    assert validity == ("valid" if drilled.returncode == 0 else "invalid")
    rechecked = drdrill("check", str(run_dir), cwd=elsewhere)  # re-judged offline, from anywhere
    assert rechecked.returncode == drilled.returncode and validity.upper() in rechecked.stdout
    assert (project / "reports" / "dr-report" / "dr-test-report.html").is_file()
    assert list((project / "reports" / "allure-results").glob("*-result.json"))
    assert sorted(p.name for p in project.iterdir()) == ["experiments", "features", "reports"]
