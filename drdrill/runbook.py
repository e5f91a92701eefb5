"""The DR runbook: the failover and failback steps of the DR plan, each timed, automatic or manual.

Terms and units
---------------
step
    One named step of the runbook (:data:`STEPS`): ``detect``, ``declare``, ``scale-up``,
    ``promote``, ``dns``, ``deploy``, ``validate``, ``notify`` (the cross-region failover of the DR
    plan, ``docs/dr-plan.md`` §4) and ``rebuild``, ``catch-up``, ``maintenance``, ``switchover``, ``dns-back``,
    ``scale-down`` (its failback, §7). Its *phase* is the bucket of the RTO breakdown it counts in
    (detection, declaration, scale-up, promotion, dns, deploy, validation, communication, failback).
mode
    ``auto``: the harness performs the step. ``manual``: the harness announces the step and waits
    for the operator to confirm it (Enter at the prompt, or ``drdrill runbook done STEP`` from
    another terminal), then performs the step's operation. Every operation is idempotent, so a
    step the operator already did by hand is only verified (promoting a writable database, setting
    weights already in force and scaling to the current size change nothing).
operator time (``operator_s``)
    Seconds from the announcement of a manual step to the operator's confirmation (0 when auto).
execution time (``execute_s``)
    Seconds the step's operation took.
runbook directory
    Where a waiting step is announced (``pending.json``) and confirmed (``<step>.done``): the
    ``runbook`` directory beside the mirror's state file unless the experiment's configuration
    names one (``runbook_dir``).
manual steps
    Named by the experiment configuration's ``runbook_manual`` (a list, or names separated by
    commas) and the environment variable ``DRDRILL_RUNBOOK_MANUAL``; ``all`` makes every step manual.

Every step's action returns a :func:`run_step` record (``runbook_step``, ``mode``, ``operator_s``,
``execute_s``, ``started_s``, ``ended_s``, ``result``); the chaos journal keeps it as the activity's
output and the history's nemesis ops carry the step name, so
:func:`drdrill.checkers.runbook.check_runbook` rebuilds the breakdown from the history alone.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import os
import select
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drdrill.errors import RunbookError

__all__ = [
    "MANUAL_ENV",
    "STEPS",
    "Step",
    "confirm",
    "manual_steps",
    "pending",
    "reference",
    "run_step",
    "step_action",
]

log = logging.getLogger("drdrill")

MANUAL_ENV = "DRDRILL_RUNBOOK_MANUAL"
POLL_S = 0.2


@dataclass(frozen=True)
class Step:
    """A runbook step: its RTO-breakdown ``phase``, a title and what an operator is asked to do."""

    name: str
    phase: str
    title: str
    instructions: str


STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step("detect", "detection", "Detect the outage",
             "Confirm from monitoring that the platform is not serving users."),
        Step("declare", "declaration", "Declare the regional disaster",
             "Incident Commander: confirm the outage (provider status, own monitoring) and "
             "declare a regional disaster."),
        Step("scale-up", "scale-up", "Scale up the DR region",
             "Scale the DR region's services to production capacity (Terraform / autoscaling)."),
        Step("promote", "promotion", "Promote the DR database",
             "Promote the cross-region replica in the DR region to primary."),
        Step("dns", "dns", "Switch DNS to the DR region",
             "Change the weighted DNS records so all traffic goes to the DR region."),
        Step("deploy", "deploy", "Deploy the services in the DR region",
             "Trigger the CI/CD pipeline to deploy the latest release to the DR region."),
        Step("validate", "validation", "Validate the DR region",
             "Run health checks and the critical-path synthetic tests against the DR region."),
        Step("notify", "communication", "Post a status update",
             "Comms Lead: post a status-page update for users."),
        Step("rebuild", "failback", "Rebuild the old primary as a replica",
             "Re-create the old primary region's database as a replica of the DR database."),
        Step("catch-up", "failback", "Wait for replication to catch up",
             "Wait until the rebuilt replica has caught up with the DR database."),
        Step("maintenance", "failback", "Open the maintenance window",
             "Announce the maintenance window and stop traffic to the platform."),
        Step("switchover", "failback", "Switch the database over to the primary region",
             "Promote the primary region's replica and turn the DR database back into its replica."),
        Step("dns-back", "failback", "Switch DNS back to the primary region",
             "Change the weighted DNS records back so all traffic goes to the primary region."),
        Step("scale-down", "failback", "Scale the DR region back to pilot light",
             "Scale the DR region's services back to their pilot-light size."),
    )
}  # fmt: skip


def reference() -> str:
    """The runbook as Markdown, one anchored section per step (``docs/runbook.md`` is this text).

    Allure's runbook links point at it (``docs/runbook.md#promote``).
    """
    lines = [
        "# The DR runbook",
        "",
        "<!-- generated by `drdrill runbook steps --markdown`; do not edit by hand -->",
        "",
        "The steps drdrill times during a cross-region failover ([the DR plan](dr-plan.md), §4) "
        "and the failback (§7). Each runs automatically, or waits for its operator when manual (`drdrill drill "
        "--manual STEPS`; confirm with `drdrill runbook done STEP`). Its *phase* is the bucket of "
        "the RTO breakdown it counts in (`runbook` in a run's `results.json`).",
        "",
        "| step | phase | what |",
        "|---|---|---|",
        *(f"| [`{s.name}`](#{s.name}) | {s.phase} | {s.title} |" for s in STEPS.values()),
        "",
    ]
    for step in STEPS.values():
        lines += [f'<a id="{step.name}"></a>', "", f"## `{step.name}` — {step.title}", "",
                  f"Phase: **{step.phase}**.", "", f"Operator: {step.instructions}", "",
                  f"Confirm a manual `{step.name}`: `drdrill runbook done {step.name}`.", ""]
    return "\n".join(lines)


def _names(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, Iterable):
        return [str(v).strip() for v in value if str(v).strip()]
    raise RunbookError(f"runbook_manual must be a list of step names or a string, not {value!r}")


def manual_steps(configuration: Mapping[str, Any] | None = None) -> set[str]:
    """The steps to run manually (configuration ``runbook_manual`` + ``$DRDRILL_RUNBOOK_MANUAL``)."""
    names = [
        *_names((configuration or {}).get("runbook_manual")),
        *_names(os.environ.get(MANUAL_ENV)),
    ]
    if "all" in names:
        return set(STEPS)
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise RunbookError(
            f"unknown runbook step(s) {', '.join(map(repr, unknown))} in runbook_manual / "
            f"${MANUAL_ENV}; steps are {', '.join(STEPS)} (or all)"
        )
    return set(names)


def _step(name: str) -> Step:
    if name not in STEPS:
        raise RunbookError(f"unknown runbook step {name!r}; steps are {', '.join(STEPS)}")
    return STEPS[name]


def _announce(text: str) -> None:
    """Tell the operator: the log, and the terminal directly when there is one (pytest captures stderr)."""
    log.warning("%s", text)
    with contextlib.suppress(OSError), open("/dev/tty", "w") as tty:
        tty.write(text + "\n")


def pending(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The step waiting for its operator in ``directory`` (``pending.json``), or None."""
    path = Path(directory) / "pending.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    return None


def confirm(step: str, directory: str | os.PathLike[str], by: str | None = None) -> dict[str, Any]:
    """The operator confirms ``step`` (what ``drdrill runbook done STEP`` does); the waiting step."""
    _step(step)
    waiting = pending(directory)
    if waiting is None:
        raise RunbookError(
            f"no runbook step is waiting for an operator in {directory}; nothing to confirm "
            "(is a drill running with manual steps, and with the same mirror state file?)"
        )
    if waiting.get("step") != step:
        raise RunbookError(
            f"step {waiting.get('step')!r} is waiting (since "
            f"{time.strftime('%H:%M:%S', time.localtime(waiting.get('since_s', 0)))}), not "
            f"{step!r}; run `drdrill runbook done {waiting.get('step')}`"
        )
    done = {"step": step, "by": by or getpass.getuser(), "at_s": time.time()}
    (Path(directory) / f"{step}.done").write_text(json.dumps(done))
    return waiting


def _wait_for_operator(
    step: Step, directory: Path, timeout_s: float, instructions: str
) -> tuple[float, str]:
    """Announce ``step``, wait for its confirmation; (operator seconds, who confirmed)."""
    directory.mkdir(parents=True, exist_ok=True)
    done_file = directory / f"{step.name}.done"
    done_file.unlink(missing_ok=True)
    since = time.time()
    (directory / "pending.json").write_text(json.dumps({
        "step": step.name, "title": step.title, "instructions": instructions,
        "since_s": since, "pid": os.getpid(),
    }))  # fmt: skip
    tty = None
    with contextlib.suppress(OSError):
        tty = open("/dev/tty")  # noqa: SIM115 - closed below
    _announce(
        f"\n[runbook] MANUAL STEP {step.name!r}: {step.title}\n"
        f"[runbook]   {instructions}\n"
        f"[runbook]   when it is done: run `drdrill runbook done {step.name}`"
        + (" or press Enter here" if tty else "")
        + f" (waiting up to {timeout_s:.0f} s)"
    )
    t0 = time.monotonic()
    try:
        while True:
            if done_file.is_file():
                with contextlib.suppress(OSError, ValueError):
                    return time.monotonic() - t0, json.loads(done_file.read_text()).get("by", "?")
                return time.monotonic() - t0, "?"
            if tty is not None:
                ready, _, _ = select.select([tty], [], [], POLL_S)
                if ready:
                    tty.readline()
                    return time.monotonic() - t0, f"{getpass.getuser()} (terminal)"
            else:
                time.sleep(POLL_S)
            if time.monotonic() - t0 > timeout_s:
                raise RunbookError(
                    f"nobody confirmed runbook step {step.name!r} within {timeout_s:.0f} s; "
                    f"confirm with `drdrill runbook done {step.name}` or raise manual_timeout_s"
                )
    finally:
        if tty is not None:
            tty.close()
        (directory / "pending.json").unlink(missing_ok=True)
        done_file.unlink(missing_ok=True)


def run_step(
    name: str,
    operation: Callable[[], Any],
    *,
    manual: bool = False,
    directory: str | os.PathLike[str] | None = None,
    timeout_s: float = 3600.0,
    instructions: str | None = None,
) -> dict[str, Any]:
    """Run runbook step ``name``: wait for its operator when ``manual``, then ``operation()``; timed."""
    step = _step(name)
    started = time.time()
    operator_s, by = 0.0, None
    if manual:
        if directory is None:
            raise RunbookError(f"manual step {name!r} needs a runbook directory to wait in")
        operator_s, by = _wait_for_operator(
            step, Path(directory), timeout_s, instructions or step.instructions
        )
        log.warning("[runbook] %s confirmed by %s after %.1f s", name, by, operator_s)
    t0 = time.monotonic()
    result = operation()
    execute_s = time.monotonic() - t0
    ended = time.time()
    log.info("[runbook] %s (%s) done in %.2f s", name, "manual" if manual else "auto",
             ended - started)  # fmt: skip
    record = {
        "runbook_step": name,
        "phase": step.phase,
        "mode": "manual" if manual else "auto",
        "operator_s": round(operator_s, 3),
        "execute_s": round(execute_s, 3),
        "started_s": started,
        "ended_s": ended,
        "result": result,
    }
    if by is not None:
        record["confirmed_by"] = by
    return record


def step_action(name: str, runbook_dir: Callable[[Mapping[str, Any]], Path]
                ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # fmt: skip
    """Make a Chaos Toolkit action runbook step ``name``: timed by :func:`run_step`, manual when the
    action's ``configuration`` names it (:func:`manual_steps`), waiting in ``runbook_dir(configuration)``.

    The action gets a ``runbook_step`` attribute, which the nemesis recorder copies into the history.
    """

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def action(*args: Any, **kwargs: Any) -> dict[str, Any]:
            configuration = kwargs.get("configuration") or {}
            manual = name in manual_steps(configuration)
            return run_step(
                name,
                lambda: fn(*args, **kwargs),
                manual=manual,
                directory=runbook_dir(configuration) if manual else None,
                timeout_s=float(configuration.get("manual_timeout_s") or 3600.0),
            )

        action.runbook_step = name  # type: ignore[attr-defined]
        return action

    return wrap
