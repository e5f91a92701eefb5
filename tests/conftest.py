"""Session-wide checks: running the suite writes no ``chaostoolkit.log`` anywhere in the checkout.

``chaos`` (the chaostoolkit CLI) logs to ``chaostoolkit.log`` in its working directory, so a test that
runs it must do so in a temporary directory. A log that was already there (say, from a ``chaos run``
by hand) is ignored unless the session writes to it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
