"""The aws target's model of a change, shared by its operations and its guardrails.

Terms:

resource    something an action changes: ``instance``, ``db-instance``, ``subnet``,
            ``autoscaling-group``, ``eks-nodegroup`` (``cluster/nodegroup``), ``hosted-zone``
            (id and AWS region)
operation   one change (or check) of an action: a summary saying exactly what it does, the AWS
            region, the resources it changes, and how it is applied; a fault operation also
            returns what :func:`drdrill.aws.operations.undo_faults` needs to reverse it
plan        the operations of one action, resolved with read-only calls (describe/list) through
            :class:`Aws`, the mirror's description with its boto3 clients

:mod:`drdrill.aws.operations` makes plans and applies them; :mod:`drdrill.aws.guardrails` checks
them. Both import this module, never each other's internals the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from drdrill.aws.config import AwsMirror, AwsRegion
from drdrill.errors import TargetError

__all__ = ["Aws", "Operation", "Resource"]


@dataclass(frozen=True)
class Resource:
    """An AWS resource an operation changes."""

    kind: str
    id: str
    aws_region: str

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.aws_region})"


@dataclass
class Operation:
    """One change or check of an action (see the module docstring)."""

    summary: str
    aws_region: str
    resources: tuple[Resource, ...]
    run: Callable[[], Any] = field(repr=False)
    fault: str | None = None  # the fault log kind when run() returns an undo record


class Aws:
    """The mirror's description and boto3 clients per AWS region (credentials from boto3's chain or secrets)."""

    def __init__(self, mirror: AwsMirror, secrets: Mapping[str, Any] | None = None) -> None:
        self.mirror = mirror
        self._credentials = {k: secrets[k] for k in ("aws_access_key_id", "aws_secret_access_key",
                                                     "aws_session_token") if secrets and secrets.get(k)}
        self._clients: dict[tuple[str, str], Any] = {}
        self.account: str | None = None

    def __repr__(self) -> str:  # never the credentials
        return f"Aws({self.mirror.name})"

    def client(self, service: str, aws_region: str) -> Any:
        key = (service, aws_region)
        if key not in self._clients:
            import boto3

            session = boto3.session.Session(region_name=aws_region, **self._credentials)
            self._clients[key] = session.client(service)
        return self._clients[key]

    def chaosaws_configuration(self, aws_region: str) -> dict[str, Any]:
        return {"aws_region": aws_region}

    def chaosaws_secrets(self) -> dict[str, Any] | None:
        return dict(self._credentials) or None

    # ------------------------------------------------------------------ lookups (read only)

    def instances(self, region: AwsRegion, az: str | None = None, ids: list[str] | None = None,
                  states: tuple[str, ...] = ("running",)) -> list[dict[str, Any]]:  # fmt: skip
        """The region VPC's instances (in ``az``, with ``ids``) in ``states``."""
        filters = [{"Name": "vpc-id", "Values": [region.vpc_id]},
                   {"Name": "instance-state-name", "Values": list(states)}]
        if az:
            filters.append({"Name": "availability-zone", "Values": [region.az(az)]})
        kwargs: dict[str, Any] = {"Filters": filters}
        if ids:
            kwargs["InstanceIds"] = ids
        pages = self.client("ec2", region.aws_region).get_paginator("describe_instances").paginate(**kwargs)
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]

    def subnets(self, region: AwsRegion, az: str | None = None) -> list[dict[str, Any]]:
        filters = [{"Name": "vpc-id", "Values": [region.vpc_id]}]
        if az:
            filters.append({"Name": "availability-zone", "Values": [region.az(az)]})
        return self.client("ec2", region.aws_region).describe_subnets(Filters=filters)["Subnets"]

    def database(self, region: AwsRegion) -> dict[str, Any]:
        rds = self.client("rds", region.aws_region)
        try:
            return rds.describe_db_instances(DBInstanceIdentifier=region.database)["DBInstances"][0]
        except rds.exceptions.DBInstanceNotFoundFault as exc:
            raise TargetError(f"RDS instance {region.database} of region {region.name} not found in "
                              f"{region.aws_region} ({self.mirror.source})") from exc  # fmt: skip

    def groups(self, region: AwsRegion, names: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
        if not names:
            return []
        found = self.client("autoscaling", region.aws_region).describe_auto_scaling_groups(
            AutoScalingGroupNames=list(names))["AutoScalingGroups"]
        missing = sorted(set(names) - {g["AutoScalingGroupName"] for g in found})
        if missing:
            raise TargetError(f"Auto Scaling group(s) {', '.join(missing)} of region {region.name} not "
                              f"found in {region.aws_region} ({self.mirror.source})")  # fmt: skip
        return found

    def nodegroup(self, region: AwsRegion, name: str) -> dict[str, Any]:
        """EKS managed node group ``cluster/nodegroup`` of the region."""
        cluster, nodegroup = name.split("/")
        eks = self.client("eks", region.aws_region)
        try:
            return eks.describe_nodegroup(clusterName=cluster, nodegroupName=nodegroup)["nodegroup"]
        except eks.exceptions.ResourceNotFoundException as exc:
            raise TargetError(f"EKS node group {name} of region {region.name} not found in "
                              f"{region.aws_region} ({self.mirror.source})") from exc  # fmt: skip

    def weighted_records(self) -> list[dict[str, Any]]:
        """The weighted records of the mirror's DNS name (one per region's set identifier)."""
        mirror = self.mirror
        route53 = self.client("route53", "us-east-1")
        name = mirror.record_name if mirror.record_name.endswith(".") else mirror.record_name + "."
        records = route53.list_resource_record_sets(HostedZoneId=mirror.hosted_zone_id, StartRecordName=name)
        found = [r for r in records["ResourceRecordSets"] if r["Name"] == name and "SetIdentifier" in r]
        if not found:
            raise TargetError(f"no weighted record {name} in hosted zone {mirror.hosted_zone_id} "
                              f"({mirror.source})")  # fmt: skip
        return found
