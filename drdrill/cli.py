"""The ``drdrill`` command: its parser and the exit code of whatever subcommand runs.

The subcommands live in :mod:`drdrill.commands` (one module each); the exit codes, the same for
every subcommand, in :mod:`drdrill.exitcodes`. Relative defaults (``features/``, ``experiments/``,
``reports/``) are resolved against the project directory (:mod:`drdrill.settings`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from drdrill import __version__
from drdrill.commands import COMMANDS
from drdrill.commands.parser import Parser
from drdrill.errors import DrdrillError
from drdrill.exitcodes import DRILL_EPILOG, ExitCode, run_command

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="drdrill", description=(
        "Chaos and disaster-recovery drills with recovery time (RTO) and data loss (RPO) measured "
        "from what synthetic users saw. Relative defaults (features/, experiments/, reports/) are "
        "resolved against the project directory: the nearest of the current directory and its "
        "parents that holds features/, else the current directory."),
        epilog=DRILL_EPILOG)  # fmt: skip
    parser.add_argument("--version", action="version", version=f"drdrill {__version__}")
    subcommands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"drdrill.commands.{name}").add_parser(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = build_parser().parse_args(argv)
    return run_command(
        lambda: int(args.run(args)),
        "drdrill",
        [(DrdrillError, ExitCode.BAD_ARGS)],
        internal="internal error: {kind}: {error}",
    )


if __name__ == "__main__":
    sys.exit(main())
