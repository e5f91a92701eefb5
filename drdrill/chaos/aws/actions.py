"""Chaos Toolkit actions on the AWS mirror (verbs): faults, the DR runbook's steps, and their undoing.

The mirror is described by the experiment's ``aws_config`` configuration (a YAML path; empty =
``$DRDRILL_AWS_CONFIG``; see :mod:`drdrill.aws.config`); credentials come from boto3's chain or the
experiment's ``secrets``. Regions are the mirror's logical names (``primary``, ``dr``) and AZs their
letter, as on the local mirror, so the same features run on both targets.

Every action that changes AWS is planned, checked by the guardrails (account and region
allow-lists, the mirror tag on every resource, the blast radius) and only then carried out; a
refusal raises :class:`~drdrill.errors.GuardrailError` with nothing changed. Faults are logged
(``<state_dir>/faults.json``) and :func:`undo_faults` reverses them; :func:`restore_mirror` is every
experiment's rollback. Runbook steps are timed and can be manual, as on the local mirror
(``runbook_manual``, ``$DRDRILL_RUNBOOK_MANUAL``; they wait in ``<state_dir>/runbook``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaoslib.types import Configuration, Secrets

from drdrill import runbook
from drdrill.aws import operations
from drdrill.aws.config import AwsMirror, load_aws_config
from drdrill.aws.operations import Aws
from drdrill.chaos import http
from drdrill.chaos.http import CRITICAL
from drdrill.errors import TargetError, WaitTimeout
from drdrill.waiting import wait_until

__all__ = [
    "crash_az",
    "crash_region",
    "crash_service",
    "declare_disaster",
    "deploy_services",
    "detect_outage",
    "fail_over_database",
    "isolate_az",
    "isolate_region",
    "post_status_update",
    "promote_replica",
    "restore_mirror",
    "scale_down_region",
    "scale_up_region",
    "switch_dns",
    "undo_faults",
    "validate_critical_path",
    "wait_until_served",
]

log = logging.getLogger("drdrill")


def mirror_of(configuration: Configuration) -> AwsMirror:
    """The AWS mirror the configuration's ``aws_config`` (or ``$DRDRILL_AWS_CONFIG``) describes."""
    return load_aws_config((configuration or {}).get("aws_config") or None)


def session(configuration: Configuration, secrets: Secrets = None) -> Aws:
    return Aws(mirror_of(configuration), _aws_secrets(secrets))


def _aws_secrets(secrets: Secrets) -> Mapping[str, Any] | None:
    if not secrets:
        return None
    return secrets.get("aws", secrets) if isinstance(secrets, Mapping) else None


def _act(name: str, configuration: Configuration, secrets: Secrets, **arguments: Any) -> dict[str, Any]:
    aws = session(configuration, secrets)
    planned = operations.PLANS[name](aws, **arguments)
    results = operations.apply(aws, name, planned)
    return {"operations": [op.summary for op in planned], "results": results}


def _runbook_dir(configuration: Mapping[str, Any]) -> Path:
    configured = (configuration or {}).get("runbook_dir")
    return Path(configured) if configured else mirror_of(configuration).state_dir / "runbook"


def _step(name: str):
    return runbook.step_action(name, _runbook_dir)


# ---------------------------------------------------------------------------------------- faults


def crash_az(az: str, region: str = "primary", configuration: Configuration = None,
             secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """AZ power interruption: stop the AZ's instances and fail the RDS primary over if it is there."""
    return _act("crash_az", configuration, secrets, az=az, region=region)


def isolate_az(az: str, region: str = "primary", configuration: Configuration = None,
               secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Cut the AZ's subnets off with a deny-all network ACL."""
    return _act("isolate_az", configuration, secrets, az=az, region=region)


def crash_region(region: str = "primary", configuration: Configuration = None,
                 secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Region power loss: stop every instance of the region's VPC."""
    return _act("crash_region", configuration, secrets, region=region)


def isolate_region(region: str = "primary", configuration: Configuration = None,
                   secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Cut every subnet of the region's VPC off with a deny-all network ACL."""
    return _act("isolate_region", configuration, secrets, region=region)


def fail_over_database(region: str = "primary", configuration: Configuration = None,
                       secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Reboot the region's Multi-AZ RDS primary with forced failover (chaostoolkit-aws)."""
    return _act("fail_over_database", configuration, secrets, region=region)


def crash_service(service: str, region: str = "primary", configuration: Configuration = None,
                  secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Terminate the service's instances in its Auto Scaling group (which replaces them)."""
    return _act("crash_service", configuration, secrets, service=service, region=region)


def undo_faults(configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Reverse every logged fault (start stopped instances, give isolated subnets their ACL back)."""
    return operations.undo_faults(session(configuration, secrets))


def restore_mirror(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """The rollback of every experiment: undo the faults; a promoted DR database stays primary.

    A promotion cannot be undone: going back is the DR plan's failback (rebuild the primary region's
    database as a replica, switch over), which is not automated on AWS; the result says so.
    """
    aws = session(configuration, secrets)
    undone = operations.undo_faults(aws)
    promoted = []
    for name, region in aws.mirror.regions.items():
        if region.role == "dr" and not aws.database(region).get("ReadReplicaSourceDBInstanceIdentifier"):
            promoted.append(name)
    if promoted:
        log.warning("[aws] the DR database of %s is a primary now; fail back with the DR plan's failback "
                    "procedure before the next drill", ", ".join(promoted))
    return {"undone": undone, "promoted_regions": promoted}


def wait_until_served(services: list[str] | None = None, stable_s: float = 10.0, timeout_s: float = 600.0,
                      configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Wait until ``services`` (default: every one) are served through the mirror's endpoint for ``stable_s``.

    Not served by ``timeout_s``: returns ``served`` false (the steady-state check then deviates);
    see :func:`drdrill.chaos.http.wait_until_served`.
    """
    return http.wait_until_served(mirror_of(configuration).endpoint, services, stable_s=stable_s,
                                  timeout_s=timeout_s, interval_s=1.0)  # fmt: skip


# ------------------------------------------------------------------------------------- runbook


@_step("detect")
def detect_outage(services: list[str] | None = None, consecutive: int = 3, interval_s: float = 5.0,
                  timeout_s: float = 600.0, configuration: Configuration = None,
                  secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Monitoring: wait until a critical service fails ``consecutive`` checks in a row at the endpoint."""
    return http.detect_outage(mirror_of(configuration).endpoint, services, consecutive=consecutive,
                              interval_s=interval_s, timeout_s=timeout_s)  # fmt: skip


@_step("declare")
def declare_disaster(confirm_s: float = 60.0, services: list[str] | None = None,
                     configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """The Incident Commander declares the disaster once the outage persisted ``confirm_s`` (manual: on confirmation)."""
    aws = session(configuration, secrets)
    if "declare" in runbook.manual_steps(configuration or {}):
        operations.apply(aws, "declare", operations.plan_status(aws, "Regional disaster declared."))
        return {"declared": True, "by": "operator"}
    time.sleep(confirm_s)
    down = http.services_down(aws.mirror.endpoint, services or CRITICAL)
    if not down:
        raise TargetError(f"the outage did not persist after {confirm_s:g} s; not declaring a disaster")
    operations.apply(aws, "declare", operations.plan_status(aws, f"Regional disaster declared: {', '.join(down)} down."))
    return {"declared": True, "down": down}


@_step("scale-up")
def scale_up_region(region: str = "dr", configuration: Configuration = None,
                    secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Scale the DR region to production capacity (Auto Scaling groups, or ``runbook.scale_command``)."""
    return _act("scale_up_region", configuration, secrets, region=region)


@_step("promote")
def promote_replica(region: str = "dr", configuration: Configuration = None,
                    secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Promote the DR region's cross-region read replica to primary (a primary is only verified)."""
    return _act("promote_replica", configuration, secrets, region=region)


@_step("dns")
def switch_dns(to_region: str = "dr", configuration: Configuration = None,
               secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Route 53: all weight on ``to_region``'s weighted record."""
    return _act("switch_dns", configuration, secrets, to_region=to_region)


@_step("deploy")
def deploy_services(region: str = "dr", configuration: Configuration = None,
                    secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Trigger the deploy to the region (``runbook.deploy_command`` or ``deploy_webhook``)."""
    return _act("deploy_services", configuration, secrets, region=region)


@_step("validate")
def validate_critical_path(expect_region: str = "dr", timeout_s: float = 300.0,
                           configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Synthetic checks: every critical service answers at the region's own endpoint and at the mirror's."""
    mirror = mirror_of(configuration)
    region = mirror.region(expect_region)
    urls = [u for u in (region.endpoint, mirror.endpoint) if u]
    t0 = time.monotonic()

    def not_served() -> list[str]:
        views = {url: http.user_view(url, CRITICAL) for url in urls}
        return [f"{svc} at {url}" for url, view in views.items() for svc, v in view.items() if not v["served"]]

    try:
        wait_until(lambda: not not_served(), timeout_s=timeout_s, interval_s=2.0, what="validation")
    except WaitTimeout:
        raise TargetError(f"validation failed after {timeout_s:.0f} s: not served: "
                          f"{', '.join(not_served())}") from None
    return {"validated": urls, "after_s": round(time.monotonic() - t0, 3)}


@_step("notify")
def post_status_update(message: str = "We have failed over to our disaster-recovery region; "
                                      "service is restored.",
                       configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Post a status-page update (``runbook.status_command`` / ``status_webhook``; always the status-page log)."""
    aws = session(configuration, secrets)
    return {"results": operations.apply(aws, "notify", operations.plan_status(aws, message))}


@_step("scale-down")
def scale_down_region(region: str = "dr", configuration: Configuration = None,
                      secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Scale the DR region back to its pilot-light capacity."""
    return _act("scale_down_region", configuration, secrets, region=region)
