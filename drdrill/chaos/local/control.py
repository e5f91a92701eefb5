"""Pre-flight for experiments on the local mirror: unknown regions, AZs, services and steps, refused first.

:func:`experiment_problems` reads an experiment's drdrill activities (provider modules under
``drdrill.chaos.local``) and names every argument that does not exist in the mirror's topology —
a region, an AZ, a service, a selector's kind, a ``degrade_link``'s link, delay, loss or bandwidth
— and every unknown manual runbook step, with the
activity and the valid choices. drdrill calls it before any fault (at collection, and again just
before the experiment runs); declared as a Chaos Toolkit control (``"controls": [{"name":
"drdrill-preflight", "provider": {"type": "python", "module": "drdrill.chaos.local.control"}}]``)
it refuses a plain ``chaos run`` the same way, before the steady-state hypothesis.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chaoslib.exceptions import InterruptExecution
from chaoslib.types import Configuration, Experiment, Secrets

from drdrill import runbook
from drdrill.chaos.preflight import (
    REGION_ARGUMENTS,
    activities,
    join_chaostoolkit_run,
    literal,
    resolved_configuration,
)
from drdrill.errors import DrdrillError, TargetError
from drdrill.mirror.topology import Topology, load_topology

__all__ = ["before_experiment_control", "experiment_problems", "join_chaostoolkit_run", "resolved_configuration"]

PROVIDER_PREFIX = "drdrill.chaos.local"


def experiment_problems(
    experiment: Mapping[str, Any],
    topology: Topology | None = None,
    configuration: Mapping[str, Any] | None = None,
) -> list[str]:
    """What in ``experiment`` names something the mirror does not have ([] when nothing does)."""
    topology = topology or load_topology()
    configuration = resolved_configuration(experiment, configuration)
    regions = {r.name: r for r in topology.regions}
    services = [s.name for s in topology.services]
    problems: list[str] = []
    for phase, activity in activities(experiment):
        provider = activity.get("provider") or {}
        if provider.get("type") != "python" or not str(provider.get("module", "")).startswith(
            PROVIDER_PREFIX
        ):
            continue
        where = f"{phase} activity {activity.get('name')!r}"
        args = {k: literal(v, configuration) for k, v in (provider.get("arguments") or {}).items()}
        for key in REGION_ARGUMENTS:
            value = args.get(key)
            if isinstance(value, str) and not value.startswith("${") and value not in regions:
                problems.append(f"{where}: no region {value!r} ({key}); regions are "
                                f"{', '.join(regions)}")  # fmt: skip
        region = regions.get(str(args.get("region", topology.primary.name)))
        az = args.get("az")
        if az is not None and region is not None and az not in region.azs:
            problems.append(f"{where}: no AZ {az!r} in region {region.name}; AZs are "
                            f"{', '.join(region.azs)}")  # fmt: skip
        named = [args["service"]] if isinstance(args.get("service"), str) else []
        named += list(args.get("services") or []) if isinstance(args.get("services"), list) else []
        for svc in named:
            if svc not in services and not str(svc).startswith("${"):
                problems.append(f"{where}: no service {svc!r}; services are {', '.join(services)}")
        target = args.get("target")
        if isinstance(target, str) and not target.startswith("${"):
            problems += [f"{where}: {p}" for p in _selector_problems(target, topology)]
        if provider.get("func") == "degrade_link":
            problems += [f"{where}: {p}" for p in _link_problems(args)]
    try:
        runbook.manual_steps(configuration)
    except DrdrillError as exc:
        problems.append(str(exc))
    return problems


def _link_problems(args: Mapping[str, Any]) -> list[str]:
    """A degrade_link's unknown link, negative delay, loss outside 0..100, bandwidth without unit."""
    from drdrill.mirror.links import check_degradation

    given = {k: v for k, v in args.items() if not (isinstance(v, str) and v.startswith("${"))}
    return check_degradation(given.get("link", "wan"), given.get("delay_ms"), given.get("loss_pct"),
                             given.get("bandwidth"), given.get("jitter_ms"))  # fmt: skip


def _selector_problems(text: str, topology: Topology) -> list[str]:
    from drdrill.mirror.faults import ROLES, parse_selector

    try:
        sel = parse_selector(text)
    except TargetError as exc:
        return [str(exc)]
    regions = {r.name: r for r in topology.regions}
    if sel.region not in regions:
        return [f"selector {text!r}: no region {sel.region!r}; regions are {', '.join(regions)}"]
    region = regions[sel.region]
    if sel.kind == "az" and sel.value not in region.azs:
        return [f"selector {text!r}: no AZ {sel.value!r}; AZs are {', '.join(region.azs)}"]
    if sel.kind == "service" and sel.value not in region.replicas:
        return [f"selector {text!r}: no service {sel.value!r}; services are "
                f"{', '.join(region.replicas)}"]  # fmt: skip
    if sel.kind == "role" and sel.value not in ROLES:
        return [f"selector {text!r}: no role {sel.value!r}; roles are {', '.join(ROLES)}"]
    return []


def before_experiment_control(
    context: Experiment,
    configuration: Configuration = None,
    secrets: Secrets = None,
    **kwargs: Any,
) -> None:
    """Refuse the experiment before anything runs when it names what the mirror does not have.

    Under a plain ``chaos run``, drdrill's progress lines also go to chaostoolkit's console and log,
    and SIGTERM stops the method and rolls back as Ctrl-C does.
    """
    from drdrill.mirror.state import load_state

    join_chaostoolkit_run()

    topology = None
    path = (configuration or {}).get("mirror_state") or None
    try:
        topology = load_topology(load_state(path).data["topology"])
    except DrdrillError:
        topology = load_topology()
    problems = experiment_problems(context, topology, configuration or {})
    if problems:
        raise InterruptExecution(
            "drdrill pre-flight refused the experiment before any fault:\n  - "
            + "\n  - ".join(problems)
        )
