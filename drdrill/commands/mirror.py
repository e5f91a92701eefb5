"""``drdrill mirror up | down | status``: the local mirror's own command (:mod:`drdrill.mirror.cli`)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(subcommands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from drdrill.mirror import cli as mirror_cli

    mirror = mirror_cli.add_parser(subcommands)
    mirror.set_defaults(run=run)
    return mirror


def run(args: argparse.Namespace) -> int:
    from drdrill.mirror import cli as mirror_cli

    return mirror_cli.run(args)
