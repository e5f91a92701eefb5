"""Chaos Toolkit python activities for drdrill's own tests: sleep, fail, leave a mark."""

from __future__ import annotations

import time
from pathlib import Path


def nap(seconds: float) -> float:
    """Sleep ``seconds``; returns them."""
    time.sleep(seconds)
    return seconds


def explode(message: str = "boom") -> None:
    """Always fail."""
    raise RuntimeError(message)


def mark(path: str, text: str) -> None:
    """Append ``text`` and a newline to the file at ``path``."""
    with Path(path).open("a") as handle:
        handle.write(text + "\n")


def healthy() -> bool:
    """A steady-state probe that always holds."""
    return True


def runbook_promote(seconds: float = 0.05) -> dict:
    """A runbook step as drdrill's actions return it (the recorder reads ``runbook_step``)."""
    from drdrill import runbook

    return runbook.run_step("promote", lambda: nap(seconds))


runbook_promote.runbook_step = "promote"


def terminate_me_then_mark(path: str, text: str) -> None:
    """SIGTERM this very process, keep working half a second, then leave a mark (a rollback)."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)
    mark(path, text)
