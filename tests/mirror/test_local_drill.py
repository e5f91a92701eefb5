"""`drdrill drill --target local`: a Gherkin drill on the real Docker mirror, mirror up and down included."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.docker]


def test_database_failure_drill_on_the_mirror(tmp_path):
    state = tmp_path / "state.json"
    result = subprocess.run(
        [sys.executable, "-m", "drdrill.cli", "drill", "--target", "local", "--runs-dir", str(tmp_path / "runs"),
         "--alluredir", str(tmp_path / "allure"), "-m", "mirror"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
        env={**os.environ, "DRDRILL_MIRROR_STATE": str(state)})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = json.loads((run_dir / "results.json").read_text())

    def find(node, name):
        if node["name"] == name:
            return node
        return next((hit for child in node["children"] if (hit := find(child, name))), None)

    critical = find(results, "rto-tier:critical")["metrics"]["measured_rto_s"]
    assert 5 < critical < 60  # a real Patroni failover (ttl ≥ 20 s), not a restart of the old leader
    assert find(results, "rpo:financial")["metrics"]["lost_count"] == 0
    assert find(results, "rpo:financial")["metrics"]["acknowledged_count"] > 100
    journal = json.loads((run_dir / "journal.json").read_text())
    assert [r["activity"]["name"] for r in journal["rollbacks"]] == ["restart-crashed-containers"]
    # the drill brought the mirror up, so it took it down (down removes the state file)
    assert not state.exists()
