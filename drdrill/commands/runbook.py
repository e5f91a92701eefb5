"""``drdrill runbook done | status | steps``: confirm a running drill's manual runbook steps; list the runbook."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from drdrill.commands.parser import Parser

__all__ = ["add_parser", "run"]


def add_parser(subcommands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    book = subcommands.add_parser(
        "runbook", help="confirm the manual runbook steps of a running drill",
        description="A drill whose runbook has manual steps (runbook_manual in the experiment "
                    "configuration, or $DRDRILL_RUNBOOK_MANUAL, e.g. declare,dns) announces each "
                    "one and waits for its operator; confirm it from another terminal.")  # fmt: skip
    actions = book.add_subparsers(dest="runbook_action", metavar="ACTION", required=True,
                                  parser_class=Parser)  # fmt: skip
    done = actions.add_parser("done", help="confirm that manual step STEP is done")
    done.add_argument("step", metavar="STEP")
    status = actions.add_parser("status", help="show which step waits for its operator")
    steps = actions.add_parser("steps", help="list the runbook's steps")
    steps.add_argument("--markdown", action="store_true",
                       help="print the runbook reference in Markdown (docs/runbook.md)")
    for sub in (done, status):
        sub.add_argument("--dir", type=Path, metavar="DIR",
                         help="the runbook directory (default: runbook/ beside the mirror state "
                              "file, $DRDRILL_MIRROR_STATE or reports/mirror/state.json)")
    book.set_defaults(run=run)
    return book


def run(args: argparse.Namespace) -> int:
    from drdrill import runbook

    if args.runbook_action == "steps":
        if args.markdown:
            print(runbook.reference(), end="")
            return 0
        from drdrill.tables import table

        rows = [(step.name, step.phase, step.title) for step in runbook.STEPS.values()]
        print(table(("step", "phase", "title"), rows))
        return 0
    from drdrill.mirror.state import state_path

    directory = args.dir or state_path().with_name("runbook")
    if args.runbook_action == "status":
        waiting = runbook.pending(directory)
        if waiting is None:
            print(f"no runbook step is waiting for an operator ({directory})")
            return 0
        since = time.time() - float(waiting.get("since_s", time.time()))
        print(f"waiting for {waiting['step']!r} ({waiting.get('title')}) for {since:.0f} s:\n"
              f"  {waiting.get('instructions')}\n"
              f"  confirm with: drdrill runbook done {waiting['step']}")  # fmt: skip
        return 0
    waiting = runbook.confirm(args.step, directory)
    print(f"confirmed {args.step!r}; the drill goes on "
          f"(it waited {time.time() - float(waiting.get('since_s', time.time())):.0f} s)")  # fmt: skip
    return 0
