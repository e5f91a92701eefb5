"""`drdrill validate`: it collects the features in pytest subprocesses, so it is an integration test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def test_validate_points_at_the_file_and_line_of_a_problem(tmp_path):
    feature = tmp_path / "draft.feature"
    feature.write_text("@mirror\nFeature: draft\n  Scenario: typo\n"
                       "    Given the platform under test is healthy\n"
                       '    When the experiment "database-leader-crush" runs\n'
                       "    Then the platform flies\n")
    result = subprocess.run([sys.executable, "-m", "drdrill.cli", "validate", str(feature)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 3
    assert f"{feature}:5: unknown experiment 'database-leader-crush'" in result.stderr
    assert f"{feature}:6: undefined step: Then the platform flies" in result.stderr
    shipped = subprocess.run([sys.executable, "-m", "drdrill.cli", "validate"],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert shipped.returncode == 0, shipped.stderr
    assert "valid: every step defined, every experiment valid" in shipped.stdout
