"""drdrill's public names: the package's ``__all__`` is pinned, the exception tree lives in one module,
and the exit codes said by the README and ``--help`` are the ones :mod:`drdrill.exitcodes` defines."""

from __future__ import annotations

import re
from pathlib import Path

import drdrill
from drdrill import errors
from drdrill.exitcodes import DRILL_EPILOG, ExitCode

ROOT = Path(__file__).resolve().parents[2]


def test_the_public_names_are_pinned():
    assert drdrill.__all__ == [
        "ConfigError", "DataLost", "DrdrillError", "ExperimentError", "GuardrailError", "HistoryError",
        "Indeterminate", "ObjectiveMissed", "RunbookError", "TargetError", "TrafficError", "WaitTimeout",
        "__version__",
    ]
    assert all(hasattr(drdrill, name) for name in drdrill.__all__)


def test_every_exception_is_in_the_tree_of_drdrill_errors_and_its_docstring():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert cls.__module__ == "drdrill.errors" and getattr(drdrill, name) is cls
        assert re.search(rf"^[ │├└─]*{name}\b", errors.__doc__, re.M), f"{name} is not in the tree drawn in errors.py"
    # the verdicts keep their bases: failed (AssertionError) vs broken in pytest and Allure
    assert issubclass(errors.DataLost, AssertionError) and issubclass(errors.ObjectiveMissed, AssertionError)
    assert not issubclass(errors.Indeterminate, (AssertionError, errors.DrdrillError))
    from drdrill import pytest_plugin

    assert pytest_plugin.DataLost is errors.DataLost  # raised by require(), found there too


def test_the_readme_and_help_list_the_exit_codes_that_exist():
    readme = (ROOT / "README.md").read_text()
    said = re.search(r"Exit codes: (.+?)\n\n", readme, re.S).group(1)
    assert [int(n) for n in re.findall(r"\*\*(\d+)\*\*", said)] == [int(c) for c in ExitCode]
    assert [int(n) for n in re.findall(r"(\d+) [a-z]", DRILL_EPILOG)] == [int(c) for c in ExitCode]
