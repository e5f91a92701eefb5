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

The file is checked against the schema at the end of this module (pydantic, through
:mod:`drdrill.validation`): every problem is a ``file: field: problem`` line, unknown keys included.

AZs are named by their letter in experiments (``az: a`` is ``us-east-1a`` in a primary region in
us-east-1), so the same experiments and features run on every target.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator

from drdrill.errors import ConfigError
from drdrill.validation import (
    Problem,
    Schema,
    given,
    integer,
    mapping,
    names,
    non_empty,
    text,
    validate,
)

__all__ = ["AwsMirror", "AwsRegion", "CONFIG_ENV", "load_aws_config"]

CONFIG_ENV = "DRDRILL_AWS_CONFIG"


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


def aws_config_from_dict(data: Mapping[str, Any], source: str = "<memory>") -> AwsMirror:
    """Validate and build the mirror description; ConfigError naming the file and field."""
    schema = validate(_MirrorSchema, data, source)
    regions = {
        name: AwsRegion(
            name=name,
            aws_region=spec.aws_region,
            role=spec.role or name,
            vpc_id=spec.vpc_id,
            database=spec.database,
            autoscaling_groups=spec.autoscaling_groups,
            eks_nodegroups=spec.eks_nodegroups,
            services=dict(spec.services),
            target_groups=spec.target_groups,
            endpoint=spec.endpoint or "",
            dns_set_identifier=spec.dns_set_identifier or name,
            capacity=spec.capacity.model_dump(exclude_none=True),
        )
        for name, spec in schema.regions.items()
    }
    return AwsMirror(
        name=schema.name,
        allowed_accounts=schema.allowed_accounts,
        allowed_regions=schema.allowed_regions or tuple(sorted({r.aws_region for r in regions.values()})),
        mirror_tag=schema.mirror_tag,
        max_resources=schema.blast_radius.max_resources,
        endpoint=schema.endpoint.rstrip("/"),
        state_dir=Path(schema.state_dir or "reports/aws"),
        regions=regions,
        hosted_zone_id=schema.dns.hosted_zone_id,
        record_name=schema.dns.record_name,
        runbook=schema.runbook.model_dump(exclude_none=True),
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


# ------------------------------------------------------------------------------------ the schema


def _mirror_tag(value: Any) -> tuple[str, str]:
    if not isinstance(value, Mapping) or not value.get("key") or value.get("value") in (None, ""):
        raise Problem("required: {key, value} every resource drdrill changes must carry")
    return str(value["key"]), str(value["value"])


def _max_resources(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Problem(f"expected a positive count, got {value!r}")
    return value


def _nodegroups(groups: tuple[str, ...]) -> tuple[str, ...]:
    for i, group in enumerate(groups):
        if group.count("/") != 1:
            raise Problem(f"expected cluster/nodegroup, got {group!r}", i)
    return groups


def _command(value: Any) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise Problem("expected a command as a list of arguments")
    return value


def _bare_count(value: Any) -> Any:
    """``blast_radius: 25`` is short for ``blast_radius: {max_resources: 25}``."""
    return value if value is None or isinstance(value, Mapping) else {"max_resources": value}


_REQUIRED = text(required="")
_OPTIONAL = text()


class _CapacitySchema(Schema):
    pilot_light: Annotated[int, integer(0)] | None = None
    production: Annotated[int, integer(0)] | None = None


class _RegionSchema(Schema):
    aws_region: Annotated[str, _REQUIRED]
    role: Annotated[str, _OPTIONAL] | None = None  # None: the logical name
    vpc_id: Annotated[str, _REQUIRED]
    database: Annotated[str, _REQUIRED]
    autoscaling_groups: Annotated[tuple[str, ...], names()] = ()
    eks_nodegroups: Annotated[tuple[str, ...], names(), AfterValidator(_nodegroups)] = ()
    services: Annotated[dict[str, Annotated[str, _OPTIONAL]], BeforeValidator(mapping)] = {}
    target_groups: Annotated[tuple[str, ...], names()] = ()
    endpoint: Annotated[str, _OPTIONAL] | None = None
    dns_set_identifier: Annotated[str, _OPTIONAL] | None = None  # None: the logical name
    capacity: _CapacitySchema = _CapacitySchema()


class _BlastRadiusSchema(Schema):
    max_resources: Annotated[int, PlainValidator(_max_resources)] = 20


class _DnsSchema(Schema):
    hosted_zone_id: Annotated[str, _REQUIRED]
    record_name: Annotated[str, _REQUIRED]


class _RunbookSchema(Schema):
    scale_command: Annotated[list[Any], PlainValidator(_command)] | None = None
    deploy_command: Annotated[list[Any], PlainValidator(_command)] | None = None
    deploy_webhook: Annotated[str, _OPTIONAL] | None = None
    status_command: Annotated[list[Any], PlainValidator(_command)] | None = None
    status_webhook: Annotated[str, _OPTIONAL] | None = None


class _MirrorSchema(Schema):
    name: Annotated[str, _REQUIRED]
    allowed_accounts: Annotated[
        tuple[str, ...], names(), non_empty("required: the AWS account ids drdrill may act in")
    ] = Field(None, validate_default=True)
    allowed_regions: Annotated[tuple[str, ...], names()] = ()  # (): the regions below
    mirror_tag: Annotated[tuple[str, str], PlainValidator(_mirror_tag)] = Field(
        None, validate_default=True
    )
    blast_radius: Annotated[_BlastRadiusSchema, BeforeValidator(_bare_count)] = _BlastRadiusSchema()
    endpoint: Annotated[str, _REQUIRED]
    state_dir: Annotated[str, _OPTIONAL] | None = None  # None: reports/aws
    regions: Annotated[
        dict[str, _RegionSchema],
        BeforeValidator(mapping),
        given("required: logical name -> {aws_region, vpc_id, database, ...}"),
        non_empty("required: logical name -> {aws_region, vpc_id, database, ...}"),
    ] = Field(None, validate_default=True)
    dns: Annotated[_DnsSchema, given("required: {hosted_zone_id, record_name}")] = Field(
        None, validate_default=True
    )
    runbook: _RunbookSchema = _RunbookSchema()
