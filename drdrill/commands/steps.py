"""``drdrill steps``: the reference of every Gherkin step of the library (``docs/steps.md``)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subcommands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    steps = subcommands.add_parser("steps", help="print the reference of every Gherkin step, with examples",
                                   description="The step library for drill authors, drdrill.steps "
                                               "(docs/steps.md is this output).")  # fmt: skip
    steps.set_defaults(run=run)
    return steps


def run(args: argparse.Namespace) -> int:
    from drdrill.stepdocs import step_reference

    print(step_reference(), end="")
    return 0
