"""The argument parser class of every drdrill command: a usage error exits 254, never argparse's 2."""

from __future__ import annotations

import argparse
import sys

from drdrill.exitcodes import ExitCode

__all__ = ["Parser"]


class Parser(argparse.ArgumentParser):
    """argparse, with bad arguments exiting :attr:`ExitCode.BAD_ARGS` (2 means "unknown" here)."""

    def error(self, message: str) -> None:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.BAD_ARGS, f"{self.prog}: error: {message}\n")
