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
"""

from __future__ import annotations

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
