"""The AWS mirror's description: where its resources are, and the guardrails drdrill must respect there.

A YAML file (``--aws-config FILE``, or ``$DRDRILL_AWS_CONFIG``; example: ``examples/aws-mirror.yaml``)
with these keys (``*`` = required):

``name``*               the mirror's name (reports)
``allowed_accounts``*   AWS account ids drdrill may act in (the caller's account must be one)
``allowed_regions``     AWS regions drdrill may act in (default: the regions below)
``mirror_tag``*         ``{key, value}``: every resource drdrill changes must carry this tag
``blast_radius``        ``{max_resources}``: most resources one action may change (default 20)
``endpoint``*           the public entry users reach (Route 53 name): synthetic traffic and the final
                        read go there (``/_lookup``, as on every target)
``state_dir``           where the fault log, runbook directory and status updates are kept
                        (default ``reports/aws``)
``regions``*            logical name (``primary``, ``dr``) -> region:
    ``aws_region``*     e.g. ``us-east-1``
    ``role``            ``primary`` | ``dr`` (default: the logical name)
    ``vpc_id``*         the VPC whose subnets an isolation cuts off
    ``database``*       the RDS instance id (primary: Multi-AZ; dr: the cross-region read replica)
    ``autoscaling_groups``  the service fleet's Auto Scaling groups
    ``eks_nodegroups``  the service fleet's EKS managed node groups, as ``cluster/nodegroup``
    ``services``        service -> Auto Scaling group that runs it (service failure)
    ``target_groups``   ALB target group ARNs (target health)
    ``endpoint``        the region's own entry (its ALB): validation checks it
    ``dns_set_identifier``  the Route 53 weighted record of the region (default: the logical name)
    ``capacity``        ``{pilot_light, production}``: desired instances per Auto Scaling group
``dns``*                ``{hosted_zone_id, record_name}``: the weighted records DNS failover changes
``runbook``             ``scale_command`` (argv, replaces the Auto Scaling update, e.g. Terraform),
                        ``deploy_command`` (argv) or ``deploy_webhook`` (URL), ``status_command``
                        (argv; the message is its last argument) or ``status_webhook`` (URL)

AZs are named by their letter in experiments (``az: a`` is ``us-east-1a`` in a primary region in
us-east-1), so the same experiments and features run on every target.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drdrill.errors import ConfigError

__all__ = ["AwsMirror", "AwsRegion", "CONFIG_ENV", "load_aws_config"]

CONFIG_ENV = "DRDRILL_AWS_CONFIG"
_TOP = {"name", "allowed_accounts", "allowed_regions", "mirror_tag", "blast_radius", "endpoint",
        "state_dir", "regions", "dns", "runbook"}
_REGION = {"aws_region", "role", "vpc_id", "database", "autoscaling_groups", "eks_nodegroups", "services",
           "target_groups",
           "endpoint", "dns_set_identifier", "capacity"}
_RUNBOOK = {"scale_command", "deploy_command", "deploy_webhook", "status_command", "status_webhook"}


@dataclass(frozen=True)
class AwsRegion:
    """One region of the mirror (see the module docstring)."""

    name: str
    aws_region: str
    role: str
    vpc_id: str
    database: str
    autoscaling_groups: tuple[str, ...] = ()
    eks_nodegroups: tuple[str, ...] = ()
    services: Mapping[str, str] = field(default_factory=dict)
    target_groups: tuple[str, ...] = ()
    endpoint: str = ""
    dns_set_identifier: str = ""
    capacity: Mapping[str, int] = field(default_factory=dict)

    def az(self, letter: str) -> str:
        """The AWS AZ name of AZ ``letter`` (``a`` -> ``us-east-1a``); a full name is kept."""
        return letter if letter.startswith(self.aws_region) else f"{self.aws_region}{letter}"


@dataclass(frozen=True)
class AwsMirror:
    """The AWS mirror environment and its guardrails (see the module docstring)."""

    name: str
    allowed_accounts: tuple[str, ...]
    allowed_regions: tuple[str, ...]
    mirror_tag: tuple[str, str]
    max_resources: int
    endpoint: str
    state_dir: Path
    regions: Mapping[str, AwsRegion]
    hosted_zone_id: str
    record_name: str
    runbook: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<memory>"

    def region(self, name: str) -> AwsRegion:
        """Logical region ``name``; ConfigError naming the known ones otherwise."""
        if name not in self.regions:
            raise ConfigError(f"unknown region {name!r} in the AWS mirror {self.source}; "
                              f"regions are {', '.join(self.regions)}")  # fmt: skip
        return self.regions[name]


def _fail(source: str, where: str, message: str) -> ConfigError:
    return ConfigError(f"{source}: {where}: {message}")


def _strings(value: Any, source: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise _fail(source, where, f"expected a list of names, got {value!r}")
    return tuple(str(v) for v in value)


def _text(data: Mapping[str, Any], key: str, source: str, where: str, required: bool = True) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise _fail(source, f"{where}{key}", "required")
        return ""
    if not isinstance(value, str | int):
        raise _fail(source, f"{where}{key}", f"expected text, got {value!r}")
    return str(value)


def _unknown(data: Mapping[str, Any], known: set[str], source: str, where: str) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise _fail(source, where or "top level", f"unknown key(s) {', '.join(extra)}; "
                                                  f"expected {', '.join(sorted(known))}")  # fmt: skip


def aws_config_from_dict(data: Mapping[str, Any], source: str = "<memory>") -> AwsMirror:
    """Validate and build the mirror description; ConfigError naming the file and field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    _unknown(data, _TOP, source, "")
    accounts = _strings(data.get("allowed_accounts"), source, "allowed_accounts")
    if not accounts:
        raise _fail(source, "allowed_accounts", "required: the AWS account ids drdrill may act in")
    tag = data.get("mirror_tag")
    if not isinstance(tag, Mapping) or not tag.get("key") or tag.get("value") in (None, ""):
        raise _fail(source, "mirror_tag", "required: {key, value} every resource drdrill changes must carry")
    blast = data.get("blast_radius") or {}
    max_resources = blast.get("max_resources", 20) if isinstance(blast, Mapping) else blast
    if isinstance(max_resources, bool) or not isinstance(max_resources, int) or max_resources < 1:
        raise _fail(source, "blast_radius.max_resources", f"expected a positive count, got {max_resources!r}")
    regions_data = data.get("regions")
    if not isinstance(regions_data, Mapping) or not regions_data:
        raise _fail(source, "regions", "required: logical name -> {aws_region, vpc_id, database, ...}")
    regions = {}
    for name, spec in regions_data.items():
        where = f"regions.{name}."
        if not isinstance(spec, Mapping):
            raise _fail(source, f"regions.{name}", "expected a mapping")
        _unknown(spec, _REGION, source, f"regions.{name}")
        services = spec.get("services") or {}
        capacity = spec.get("capacity") or {}
        if not isinstance(services, Mapping) or not isinstance(capacity, Mapping):
            raise _fail(source, f"regions.{name}", "services and capacity are mappings")
        for group in spec.get("eks_nodegroups") or []:
            if not isinstance(group, str) or group.count("/") != 1:
                raise _fail(source, f"{where}eks_nodegroups", f"expected cluster/nodegroup, got {group!r}")
        for key, value in capacity.items():
            if key not in ("pilot_light", "production") or isinstance(value, bool) or not isinstance(value, int):
                raise _fail(source, f"{where}capacity.{key}", "expected pilot_light / production: a count")
        regions[str(name)] = AwsRegion(
            name=str(name),
            aws_region=_text(spec, "aws_region", source, where),
            role=_text(spec, "role", source, where, required=False) or str(name),
            vpc_id=_text(spec, "vpc_id", source, where),
            database=_text(spec, "database", source, where),
            autoscaling_groups=_strings(spec.get("autoscaling_groups"), source, f"{where}autoscaling_groups"),
            eks_nodegroups=_strings(spec.get("eks_nodegroups"), source, f"{where}eks_nodegroups"),
            services={str(k): str(v) for k, v in services.items()},
            target_groups=_strings(spec.get("target_groups"), source, f"{where}target_groups"),
            endpoint=_text(spec, "endpoint", source, where, required=False),
            dns_set_identifier=_text(spec, "dns_set_identifier", source, where, required=False) or str(name),
            capacity={str(k): int(v) for k, v in capacity.items()},
        )  # fmt: skip
    allowed_regions = _strings(data.get("allowed_regions"), source, "allowed_regions") or tuple(
        sorted({r.aws_region for r in regions.values()}))
    dns = data.get("dns")
    if not isinstance(dns, Mapping):
        raise _fail(source, "dns", "required: {hosted_zone_id, record_name}")
    runbook = data.get("runbook") or {}
    if not isinstance(runbook, Mapping):
        raise _fail(source, "runbook", "expected a mapping")
    _unknown(runbook, _RUNBOOK, source, "runbook")
    for key in ("scale_command", "deploy_command", "status_command"):
        if key in runbook and not (isinstance(runbook[key], list) and runbook[key]):
            raise _fail(source, f"runbook.{key}", "expected a command as a list of arguments")
    return AwsMirror(
        name=_text(data, "name", source, ""),
        allowed_accounts=accounts,
        allowed_regions=allowed_regions,
        mirror_tag=(str(tag["key"]), str(tag["value"])),
        max_resources=max_resources,
        endpoint=_text(data, "endpoint", source, "").rstrip("/"),
        state_dir=Path(str(data.get("state_dir") or "reports/aws")),
        regions=regions,
        hosted_zone_id=_text(dns, "hosted_zone_id", source, "dns."),
        record_name=_text(dns, "record_name", source, "dns."),
        runbook=dict(runbook),
        source=source,
    )


def load_aws_config(path: str | os.PathLike[str] | None = None) -> AwsMirror:
    """The AWS mirror described in ``path`` (default ``$DRDRILL_AWS_CONFIG``)."""
    from drdrill.config import read_yaml

    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        raise ConfigError(f"the aws target needs its mirror's description: --aws-config FILE or ${CONFIG_ENV} "
                          "(example: examples/aws-mirror.yaml)")  # fmt: skip
    return aws_config_from_dict(read_yaml(path, "the AWS mirror config"), str(path))
