"""The aws target's guardrails: what must hold before drdrill changes anything in AWS.

Checked on the plan (:mod:`drdrill.aws.plan`) of every action (:mod:`drdrill.aws.operations`), before any change, and at
pre-flight for every action of an experiment (so a refusal comes before the first fault):

account        the caller's account (STS ``GetCallerIdentity``) is in ``allowed_accounts``
region         every operation's AWS region is in ``allowed_regions`` (Route 53 is global)
tag            every resource changed carries the mirror tag (``mirror_tag: {key, value}``)
blast radius   one action changes at most ``blast_radius.max_resources`` resources
"""

from __future__ import annotations

from typing import Any

from drdrill.aws.plan import Aws, Operation, Resource

__all__ = ["account_problems", "problems", "resource_tags"]


def account_problems(aws: Aws) -> list[str]:
    """The caller's account, when it is not allowed (cached per session)."""
    mirror = aws.mirror
    if aws.account is None:
        region = mirror.allowed_regions[0] if mirror.allowed_regions else "us-east-1"
        aws.account = str(aws.client("sts", region).get_caller_identity()["Account"])
    if aws.account not in mirror.allowed_accounts:
        return [f"account {aws.account} is not in allowed_accounts ({', '.join(mirror.allowed_accounts)}) "
                f"of {mirror.source}: these credentials belong to another account"]
    return []


def _tags(pairs: list[dict[str, Any]] | None) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in pairs or []}


def resource_tags(aws: Aws, resource: Resource) -> dict[str, str] | None:
    """The tags of ``resource`` (None when it does not exist)."""
    if resource.kind == "instance":
        found = aws.client("ec2", resource.aws_region).describe_instances(InstanceIds=[resource.id])
        instances = [i for r in found["Reservations"] for i in r["Instances"]]
        return _tags(instances[0].get("Tags")) if instances else None
    if resource.kind == "subnet":
        subnets = aws.client("ec2", resource.aws_region).describe_subnets(SubnetIds=[resource.id])["Subnets"]
        return _tags(subnets[0].get("Tags")) if subnets else None
    if resource.kind == "db-instance":
        rds = aws.client("rds", resource.aws_region)
        found = rds.describe_db_instances(DBInstanceIdentifier=resource.id)["DBInstances"]
        if not found:
            return None
        return _tags(rds.list_tags_for_resource(ResourceName=found[0]["DBInstanceArn"])["TagList"])
    if resource.kind == "autoscaling-group":
        groups = aws.client("autoscaling", resource.aws_region).describe_auto_scaling_groups(
            AutoScalingGroupNames=[resource.id])["AutoScalingGroups"]
        return _tags(groups[0].get("Tags")) if groups else None
    if resource.kind == "eks-nodegroup":
        cluster, nodegroup = resource.id.split("/")
        found = aws.client("eks", resource.aws_region).describe_nodegroup(clusterName=cluster,
                                                                         nodegroupName=nodegroup)  # fmt: skip
        return dict(found["nodegroup"].get("tags") or {})
    if resource.kind == "hosted-zone":
        zone = resource.id.split("/")[-1]
        found = aws.client("route53", "us-east-1").list_tags_for_resource(ResourceType="hostedzone",
                                                                         ResourceId=zone)  # fmt: skip
        return _tags(found["ResourceTagSet"].get("Tags"))
    raise ValueError(f"no tag lookup for {resource.kind}")


def problems(aws: Aws, action: str, operations: list[Operation]) -> list[str]:
    """Why ``action`` (planned as ``operations``) must not run; [] when every guardrail holds."""
    mirror = aws.mirror
    found = account_problems(aws)
    for operation in operations:
        if operation.aws_region != "global" and operation.aws_region not in mirror.allowed_regions:
            found.append(f"region {operation.aws_region} is not in allowed_regions "
                         f"({', '.join(mirror.allowed_regions)}): {operation.summary}")  # fmt: skip
    changed = list(dict.fromkeys(r for op in operations for r in op.resources))
    if len(changed) > mirror.max_resources:
        found.append(f"blast radius: {action} would change {len(changed)} resources, more than "
                     f"blast_radius.max_resources = {mirror.max_resources} ({mirror.source})")  # fmt: skip
    if found:  # no point looking up tags in a refused account or region
        return found
    key, value = mirror.mirror_tag
    for resource in changed:
        tags = resource_tags(aws, resource)
        if tags is None:
            found.append(f"{resource} does not exist")
        elif tags.get(key) != value:
            seen = f"its {key} is {tags[key]!r}" if key in tags else "it has no such tag"
            found.append(f"{resource} is not tagged {key}={value} ({seen}): not part of the mirror")
    return found
