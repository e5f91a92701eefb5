"""``drdrill mirror up | down | status | links``: the local mirror from the command line.

Wired into the main CLI with :func:`add_parser` (adds the ``mirror`` subcommand to a subparsers
object) and :func:`run` (runs parsed arguments, returns the exit code). Also runs on its own:
``python -m drdrill.mirror.cli up``.

Exit codes (drdrill's, :mod:`drdrill.exitcodes`):

    0    done (up: healthy; down: nothing left; status: printed)
    3    could not be done: no Docker engine, the mirror did not become healthy, no mirror is up
    130  interrupted (``up`` removes what it had created)
    254  bad arguments, or a malformed topology file
    255  internal error in drdrill
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from drdrill.commands.parser import Parser
from drdrill.errors import ConfigError, DrdrillError
from drdrill.exitcodes import MIRROR_EPILOG, ExitCode, run_command

__all__ = ["add_parser", "main", "run"]


def add_parser(subcommands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``mirror`` (with ``up``, ``down``, ``status``) to ``subcommands``; the new parser."""
    mirror = subcommands.add_parser(
        "mirror",
        help="bring the local two-region mirror up, take it down, show its status",
        description="The local mirror: the platform of the DR plan in Docker (two regions, "
        "Patroni, etcd, HAProxy, Redis, the services, a global entry). Every port is published "
        "on 127.0.0.1 only; the state file lists them for chaos runs and Locust.",
        epilog=MIRROR_EPILOG,
    )
    actions = mirror.add_subparsers(dest="mirror_command", required=True, metavar="ACTION",
                                    parser_class=type(mirror))  # fmt: skip
    state_help = "state file (default: $DRDRILL_MIRROR_STATE, else reports/mirror/state.json)"

    up = actions.add_parser("up", help="create the mirror and wait until it is healthy")
    up.add_argument(
        "--topology",
        type=Path,
        metavar="FILE",
        help="topology YAML (default: drdrill/mirror/topology.yaml, the DR plan's)",
    )
    up.add_argument("--state", type=Path, metavar="FILE", help=state_help)
    up.add_argument(
        "--id",
        dest="mirror_id",
        metavar="ID",
        help="mirror id (default: random); it is in every container and network name",
    )
    up.add_argument("--timeout", type=float, default=180.0, metavar="S",
                    help="seconds to wait for health (default 180)")  # fmt: skip

    down = actions.add_parser("down", help="remove every container and network of the mirror")
    down.add_argument("--state", type=Path, metavar="FILE", help=state_help)
    target = down.add_mutually_exclusive_group()
    target.add_argument(
        "--id",
        dest="mirror_id",
        metavar="ID",
        help="the mirror to remove (default: the state file's)",
    )
    target.add_argument("--all", action="store_true",
                        help="remove every drdrill mirror on this engine (sweep by label)")  # fmt: skip

    status = actions.add_parser("status", help="regions, AZs, roles, health, leader, lag, weights")
    status.add_argument("--state", type=Path, metavar="FILE", help=state_help)
    status.add_argument("--json", action="store_true", help="print the status as JSON")

    shaped = actions.add_parser("links", help="reshape the wan/az links (after a manual restart) and "
                                "print their measured RTT; --restore undoes every degradation")
    shaped.add_argument("--state", type=Path, metavar="FILE", help=state_help)
    shaped.add_argument("--restore", action="store_true",
                        help="back to the topology's links (undo every degrade_link and scenario condition)")
    return mirror


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``mirror`` command; its exit code."""
    return run_command(
        lambda: _run(args),
        "drdrill mirror",
        [(ConfigError, ExitCode.BAD_ARGS), (DrdrillError, ExitCode.NOT_RUN)],
        internal="internal error (a bug in drdrill); see the traceback above",
    )


def _run(args: argparse.Namespace) -> int:
    from drdrill.mirror import lifecycle, status  # Docker SDK imports only when a command runs

    def progress(message: str) -> None:
        print(message, flush=True)

    if args.mirror_command == "up":
        from drdrill.mirror.topology import load_topology

        topology = load_topology(args.topology)  # ConfigError (254) before any Docker work
        state = lifecycle.up(topology, progress, mirror_id=args.mirror_id,
                             state_file=args.state, timeout_s=args.timeout)  # fmt: skip
        print()
        print(status.status(state))
        return ExitCode.VALID
    if args.mirror_command == "down":
        lifecycle.down(args.mirror_id, state_file=args.state, progress=progress,
                       everything=args.all)  # fmt: skip
        return ExitCode.VALID
    if args.mirror_command == "status":
        report = status.status(state_file=args.state)
        if args.json:
            print(json.dumps({
                "mirror_id": report.mirror_id, "rows": report.rows, "leaders": report.leaders,
                "lag": report.lag, "weights": report.weights, "serving": report.serving,
                "errors": report.errors, "links": report.links,
            }, indent=2))  # fmt: skip
        else:
            print(report)
        return ExitCode.VALID
    if args.mirror_command == "links":
        from drdrill.mirror import links
        from drdrill.mirror.state import load_state

        state = load_state(args.state)
        done = links.restore(state) if args.restore else links.shape(state)
        if done.get("restored") is not None:
            print(f"restored: {', '.join(done['restored']) or 'nothing was degraded'}")
        for name, rtt in links.measure_rtt_ms(state).items():
            print(f"link {name:<11} RTT measured {rtt:.1f} ms")
        return ExitCode.VALID
    raise AssertionError(f"unknown mirror command {args.mirror_command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m drdrill.mirror.cli ...`` (the same as ``drdrill mirror ...``)."""
    parser = Parser(prog="drdrill")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    add_parser(commands)
    args = parser.parse_args(["mirror", *(argv if argv is not None else sys.argv[1:])])
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
