"""Chaos Toolkit probes of the AWS mirror (nouns): databases, replica lag, target health, serving region.

Read only; the mirror is found as in :mod:`drdrill.chaos.aws.actions` (``aws_config``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from chaoslib.types import Configuration, Secrets

from drdrill.chaos import http
from drdrill.chaos.aws.actions import mirror_of, session
from drdrill.chaos.http import CRITICAL

__all__ = ["database_status", "every_service_served", "replica_lag_s", "serving_region", "target_health"]


def database_status(region: str = "primary", configuration: Configuration = None,
                    secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """The region's RDS instance: status, Multi-AZ, AZ, and whose replica it is (None for a primary)."""
    aws = session(configuration, secrets)
    database = aws.database(aws.mirror.region(region))
    return {
        "db_instance": database["DBInstanceIdentifier"],
        "status": database.get("DBInstanceStatus"),
        "multi_az": bool(database.get("MultiAZ")),
        "az": database.get("AvailabilityZone"),
        "secondary_az": database.get("SecondaryAvailabilityZone"),
        "replica_of": database.get("ReadReplicaSourceDBInstanceIdentifier"),
    }


def replica_lag_s(region: str = "dr", window_s: float = 300.0, configuration: Configuration = None,
                  secrets: Secrets = None) -> float | None:  # fmt: skip
    """The replica's lag behind its primary in seconds (CloudWatch ``ReplicaLag``, the latest maximum
    in the last ``window_s``); None when CloudWatch has no datapoint."""
    aws = session(configuration, secrets)
    target = aws.mirror.region(region)
    now = dt.datetime.now(dt.UTC)
    stats = aws.client("cloudwatch", target.aws_region).get_metric_statistics(
        Namespace="AWS/RDS", MetricName="ReplicaLag",
        Dimensions=[{"Name": "DBInstanceIdentifier", "Value": target.database}],
        StartTime=now - dt.timedelta(seconds=window_s), EndTime=now + dt.timedelta(seconds=60),
        Period=60, Statistics=["Maximum"])  # fmt: skip
    points = sorted(stats.get("Datapoints", []), key=lambda p: p["Timestamp"])
    return float(points[-1]["Maximum"]) if points else None


def target_health(region: str = "primary", configuration: Configuration = None,
                  secrets: Secrets = None) -> dict[str, dict[str, int]]:  # fmt: skip
    """Per target group of the region: how many targets are ``healthy`` of how many."""
    aws = session(configuration, secrets)
    target = aws.mirror.region(region)
    elbv2 = aws.client("elbv2", target.aws_region)
    out = {}
    for group in target.target_groups:
        states = [d["TargetHealth"]["State"]
                  for d in elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]]
        out[group] = {"healthy": states.count("healthy"), "total": len(states)}
    return out


def serving_region(configuration: Configuration = None, secrets: Secrets = None) -> str | None:
    """The region Route 53 sends users to: the one whose weighted record has the highest weight (>0)."""
    aws = session(configuration, secrets)
    by_identifier = {r.dns_set_identifier: name for name, r in aws.mirror.regions.items()}
    records = [r for r in aws.weighted_records() if int(r.get("Weight") or 0) > 0]
    if not records:
        return None
    best = max(records, key=lambda r: int(r["Weight"]))
    return by_identifier.get(best["SetIdentifier"], best["SetIdentifier"])


def every_service_served(services: list[str] | None = None, configuration: Configuration = None,
                         secrets: Secrets = None) -> bool:  # fmt: skip
    """Whether every service (default: the critical ones) answers through the mirror's public endpoint."""
    return http.every_service_served(mirror_of(configuration).endpoint, services or CRITICAL)
