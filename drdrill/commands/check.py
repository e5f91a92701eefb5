"""``drdrill check RUN_DIR...``: judge stored run directories again from their files alone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from drdrill.checkers import CheckResult, Validity
from drdrill.exitcodes import for_validity

__all__ = ["add_parser", "run"]


def add_parser(subcommands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    check = subcommands.add_parser("check", help="re-judge stored run directories offline",
                                   description="Judge run directories from their files alone "
                                               "(history.jsonl, final-read.json, drill.json); rewrites results.json.")  # fmt: skip
    check.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", type=Path)
    check.add_argument("--json", action="store_true", help="print the full results as JSON")
    check.add_argument("-v", "--verbose", action="store_true", help="print every result, not only the summary")
    check.set_defaults(run=run)
    return check


def run(args: argparse.Namespace) -> int:
    from drdrill.checkers import merge_validity
    from drdrill.run import RunDir

    runs = [RunDir.open(path) for path in args.run_dirs]  # all bad paths fail before any work
    validities = []
    for run_dir in runs:
        result = run_dir.check()
        validities.append(result.validity)
        if args.json:
            print(json.dumps(result.to_dict(), indent=2, default=str))
            continue
        print(f"{run_dir.path}: {result.validity.value.upper()}")
        for line in tree(result, verbose=args.verbose):
            print("  " + line)
    return for_validity(merge_validity(validities))


def tree(result: CheckResult, verbose: bool, depth: int = 0) -> list[str]:
    """Groups and their direct results; deeper results only when not valid (or with --verbose)."""
    lines = []
    for child in result.children:
        label = child.name
        step = child.evidence.get("step")
        if step:
            label = f'"{step}" [{child.name}]'
        text = f"{label}: {child.validity.value.upper()}"
        if child.explanation and (depth > 0 or not child.children):
            text += f" — {child.explanation[0]}"
        lines.append("  " * depth + text)
        if verbose or depth == 0 or child.validity is not Validity.VALID:
            lines += tree(child, verbose, depth + 1)
    return lines
