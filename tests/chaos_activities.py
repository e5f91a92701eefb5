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
