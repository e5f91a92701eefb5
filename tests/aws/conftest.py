"""An AWS mirror in moto: a moto server on 127.0.0.1 (``AWS_ENDPOINT_URL``), built fresh for every test.

The mirror follows the DR plan: a primary region (us-east-1: VPC with subnets in AZs a/b/c, tagged
instances, a payments Auto Scaling group, a Multi-AZ RDS primary, an ALB target group) and a DR
region (us-west-2: VPC, a pilot-light Auto Scaling group and EKS node group, the RDS cross-region
read replica), and a
Route 53 zone with one weighted record per region. Its public endpoint is a ground-truth service on
127.0.0.1 standing in for the platform. The credentials are fake and distinctive, so a test can
prove they never reach a file.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ACCESS_KEY = "AKIADRDRILLTESTKEY01"
SECRET_KEY = "drdrill-test-secret-never-written-anywhere"
TAG = {"Key": "drdrill:mirror", "Value": "creator-platform"}
PRIMARY, DR = "us-east-1", "us-west-2"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="package")
def moto_endpoint(tmp_path_factory):
    """A moto server on 127.0.0.1 and the environment pointing boto3 at it (fake credentials)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    server = Path(sys.executable).with_name("moto_server")
    with log.open("w") as out:
        process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)], stdout=out,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)  # noqa: S310 - loopback
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
    environment = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                   "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": PRIMARY}
    saved = {k: os.environ.get(k) for k in [*environment, "AWS_SESSION_TOKEN", "AWS_PROFILE"]}
    os.environ.update(environment)
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        os.environ.pop(key, None)
    try:
        yield url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="package")
def platform_endpoint():
    """The mirror's public endpoint: a ground-truth service on 127.0.0.1 (serves every service path)."""
    from drdrill.testing.groundtruth import GroundTruthService

    service = GroundTruthService().start()
    try:
        yield service.base_url
    finally:
        service.stop()


def _client(service: str, region: str):
    import boto3

    return boto3.session.Session(region_name=region).client(service)


def _region(region: str, cidr: str, instances_per_az: dict[str, int], tagged: bool = True) -> dict:
    ec2 = _client("ec2", region)
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    tags = [{"ResourceType": "subnet", "Tags": [TAG]}]
    subnets = {}
    for index, az in enumerate("abc"):
        block = cidr.replace(".0.0/16", f".{index}.0/24")
        subnets[az] = ec2.create_subnet(VpcId=vpc, CidrBlock=block, AvailabilityZone=f"{region}{az}",
                                        TagSpecifications=tags)["Subnet"]["SubnetId"]  # fmt: skip
    instances = {}
    for az, count in instances_per_az.items():
        spec = [{"ResourceType": "instance", "Tags": [TAG]}] if tagged else []
        found = ec2.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count, SubnetId=subnets[az],
                                  TagSpecifications=spec)["Instances"]  # fmt: skip
        instances[az] = [i["InstanceId"] for i in found]
    return {"vpc": vpc, "subnets": subnets, "instances": instances}


def _group(region: str, name: str, subnet: str, desired: int) -> None:
    ec2 = _client("ec2", region)
    template = ec2.create_launch_template(LaunchTemplateName=f"{name}-lt",
                                          LaunchTemplateData={"ImageId": "ami-12c6146b"})  # fmt: skip
    _client("autoscaling", region).create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=1, MaxSize=10, DesiredCapacity=desired, VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplate"]["LaunchTemplateId"]},
        Tags=[{**TAG, "PropagateAtLaunch": True, "ResourceId": name, "ResourceType": "auto-scaling-group"}])


@pytest.fixture
def aws_mirror(moto_endpoint, platform_endpoint, tmp_path):
    """A fresh mirror in moto: the config file's path and the ids of what was built."""
    urllib.request.urlopen(urllib.request.Request(moto_endpoint + "/moto-api/reset", method="POST"))
    primary = _region(PRIMARY, "10.0.0.0/16", {"a": 2, "b": 1, "c": 1})
    dr = _region(DR, "10.1.0.0/16", {"a": 1})
    _group(PRIMARY, "mirror-payments", primary["subnets"]["b"], 2)
    _group(DR, "mirror-dr-nodes", dr["subnets"]["a"], 1)
    eks = _client("eks", DR)
    eks.create_cluster(name="mirror-dr", roleArn="arn:aws:iam::123456789012:role/eks",
                       resourcesVpcConfig={"subnetIds": list(dr["subnets"].values())})
    eks.create_nodegroup(clusterName="mirror-dr", nodegroupName="dr-nodes", nodeRole="arn:aws:iam::123456789012:role/node",
                         subnets=list(dr["subnets"].values()), tags={TAG["Key"]: TAG["Value"]},
                         scalingConfig={"minSize": 1, "maxSize": 2, "desiredSize": 1})  # fmt: skip
    rds = _client("rds", PRIMARY)
    db = rds.create_db_instance(DBInstanceIdentifier="mirror-db", Engine="postgres", DBInstanceClass="db.t3.micro",
                                AllocatedStorage=20, MultiAZ=True, AvailabilityZone=f"{PRIMARY}a",
                                MasterUsername="drill", MasterUserPassword="not-a-real-password",
                                Tags=[TAG])["DBInstance"]  # fmt: skip
    _client("rds", DR).create_db_instance_read_replica(
        DBInstanceIdentifier="mirror-db-dr", SourceDBInstanceIdentifier=db["DBInstanceArn"],
        AvailabilityZone=f"{DR}a", Tags=[TAG])
    route53 = _client("route53", PRIMARY)
    zone = route53.create_hosted_zone(Name="mirror.example.test", CallerReference=str(time.time()))
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    route53.change_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id, AddTags=[TAG])
    record = "app.mirror.example.test."
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "UPSERT", "ResourceRecordSet": {"Name": record, "Type": "CNAME", "SetIdentifier": ident,
                                                   "Weight": weight, "TTL": 60,
                                                   "ResourceRecords": [{"Value": f"{ident}.alb.example.test"}]}}
        for ident, weight in (("primary", 100), ("dr", 0))]})
    elbv2 = _client("elbv2", PRIMARY)
    group_arn = elbv2.create_target_group(Name="mirror-app", Protocol="HTTP", Port=80, VpcId=primary["vpc"],
                                          TargetType="instance")["TargetGroups"][0]["TargetGroupArn"]  # fmt: skip
    elbv2.register_targets(TargetGroupArn=group_arn,
                           Targets=[{"Id": i} for ids in primary["instances"].values() for i in ids])
    config = {
        "name": "test-mirror",
        "allowed_accounts": ["123456789012"],
        "mirror_tag": {"key": TAG["Key"], "value": TAG["Value"]},
        "blast_radius": {"max_resources": 10},
        "endpoint": platform_endpoint,
        "state_dir": str(tmp_path / "aws-state"),
        "regions": {
            "primary": {"aws_region": PRIMARY, "vpc_id": primary["vpc"], "database": "mirror-db",
                        "autoscaling_groups": ["mirror-payments"], "services": {"payments": "mirror-payments"},
                        "target_groups": [group_arn], "endpoint": platform_endpoint},
            "dr": {"aws_region": DR, "role": "dr", "vpc_id": dr["vpc"], "database": "mirror-db-dr",
                   "autoscaling_groups": ["mirror-dr-nodes"], "eks_nodegroups": ["mirror-dr/dr-nodes"],
                   "endpoint": platform_endpoint,
                   "capacity": {"pilot_light": 1, "production": 4}},
        },
        "dns": {"hosted_zone_id": zone_id, "record_name": record},
        "runbook": {"deploy_command": [sys.executable, "-c",
                                       "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])",
                                       str(tmp_path / "deployed")]},
    }  # fmt: skip
    path = tmp_path / "aws-mirror.yaml"
    path.write_text(yaml.safe_dump(config))
    return {"config": path, "data": config, "primary": primary, "dr": dr, "zone": zone_id,
            "target_group": group_arn, "tmp": tmp_path}


def write_config(mirror: dict, **changes) -> Path:
    """The mirror's config with top-level ``changes`` (a guardrail made stricter, say), as a new file."""
    data = {**mirror["data"], **changes}
    path = mirror["tmp"] / f"aws-mirror-{len(list(mirror['tmp'].glob('aws-mirror*')))}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path
