"""drdrill's exit codes, the same for every command (``drdrill --help`` and the README list them).

    0    valid: every objective met, and the history proves it (other commands: done)
    1    invalid: an objective was missed (a product defect)
    2    unknown: the evidence cannot tell (too little traffic, no final read, ...)
    3    the drill could not run (pre-flight failed, a guardrail refused; other commands: could not
         be done: no Docker engine, the mirror did not become healthy, no mirror is up)
    130  interrupted (Ctrl-C or SIGTERM; rollbacks and teardown ran first)
    254  bad arguments (argparse's own 2 would read as "unknown")
    255  internal error in drdrill (a bug: the traceback is printed)
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drdrill.checkers import Validity

__all__ = ["DRILL_EPILOG", "MIRROR_EPILOG", "ExitCode", "for_validity", "run_command"]


class ExitCode(IntEnum):
    VALID = 0
    INVALID = 1
    UNKNOWN = 2
    NOT_RUN = 3
    INTERRUPTED = 130
    BAD_ARGS = 254
    INTERNAL = 255


def for_validity(validity: Validity) -> ExitCode:
    """The exit code of a verdict (valid 0, invalid 1, unknown 2)."""
    return ExitCode[validity.value.upper()]


def run_command(
    command: Callable[[], int],
    prog: str,
    errors: Sequence[tuple[type[Exception], ExitCode]],
    internal: str,
) -> int:
    """The exit code of ``command()``: its own, or the code of the error that ended it.

    An error of a type in ``errors`` (the first that matches, in order) prints ``<prog>: <error>``
    and gives its code; Ctrl-C prints ``<prog>: interrupted`` (130); anything else is a bug in
    drdrill: the traceback, then ``<prog>: `` + ``internal`` (formatted with ``kind``, the error's
    class name, and ``error``), and 255.
    """
    try:
        return command()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - the documented exit codes, the last for our own bugs
        for kind, code in errors:
            if isinstance(exc, kind):
                print(f"{prog}: {exc}", file=sys.stderr)
                return code
        traceback.print_exc()
        message = internal.format(kind=type(exc).__name__, error=exc)
        print(f"{prog}: {message}", file=sys.stderr)
        return ExitCode.INTERNAL


def _epilog(meanings: dict[ExitCode, str]) -> str:
    return "exit codes: " + ", ".join(f"{int(code)} {text}" for code, text in meanings.items())


DRILL_EPILOG = _epilog({
    ExitCode.VALID: "valid", ExitCode.INVALID: "invalid (objective missed)",
    ExitCode.UNKNOWN: "unknown (not enough evidence)", ExitCode.NOT_RUN: "drill could not run",
    ExitCode.INTERRUPTED: "interrupted", ExitCode.BAD_ARGS: "bad arguments",
    ExitCode.INTERNAL: "internal error",
})  # fmt: skip
MIRROR_EPILOG = _epilog({
    ExitCode.VALID: "done", ExitCode.NOT_RUN: "could not be done",
    ExitCode.INTERRUPTED: "interrupted", ExitCode.BAD_ARGS: "bad arguments",
    ExitCode.INTERNAL: "internal error",
})  # fmt: skip
