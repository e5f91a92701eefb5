"""Where drdrill reads and writes: resolved from the current directory, never from where it is installed.

The **project directory** is the nearest of the current directory and its parents that holds a
``features/`` directory, else the current directory. Its defaults (each command's ``--help`` names
them; every one can be given explicitly):

``features/``                      the Gherkin drills (``drdrill drill``, ``drdrill validate``)
``experiments/``                   the Chaos Toolkit experiments (a target's own ``<target>/`` first)
``reports/runs/``                  one run directory per scenario
``reports/allure-results/``        the Allure results of the last drill
``reports/dr-report/``             the DR test report and the Allure HTML

So from a checkout (or any directory in it) a drill uses the checkout's folders, and a ``pip install
drdrill`` user runs ``drdrill drill --features DIR --experiments DIR`` against their own. What ships
inside the package is found through the package itself: the step library (:mod:`drdrill.steps`),
the synthetic users (:data:`LOCUSTFILE`, runnable with plain ``locust -f``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOCUSTFILE", "Settings", "allure_tool_dir", "project_dir", "settings"]

LOCUSTFILE = Path(__file__).resolve().parent / "traffic" / "locustfile.py"
PROJECT_MARKER = "features"


def project_dir(cwd: Path | None = None) -> Path:
    """The nearest of ``cwd`` (default: the current directory) and its parents holding ``features/``;
    else ``cwd`` itself."""
    start = (cwd or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        if (directory / PROJECT_MARKER).is_dir():
            return directory
    return start


@dataclass(frozen=True)
class Settings:
    """The project directory and the default folders under it (see the module docstring)."""

    project: Path

    @property
    def features(self) -> Path:
        return self.project / "features"

    @property
    def experiments(self) -> Path:
        return self.project / "experiments"

    @property
    def reports(self) -> Path:
        return self.project / "reports"

    @property
    def runs(self) -> Path:
        return self.reports / "runs"

    @property
    def alluredir(self) -> Path:
        return self.reports / "allure-results"

    @property
    def report_dir(self) -> Path:
        return self.reports / "dr-report"


def settings(cwd: Path | None = None) -> Settings:
    """The settings of the project the current directory (or ``cwd``) is in."""
    return Settings(project_dir(cwd))


def allure_tool_dir() -> Path:
    """Where Allure 3 (npm) is installed on first use: ``allure-npm/`` in the virtualenv drdrill runs
    in (``.venv/allure-npm`` for a checkout), else ``~/.cache/drdrill/allure-npm``."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "allure-npm"
    return Path.home() / ".cache" / "drdrill" / "allure-npm"
