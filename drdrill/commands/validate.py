"""``drdrill validate [FEATURE...]``: check features without running them (steps defined, experiments valid)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drdrill.commands.session import BddSession
from drdrill.errors import DrdrillError
from drdrill.exitcodes import ExitCode

__all__ = ["add_parser", "run"]


def add_parser(subcommands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    validate = subcommands.add_parser(
        "validate", help="check features without running them (steps defined, experiments valid)",
        description="Collect the scenarios of the given feature files or directories (default: "
                    "features/ under the project directory) and check every step has a definition "
                    "and every experiment exists, validates and names only what the mirror has. "
                    "Nothing runs, no fault is injected, no Docker needed.")  # fmt: skip
    validate.add_argument("paths", nargs="*", metavar="FEATURE", type=Path)
    validate.add_argument("--features", type=Path, metavar="DIR", dest="features_dir",
                          help="a features directory to check (the same as naming it as FEATURE)")
    validate.add_argument("--experiments", type=Path, metavar="DIR",
                          help="where the experiments the steps name are (default: experiments/)")
    validate.set_defaults(run=run)
    return validate


def run(args: argparse.Namespace) -> int:
    from drdrill.settings import settings
    from drdrill.targets import TARGETS, target_class

    where = settings()
    named = [*args.paths, *([args.features_dir] if args.features_dir else [])]
    paths = [p.resolve() for p in named] or [where.features]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DrdrillError(f"no such feature file or directory: {', '.join(missing)}")
    if args.experiments is not None and not args.experiments.is_dir():
        raise DrdrillError(f"no experiments directory at {args.experiments.resolve()}")
    features = sorted({f for p in paths for f in ([p] if p.is_file() else p.rglob("*.feature"))})
    if not features:
        raise DrdrillError(f"no .feature file under {', '.join(map(str, paths))}")
    bad = [str(f) for f in features if f.suffix != ".feature"]
    if bad:
        raise DrdrillError(f"not a feature file: {', '.join(bad)}")
    failures = []
    for target in (n for n in TARGETS if target_class(n).validated_offline):  # each scenario under its own
        with BddSession(features, where.project, experiments=args.experiments,
                        args=[f"--drdrill-target={target}"]) as session:  # fmt: skip
            result = session.collect()
        if result.returncode not in (0, 5):
            failures.append(result.stdout + result.stderr)
    if failures:
        lines = [line.strip() for text in failures for line in text.splitlines()
                 if line.startswith("  ") or "error" in line.lower()]
        seen = list(dict.fromkeys(line for line in lines if line))
        print("\n".join(seen) or "\n".join(failures), file=sys.stderr)
        print(f"drdrill: {len(features)} feature file(s) checked: problems above", file=sys.stderr)
        return ExitCode.NOT_RUN
    print(f"drdrill: {len(features)} feature file(s) valid: every step defined, every experiment valid")
    return ExitCode.VALID
