"""Pre-flight for experiments on the AWS mirror: unknown names refused, then every action planned and guarded.

:func:`experiment_problems` checks an experiment without AWS: only ``drdrill.chaos.aws`` providers
(a local-mirror action has no place in an AWS experiment), known functions, regions the mirror
config names, known manual runbook steps. :func:`plan_experiment` resolves each activity of the
method and the rollbacks into the operations it would perform (read-only AWS calls) and checks
each action against the guardrails; it is what ``drdrill drill --target aws --dry-run`` prints.
As a Chaos Toolkit control (``"controls": [{"name": "drdrill-preflight", "provider": {"type":
"python", "module": "drdrill.chaos.aws.control"}}]``) both run before the steady-state hypothesis,
so a refusal comes before any fault.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from chaoslib.exceptions import InterruptExecution
from chaoslib.types import Configuration, Experiment, Secrets

from drdrill import runbook
from drdrill.aws import guardrails, operations
from drdrill.aws.config import AwsMirror
from drdrill.chaos.preflight import (
    REGION_ARGUMENTS,
    activities,
    join_chaostoolkit_run,
    literal,
    resolved_configuration,
)
from drdrill.errors import DrdrillError

__all__ = ["before_experiment_control", "experiment_problems", "plan_experiment"]

PROVIDER_PREFIX = "drdrill.chaos.aws"


def _drdrill_activities(experiment: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], str, str, dict]]:
    """(phase, activity, module, func, arguments) of every python activity under ``drdrill.chaos``."""
    found = []
    for phase, activity in activities(experiment):
        provider = activity.get("provider") or {}
        module = str(provider.get("module", ""))
        if provider.get("type") == "python" and module.startswith("drdrill.chaos"):
            found.append((phase, activity, module, str(provider.get("func", "")),
                          dict(provider.get("arguments") or {})))  # fmt: skip
    return found


def experiment_problems(experiment: Mapping[str, Any], mirror: AwsMirror | None = None,
                        configuration: Mapping[str, Any] | None = None) -> list[str]:  # fmt: skip
    """What in ``experiment`` cannot run on the AWS mirror, without asking AWS ([] when nothing)."""
    configuration = resolved_configuration(experiment, configuration)
    problems: list[str] = []
    shaped = [a.get("name") for _, a, _, f, _ in _drdrill_activities(experiment) if f == "degrade_link"]
    if shaped:
        return [f"activity {shaped[0]!r} (degrade_link): the aws target cannot shape a real WAN or the "
                "links between AZs; degrading a link is drilled on the local mirror (--target local)"]
    foreign = sorted({m for _, _, m, _, _ in _drdrill_activities(experiment) if not m.startswith(PROVIDER_PREFIX)})
    if foreign:
        return [f"this experiment acts on another target ({', '.join(foreign)}); the aws target runs "
                f"AWS versions of experiments, from experiments/aws/ ({PROVIDER_PREFIX}.actions / .probes), "
                "and there is none of this name"]
    for phase, activity, module, func, arguments in _drdrill_activities(experiment):
        where = f"{phase} activity {activity.get('name')!r}"
        try:
            exported = getattr(importlib.import_module(module), "__all__", [])
        except ImportError as exc:
            problems.append(f"{where}: cannot import {module}: {exc}")
            continue
        if func not in exported:
            problems.append(f"{where}: {module} has no {func!r}; it has {', '.join(exported)}")
        if mirror is not None:
            args = {k: literal(v, configuration) for k, v in arguments.items()}
            for key in REGION_ARGUMENTS:
                value = args.get(key)
                if isinstance(value, str) and not value.startswith("${") and value not in mirror.regions:
                    problems.append(f"{where}: no region {value!r} ({key}) in {mirror.source}; regions are "
                                    f"{', '.join(mirror.regions)}")  # fmt: skip
    try:
        runbook.manual_steps(configuration)
    except DrdrillError as exc:
        problems.append(str(exc))
    return problems


def plan_experiment(experiment: Mapping[str, Any], aws: operations.Aws,
                    configuration: Mapping[str, Any] | None = None) -> tuple[list[str], list[str]]:  # fmt: skip
    """(lines saying what each activity would do, guardrail problems) — read-only AWS calls only."""
    configuration = resolved_configuration(experiment, configuration)
    lines: list[str] = []
    problems: list[str] = []
    for phase, activity, module, func, arguments in _drdrill_activities(experiment):
        name = activity.get("name")
        args = {k: literal(v, configuration) for k, v in arguments.items()}
        shown = ", ".join(f"{k}={v}" for k, v in args.items())
        if module == f"{PROVIDER_PREFIX}.actions" and func in operations.PLANS:
            try:
                planned = operations.PLANS[func](aws, **args)
            except DrdrillError as exc:
                lines.append(f"{phase:9} {name}: {func}({shown}) -> cannot plan: {exc}")
                problems.append(f"{phase} activity {name!r}: {exc}")
                continue
            refused = guardrails.problems(aws, func, planned)
            lines.append(f"{phase:9} {name}: {func}({shown})" + ("  REFUSED" if refused else ""))
            lines += [f"{'':9}   - [{op.aws_region}] {op.summary}" for op in planned]
            problems += [f"{phase} activity {name!r}: {p}" for p in refused]
        else:
            kind = ("probe" if activity.get("type") == "probe" else
                    "reverses the faults this run logged" if func in ("restore_mirror", "undo_faults")
                    else "no AWS change")
            doc = (getattr(getattr(importlib.import_module(module), func, None), "__doc__", "") or "")
            lines.append(f"{phase:9} {name}: {func}({shown}) ({kind}: {doc.strip().splitlines()[0] if doc else ''})")
    return lines, problems


def before_experiment_control(context: Experiment, configuration: Configuration = None,
                              secrets: Secrets = None, **kwargs: Any) -> None:  # fmt: skip
    """Refuse the experiment before anything runs: unknown names, or any action the guardrails refuse."""
    from drdrill.chaos.aws.actions import session

    join_chaostoolkit_run()
    try:
        aws = session(configuration, secrets)
        problems = experiment_problems(context, aws.mirror, configuration or {})
        if not problems:
            problems = plan_experiment(context, aws, configuration or {})[1]
    except DrdrillError as exc:
        problems = [str(exc)]
    if problems:
        raise InterruptExecution("drdrill pre-flight refused the experiment before any fault:\n  - "
                                 + "\n  - ".join(problems))
