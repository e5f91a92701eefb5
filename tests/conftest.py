"""The test suite's own settings: a per-test timeout and how the tests are shared out among workers.

Here rather than in pyproject.toml because ``drdrill drill`` runs pytest on features/ with the same
configuration file, and a drill must not inherit a test suite's timeout.

Timeout: a test that hangs fails after ``DEFAULT_TIMEOUT_S`` with its name (a longer test says so
with ``@pytest.mark.timeout(...)``). Method ``signal`` (SIGALRM in the main thread): the test fails
and its fixtures' teardown still runs (the shared mirror is restored or taken down, the session goes
on); the ``thread`` method would dump the stacks and end the whole session at once. No drdrill code
and nothing in chaoslib handles SIGALRM (the runner holds back SIGINT and SIGTERM only during the
rollbacks), so the alarm always reaches the test.

Workers (``scripts/test`` runs ``-n 2``, pytest-xdist): the tests of the shared mirror
(tests/mirror/conftest.py: every module of tests/mirror/ but the few that start no mirror) are one
unit of work, run in order on one worker; any other module is a unit of its own, so its module- and
package-scoped fixtures start once and its tests keep their order. The mirror's drills mostly wait
(Patroni's ttl, recovery windows), so the other worker runs the rest of the suite meanwhile. (The
units are chosen by path because pytest-xdist's ``--dist loadgroup`` does not group under pytest 9.2:
it renames ``Item._nodeid``, which pytest no longer reads.)

No stray log: running the suite writes no ``chaostoolkit.log`` anywhere in the checkout. ``chaos``
(the chaostoolkit CLI) logs to ``chaostoolkit.log`` in its working directory, so a test that runs it
must do so in a temporary directory. A log that was already there (say, from a ``chaos run`` by
hand) is ignored unless the session writes to it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT_TIMEOUT_S = 300
# tests/mirror/ modules that start no mirror (single containers, labels): free to run alongside it
WITHOUT_MIRROR = {"tests/mirror/test_images.py", "tests/mirror/test_leftovers.py",
                  "tests/mirror/test_platform.py"}  # fmt: skip


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT_S, method="signal"))


def work_unit(nodeid: str) -> str:
    """The unit of work of a test for pytest-xdist: "mirror" for the shared mirror's, else its module."""
    path = nodeid.split("::", 1)[0]
    return "mirror" if path.startswith("tests/mirror/") and path not in WITHOUT_MIRROR else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        """pytest-xdist's scope scheduling (largest unit first) with :func:`work_unit` as the scope."""

        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)

ROOT = Path(__file__).resolve().parents[1]
LOG_NAME = "chaostoolkit.log"
NOT_SEARCHED = {".git", ".venv", "node_modules", "__pycache__"}
_BEFORE = pytest.StashKey[dict[Path, tuple[int, int]]]()


def chaostoolkit_logs(root: Path = ROOT) -> dict[Path, tuple[int, int]]:
    """Every chaostoolkit.log under ``root`` → (mtime ns, size)."""
    found: dict[Path, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in NOT_SEARCHED]
        if LOG_NAME in files:
            path = Path(folder) / LOG_NAME
            stat = path.stat()
            found[path] = (stat.st_mtime_ns, stat.st_size)
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_BEFORE] = chaostoolkit_logs()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    before = session.config.stash.get(_BEFORE, {})
    written = sorted(p for p, seen in chaostoolkit_logs().items() if before.get(p) != seen)
    if not written:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = (f"this session wrote {', '.join(str(p.relative_to(ROOT)) for p in written)}: a test "
               f"runs `chaos` in the checkout; run it with cwd=tmp_path (or --log-file under tmp_path)")
    if reporter is not None:
        reporter.write_sep("=", message, red=True)
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
