"""What the aws target does to AWS: every action is resolved into a plan, checked, then carried out.

The terms (resource, operation, plan) and the :class:`Aws` session are :mod:`drdrill.aws.plan`'s.
A fault operation's undo record is kept in the fault log (``<state_dir>/faults.json``).

Every action goes plan -> :func:`drdrill.aws.guardrails.problems` -> apply: when the guardrails
refuse, :class:`~drdrill.errors.GuardrailError` is raised and nothing is changed. A dry run prints
the plans and stops there. Faults and runbook operations use chaostoolkit-aws where it has the
action (stop/start/terminate instances, rebooting RDS with failover) and boto3 where it does not
(network ACLs, Auto Scaling capacity, replica promotion, Route 53 weights).

Credentials come from boto3's usual chain (environment, profile, role) or the experiment's
``secrets``; they are never written anywhere (see :func:`drdrill.chaos.runner.redact`).
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from drdrill.aws.config import AwsMirror, AwsRegion
from drdrill.aws.guardrails import problems
from drdrill.aws.plan import Aws, Operation, Resource
from drdrill.errors import GuardrailError, TargetError

__all__ = ["Aws", "Operation", "Resource", "apply", "undo_faults"]

log = logging.getLogger("drdrill")
FAULT_TAG = "drdrill:fault"


# ---------------------------------------------------------------------------- the fault log


def _fault_log(mirror: AwsMirror) -> Path:
    return mirror.state_dir / "faults.json"


def _record_fault(mirror: AwsMirror, entry: dict[str, Any]) -> None:
    path = _fault_log(mirror)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = json.loads(path.read_text()) if path.is_file() else []
    entries.append(entry)
    path.write_text(json.dumps(entries, indent=2))


def apply(aws: Aws, action: str, operations: list[Operation]) -> list[Any]:
    """Check ``operations`` against the guardrails, then run them in order; their results.

    GuardrailError (nothing changed) when the guardrails refuse.
    """
    refused = problems(aws, action, operations)
    if refused:
        raise GuardrailError(f"{action} refused by the guardrails, nothing was changed:\n  - "
                             + "\n  - ".join(refused))
    results = []
    for operation in operations:
        log.info("[aws] %s", operation.summary)
        result = operation.run()
        if operation.fault:
            _record_fault(aws.mirror, {"kind": operation.fault, "aws_region": operation.aws_region,
                                       "at_s": time.time(), **result})  # fmt: skip
        results.append(result)
    return results


def undo_faults(aws: Aws) -> list[str]:
    """Reverse every logged fault, newest first (start stopped instances, give subnets their ACL back)."""
    path = _fault_log(aws.mirror)
    entries = json.loads(path.read_text()) if path.is_file() else []
    done = []
    for entry in reversed(entries):
        region = entry["aws_region"]
        if entry["kind"] == "stopped-instances":
            from chaosaws.ec2.actions import start_instances

            start_instances(instance_ids=entry["instance_ids"], configuration=aws.chaosaws_configuration(region),
                            secrets=aws.chaosaws_secrets())  # fmt: skip
            done.append(f"started {len(entry['instance_ids'])} instance(s) in {region}")
        elif entry["kind"] == "isolated-subnets":
            ec2 = aws.client("ec2", region)
            for subnet, original_acl in entry["original_acls"].items():
                association = _acl_association(ec2, subnet)
                ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=original_acl)
            ec2.delete_network_acl(NetworkAclId=entry["deny_acl"])
            done.append(f"restored the network ACL of {len(entry['original_acls'])} subnet(s) in {region}")
    path.unlink(missing_ok=True)
    for line in done:
        log.info("[aws] undo: %s", line)
    return done


# ---------------------------------------------------------------------------- fault plans


def _ids(instances: list[dict[str, Any]]) -> list[str]:
    return sorted(i["InstanceId"] for i in instances)


def _stop(aws: Aws, region: AwsRegion, instances: list[dict[str, Any]], where: str) -> Operation:
    ids = _ids(instances)

    def run() -> dict[str, Any]:
        from chaosaws.ec2.actions import stop_instances

        stop_instances(instance_ids=ids, force=True, configuration=aws.chaosaws_configuration(region.aws_region),
                       secrets=aws.chaosaws_secrets())  # fmt: skip
        return {"instance_ids": ids}

    return Operation(f"stop {len(ids)} instance(s) {where}: {', '.join(ids)}", region.aws_region,
                     tuple(Resource("instance", i, region.aws_region) for i in ids), run,
                     fault="stopped-instances")  # fmt: skip


def plan_crash_az(aws: Aws, region_name: str, az: str) -> list[Operation]:
    """AZ power interruption: stop the AZ's instances; fail the RDS primary over if it lives there."""
    region = aws.mirror.region(region_name)
    operations = []
    instances = aws.instances(region, az)
    if instances:
        operations.append(_stop(aws, region, instances, f"in {region.az(az)} of {region.vpc_id}"))
    database = aws.database(region)
    if database.get("AvailabilityZone") == region.az(az):
        if database.get("MultiAZ"):
            operations += plan_fail_over_database(aws, region_name)
        else:  # nothing to fail over to: AWS restores a single-AZ instance in place
            operations.append(Operation(f"leave RDS instance {region.database} alone: single-AZ in "
                                        f"{region.az(az)}, it has no standby to fail over to",
                                        region.aws_region, (), lambda: {"db_instance": "unchanged"}))
    if not operations:
        raise TargetError(f"nothing runs in {region.az(az)} of region {region_name} ({region.vpc_id}): "
                          "no instance and not the database; check the AZ")  # fmt: skip
    return operations


def plan_crash_region(aws: Aws, region_name: str) -> list[Operation]:
    """Region power loss: stop every instance of the region's VPC (RDS keeps its replica, so it stays up)."""
    region = aws.mirror.region(region_name)
    instances = aws.instances(region)
    if not instances:
        raise TargetError(f"no running instance in {region.vpc_id} of region {region_name}")
    return [_stop(aws, region, instances, f"of {region.vpc_id}")]


def plan_fail_over_database(aws: Aws, region_name: str) -> list[Operation]:
    """Database failover: reboot the Multi-AZ RDS primary with forced failover to its standby."""
    region = aws.mirror.region(region_name)
    database = aws.database(region)
    if not database.get("MultiAZ"):
        raise TargetError(f"RDS instance {region.database} is not Multi-AZ: a forced failover would only "
                          "restart it; drill a Multi-AZ database")  # fmt: skip

    def run() -> dict[str, Any]:
        from chaosaws.rds.actions import reboot_db_instance

        reboot_db_instance(db_instance_identifier=region.database, force_failover=True,
                           configuration=aws.chaosaws_configuration(region.aws_region),
                           secrets=aws.chaosaws_secrets())  # fmt: skip
        return {"db_instance": region.database, "from_az": database.get("AvailabilityZone")}

    return [Operation(f"reboot RDS instance {region.database} with forced failover (now in "
                      f"{database.get('AvailabilityZone')}, standby in {database.get('SecondaryAvailabilityZone')})",
                      region.aws_region, (Resource("db-instance", region.database, region.aws_region),), run)]


def _acl_association(ec2: Any, subnet: str) -> str:
    acls = ec2.describe_network_acls(Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])
    for acl in acls["NetworkAcls"]:
        for association in acl["Associations"]:
            if association["SubnetId"] == subnet:
                return association["NetworkAclAssociationId"]
    raise TargetError(f"subnet {subnet} has no network ACL association")


def plan_isolate(aws: Aws, region_name: str, az: str | None = None) -> list[Operation]:
    """Isolation: give the subnets (of ``az``, or all) of the region's VPC a deny-all network ACL."""
    region = aws.mirror.region(region_name)
    subnets = sorted(s["SubnetId"] for s in aws.subnets(region, az))
    if not subnets:
        raise TargetError(f"no subnet in {region.vpc_id}" + (f" in {region.az(az)}" if az else ""))
    key, value = aws.mirror.mirror_tag

    def run() -> dict[str, Any]:
        ec2 = aws.client("ec2", region.aws_region)
        acl = ec2.create_network_acl(VpcId=region.vpc_id, TagSpecifications=[{
            "ResourceType": "network-acl",
            "Tags": [{"Key": key, "Value": value}, {"Key": FAULT_TAG, "Value": "isolation"}]}])
        deny = acl["NetworkAcl"]["NetworkAclId"]
        for egress in (False, True):
            ec2.create_network_acl_entry(NetworkAclId=deny, RuleNumber=1, Protocol="-1", RuleAction="deny",
                                         Egress=egress, CidrBlock="0.0.0.0/0")  # fmt: skip
        original = {}
        for subnet in subnets:
            association = _acl_association(ec2, subnet)
            acls = ec2.describe_network_acls(Filters=[{"Name": "association.association-id",
                                                       "Values": [association]}])["NetworkAcls"]
            original[subnet] = acls[0]["NetworkAclId"]
            ec2.replace_network_acl_association(AssociationId=association, NetworkAclId=deny)
        return {"deny_acl": deny, "original_acls": original}

    where = f"{region.az(az)} of {region.vpc_id}" if az else f"{region.vpc_id}"
    return [Operation(f"cut off {len(subnets)} subnet(s) of {where} with a deny-all network ACL "
                      f"(ingress and egress): {', '.join(subnets)}", region.aws_region,
                      tuple(Resource("subnet", s, region.aws_region) for s in subnets), run,
                      fault="isolated-subnets")]  # fmt: skip


def plan_crash_service(aws: Aws, service: str, region_name: str) -> list[Operation]:
    """Service failure: terminate the service's instances; its Auto Scaling group replaces them."""
    region = aws.mirror.region(region_name)
    if service not in region.services:
        raise TargetError(f"service {service!r} has no Auto Scaling group in region {region_name} "
                          f"({aws.mirror.source}: regions.{region_name}.services); known: "
                          f"{', '.join(region.services) or 'none'}")  # fmt: skip
    (group,) = aws.groups(region, [region.services[service]])
    ids = sorted(i["InstanceId"] for i in group["Instances"] if i.get("LifecycleState") == "InService")
    if not ids:
        raise TargetError(f"Auto Scaling group {group['AutoScalingGroupName']} of {service} has no instance in service")

    def run() -> dict[str, Any]:
        autoscaling = aws.client("autoscaling", region.aws_region)
        for instance in ids:
            autoscaling.terminate_instance_in_auto_scaling_group(InstanceId=instance,
                                                                 ShouldDecrementDesiredCapacity=False)
        return {"terminated": ids, "group": group["AutoScalingGroupName"]}

    return [Operation(f"terminate the {len(ids)} instance(s) of {service} in Auto Scaling group "
                      f"{group['AutoScalingGroupName']} (it replaces them): {', '.join(ids)}",
                      region.aws_region, tuple(Resource("instance", i, region.aws_region) for i in ids), run)]


# ---------------------------------------------------------------------------- runbook plans


def _command(argv: list[str], what: str, timeout_s: float = 1800.0) -> dict[str, Any]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise TargetError(f"{what}: `{' '.join(argv)}` exited {result.returncode}: {result.stderr.strip()[-500:]}")
    return {"command": argv[0], "exit": 0}


def _post(url: str, payload: dict[str, Any], what: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return {"webhook_status": response.status}
    except OSError as exc:
        raise TargetError(f"{what}: POST {url} failed: {exc}") from exc


def plan_scale(aws: Aws, region_name: str, size: str) -> list[Operation]:
    """Scale the region's Auto Scaling groups and EKS node groups to ``size`` (``production`` or
    ``pilot_light``), or run the configured ``runbook.scale_command`` (with ``size`` appended)."""
    region = aws.mirror.region(region_name)
    command = aws.mirror.runbook.get("scale_command")
    if command:
        argv = [*command, size]
        return [Operation(f"run the scale command: {' '.join(argv)}", region.aws_region, (),
                          lambda: _command(argv, "scale"))]
    if size not in region.capacity:
        raise TargetError(f"region {region_name} has no capacity.{size} in {aws.mirror.source} (and no "
                          "runbook.scale_command)")  # fmt: skip
    desired = region.capacity[size]
    groups = aws.groups(region, region.autoscaling_groups)
    nodegroups = [aws.nodegroup(region, name) for name in region.eks_nodegroups]
    if not groups and not nodegroups:
        raise TargetError(f"region {region_name} lists no autoscaling_groups or eks_nodegroups in "
                          f"{aws.mirror.source}")  # fmt: skip
    operations = []
    if groups:
        names = [g["AutoScalingGroupName"] for g in groups]

        def scale_groups() -> dict[str, Any]:
            autoscaling = aws.client("autoscaling", region.aws_region)
            for group in groups:
                autoscaling.update_auto_scaling_group(
                    AutoScalingGroupName=group["AutoScalingGroupName"], DesiredCapacity=desired,
                    MinSize=min(group["MinSize"], desired), MaxSize=max(group["MaxSize"], desired))
            return {"groups": names, "desired": desired}

        current = ", ".join(f"{g['AutoScalingGroupName']} {g['DesiredCapacity']}" for g in groups)
        operations.append(Operation(
            f"set the desired capacity of {', '.join(names)} to {desired} ({size}; now {current})",
            region.aws_region, tuple(Resource("autoscaling-group", n, region.aws_region) for n in names),
            scale_groups))
    if nodegroups:
        names = list(region.eks_nodegroups)

        def scale_nodegroups() -> dict[str, Any]:
            eks = aws.client("eks", region.aws_region)
            for name, group in zip(names, nodegroups, strict=True):
                cluster, nodegroup = name.split("/")
                scaling = group.get("scalingConfig") or {}
                eks.update_nodegroup_config(clusterName=cluster, nodegroupName=nodegroup, scalingConfig={
                    "desiredSize": desired, "minSize": min(scaling.get("minSize", desired), desired),
                    "maxSize": max(scaling.get("maxSize", desired), desired)})
            return {"nodegroups": names, "desired": desired}

        current = ", ".join(f"{n} {(g.get('scalingConfig') or {}).get('desiredSize')}"
                            for n, g in zip(names, nodegroups, strict=True))  # fmt: skip
        operations.append(Operation(
            f"set the desired size of EKS node group(s) {', '.join(names)} to {desired} ({size}; now {current})",
            region.aws_region, tuple(Resource("eks-nodegroup", n, region.aws_region) for n in names),
            scale_nodegroups))
    return operations


def plan_promote(aws: Aws, region_name: str) -> list[Operation]:
    """Promote the region's cross-region read replica to a standalone primary (a primary is only verified)."""
    region = aws.mirror.region(region_name)
    database = aws.database(region)
    source = database.get("ReadReplicaSourceDBInstanceIdentifier")
    if not source:
        return [Operation(f"verify RDS instance {region.database} is already a primary (no change)",
                          region.aws_region, (), lambda: {"promoted": False, "already_primary": True})]

    def run() -> dict[str, Any]:
        aws.client("rds", region.aws_region).promote_read_replica(DBInstanceIdentifier=region.database)
        return {"promoted": True, "was_replica_of": source}

    return [Operation(f"promote RDS read replica {region.database} (replica of {source}) to primary",
                      region.aws_region, (Resource("db-instance", region.database, region.aws_region),), run)]


def plan_dns(aws: Aws, to_region: str) -> list[Operation]:
    """Route 53: weight 100 on ``to_region``'s weighted record, 0 on the others."""
    mirror = aws.mirror
    target = mirror.region(to_region)
    records = aws.weighted_records()
    identifiers = {r["SetIdentifier"] for r in records}
    if target.dns_set_identifier not in identifiers:
        raise TargetError(f"no weighted record with set identifier {target.dns_set_identifier!r} for "
                          f"{mirror.record_name} (found {', '.join(sorted(identifiers))})")  # fmt: skip
    weights = {r["SetIdentifier"]: (100 if r["SetIdentifier"] == target.dns_set_identifier else 0)
               for r in records}  # fmt: skip

    def run() -> dict[str, Any]:
        changes = [{"Action": "UPSERT", "ResourceRecordSet": {**r, "Weight": weights[r["SetIdentifier"]]}}
                   for r in records]  # fmt: skip
        aws.client("route53", "us-east-1").change_resource_record_sets(
            HostedZoneId=mirror.hosted_zone_id, ChangeBatch={"Comment": f"drdrill: DNS to {to_region}",
                                                             "Changes": changes})  # fmt: skip
        return {"weights": weights}

    before = ", ".join(f"{r['SetIdentifier']} {r.get('Weight')}" for r in records)
    after = ", ".join(f"{k} {v}" for k, v in weights.items())
    return [Operation(f"set the Route 53 weights of {mirror.record_name} in zone {mirror.hosted_zone_id} to "
                      f"{after} (now {before})", "global",
                      (Resource("hosted-zone", mirror.hosted_zone_id, "global"),), run)]  # fmt: skip


def plan_deploy(aws: Aws, region_name: str) -> list[Operation]:
    """Trigger the deploy to the region: ``runbook.deploy_command`` (region appended) or ``deploy_webhook``."""
    region = aws.mirror.region(region_name)
    runbook = aws.mirror.runbook
    if runbook.get("deploy_command"):
        argv = [*runbook["deploy_command"], region_name]
        return [Operation(f"run the deploy command: {' '.join(argv)}", region.aws_region, (),
                          lambda: _command(argv, "deploy"))]
    if runbook.get("deploy_webhook"):
        url = runbook["deploy_webhook"]
        return [Operation(f"POST the deploy webhook {url} (region {region_name})", region.aws_region, (),
                          lambda: _post(url, {"region": region_name, "mirror": aws.mirror.name}, "deploy"))]
    raise TargetError(f"no deploy configured: set runbook.deploy_command or runbook.deploy_webhook in "
                      f"{aws.mirror.source}")  # fmt: skip


def plan_status(aws: Aws, message: str) -> list[Operation]:
    """Post a status update: ``runbook.status_command`` (message appended) or ``status_webhook``; always
    appended to ``<state_dir>/status-page.jsonl``."""
    runbook = aws.mirror.runbook
    page = aws.mirror.state_dir / "status-page.jsonl"

    def run() -> dict[str, Any]:
        page.parent.mkdir(parents=True, exist_ok=True)
        with page.open("a") as out:
            out.write(json.dumps({"at_s": time.time(), "message": message}) + "\n")
        if runbook.get("status_command"):
            return _command([*runbook["status_command"], message], "status update")
        if runbook.get("status_webhook"):
            return _post(runbook["status_webhook"], {"message": message}, "status update")
        return {"status_page": str(page)}

    hook = (" and run " + " ".join(runbook["status_command"]) if runbook.get("status_command") else
            f" and POST {runbook['status_webhook']}" if runbook.get("status_webhook") else "")
    return [Operation(f"post the status update {message!r} to {page}{hook}", "global", (), run)]


PLANS: dict[str, Callable[..., list[Operation]]] = {
    "crash_az": lambda aws, az, region="primary": plan_crash_az(aws, region, az),
    "crash_region": lambda aws, region="primary": plan_crash_region(aws, region),
    "fail_over_database": lambda aws, region="primary": plan_fail_over_database(aws, region),
    "isolate_az": lambda aws, az, region="primary": plan_isolate(aws, region, az),
    "isolate_region": lambda aws, region="primary": plan_isolate(aws, region),
    "crash_service": lambda aws, service, region="primary": plan_crash_service(aws, service, region),
    "scale_up_region": lambda aws, region="dr": plan_scale(aws, region, "production"),
    "scale_down_region": lambda aws, region="dr": plan_scale(aws, region, "pilot_light"),
    "promote_replica": lambda aws, region="dr": plan_promote(aws, region),
    "switch_dns": lambda aws, to_region="dr": plan_dns(aws, to_region),
    "deploy_services": lambda aws, region="dr": plan_deploy(aws, region),
}
"""Action name -> its plan (the actions of :mod:`drdrill.chaos.aws.actions` that change AWS)."""
