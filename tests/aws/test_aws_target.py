"""The aws target against moto: every fault, runbook operation and probe, and every guardrail refusal
(with nothing touched), the dry run's plan, and credentials kept out of every file a drill writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drdrill.chaos.aws import actions, probes
from drdrill.errors import GuardrailError, TargetError
from tests.aws.conftest import ACCESS_KEY, DR, PRIMARY, SECRET_KEY, _client, write_config

pytestmark = [pytest.mark.integration, pytest.mark.aws]
ROOT = Path(__file__).resolve().parents[2]


def conf(mirror: dict, path: Path | None = None) -> dict:
    return {"aws_config": str(path or mirror["config"])}


def states(region: str, ids: list[str]) -> dict[str, str]:
    found = _client("ec2", region).describe_instances(InstanceIds=ids)
    return {i["InstanceId"]: i["State"]["Name"] for r in found["Reservations"] for i in r["Instances"]}


def acl_of(region: str, subnet: str) -> str:
    acls = _client("ec2", region).describe_network_acls(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet]}])["NetworkAcls"]
    return acls[0]["NetworkAclId"]


# ---------------------------------------------------------------------------------------- faults


def test_az_power_loss_stops_the_az_and_fails_the_database_over_then_undo_starts_them(aws_mirror):
    a_ids = aws_mirror["primary"]["instances"]["a"]
    others = aws_mirror["primary"]["instances"]["b"] + aws_mirror["primary"]["instances"]["c"]
    out = actions.crash_az("a", configuration=conf(aws_mirror))
    assert set(states(PRIMARY, a_ids).values()) == {"stopped"}
    assert set(states(PRIMARY, others).values()) == {"running"}  # only AZ a
    summaries = " | ".join(out["operations"])
    assert f"stop 2 instance(s) in {PRIMARY}a" in summaries
    assert "reboot RDS instance mirror-db with forced failover" in summaries  # the primary lives in a
    log = json.loads((aws_mirror["tmp"] / "aws-state" / "faults.json").read_text())
    assert log[0]["kind"] == "stopped-instances" and sorted(log[0]["instance_ids"]) == sorted(a_ids)
    undone = actions.undo_faults(configuration=conf(aws_mirror))
    assert undone == [f"started 2 instance(s) in {PRIMARY}"]
    assert set(states(PRIMARY, a_ids).values()) == {"running"}
    assert not (aws_mirror["tmp"] / "aws-state" / "faults.json").exists()


def test_region_isolation_denies_every_subnet_and_undo_gives_each_its_acl_back(aws_mirror):
    subnets = aws_mirror["primary"]["subnets"]
    before = {az: acl_of(PRIMARY, s) for az, s in subnets.items()}
    out = actions.isolate_region(configuration=conf(aws_mirror))
    deny = out["results"][0]["deny_acl"]
    assert {acl_of(PRIMARY, s) for s in subnets.values()} == {deny}
    entries = _client("ec2", PRIMARY).describe_network_acls(NetworkAclIds=[deny])["NetworkAcls"][0]["Entries"]
    assert {(e["Egress"], e["RuleAction"], e["CidrBlock"]) for e in entries if e["RuleNumber"] == 1} == {
        (False, "deny", "0.0.0.0/0"), (True, "deny", "0.0.0.0/0")}
    assert all(acl_of(DR, s) != deny for s in aws_mirror["dr"]["subnets"].values())  # DR untouched
    actions.restore_mirror(configuration=conf(aws_mirror))
    assert {az: acl_of(PRIMARY, s) for az, s in subnets.items()} == before
    remaining = _client("ec2", PRIMARY).describe_network_acls(
        Filters=[{"Name": "vpc-id", "Values": [aws_mirror["primary"]["vpc"]]}])["NetworkAcls"]
    assert deny not in {acl["NetworkAclId"] for acl in remaining}


def test_az_isolation_cuts_off_only_that_az(aws_mirror):
    subnets = aws_mirror["primary"]["subnets"]
    before = {az: acl_of(PRIMARY, s) for az, s in subnets.items()}
    actions.isolate_az("b", configuration=conf(aws_mirror))
    after = {az: acl_of(PRIMARY, s) for az, s in subnets.items()}
    assert after["a"] == before["a"] and after["c"] == before["c"] and after["b"] != before["b"]
    actions.undo_faults(configuration=conf(aws_mirror))
    assert {az: acl_of(PRIMARY, s) for az, s in subnets.items()} == before


def test_region_power_loss_stops_every_instance_of_the_region(aws_mirror):
    out = actions.crash_region(configuration=conf(aws_mirror))
    stopped = out["results"][0]["instance_ids"]
    assert len(stopped) == 4 + 2  # the tagged instances and the payments group's
    assert set(states(PRIMARY, stopped).values()) == {"stopped"}
    assert set(states(DR, aws_mirror["dr"]["instances"]["a"]).values()) == {"running"}
    actions.undo_faults(configuration=conf(aws_mirror))
    assert set(states(PRIMARY, stopped).values()) == {"running"}


def test_database_failover_reboots_the_multi_az_primary_with_forced_failover(aws_mirror):
    out = actions.fail_over_database(configuration=conf(aws_mirror))
    assert out["operations"] == [f"reboot RDS instance mirror-db with forced failover (now in {PRIMARY}a, "
                                 "standby in None)"]
    assert out["results"] == [{"db_instance": "mirror-db", "from_az": f"{PRIMARY}a"}]
    assert probes.database_status(configuration=conf(aws_mirror))["status"] == "available"


def test_service_failure_terminates_the_group_and_the_group_replaces_them(aws_mirror):
    autoscaling = _client("autoscaling", PRIMARY)

    def in_service() -> set[str]:
        group = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["mirror-payments"])
        return {i["InstanceId"] for i in group["AutoScalingGroups"][0]["Instances"]
                if i["LifecycleState"] == "InService"}  # fmt: skip

    before = in_service()
    out = actions.crash_service("payments", configuration=conf(aws_mirror))
    assert sorted(out["results"][0]["terminated"]) == sorted(before)
    assert set(states(PRIMARY, sorted(before)).values()) == {"terminated"}
    after = in_service()
    assert len(after) == 2 and not after & before  # replaced
    with pytest.raises(TargetError, match="service 'auth' has no Auto Scaling group"):
        actions.crash_service("auth", configuration=conf(aws_mirror))


# ---------------------------------------------------------------------------------------- runbook


def test_the_runbook_operations_fail_over_to_dr(aws_mirror):
    c = conf(aws_mirror)
    assert probes.serving_region(configuration=c) == "primary"
    scaled = actions.scale_up_region(configuration=c)
    assert scaled["runbook_step"] == "scale-up" and scaled["mode"] == "auto"
    group = _client("autoscaling", DR).describe_auto_scaling_groups(AutoScalingGroupNames=["mirror-dr-nodes"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 4

    def nodes() -> dict:
        return _client("eks", DR).describe_nodegroup(clusterName="mirror-dr", nodegroupName="dr-nodes")[
            "nodegroup"]["scalingConfig"]

    assert nodes() == {"minSize": 1, "maxSize": 4, "desiredSize": 4}
    promoted = actions.promote_replica(configuration=c)
    assert promoted["result"]["results"] == [{"promoted": True,
                                              "was_replica_of": probes.database_status("dr", configuration=c)["replica_of"]}]
    switched = actions.switch_dns(configuration=c)
    assert switched["result"]["results"] == [{"weights": {"primary": 0, "dr": 100}}]
    assert probes.serving_region(configuration=c) == "dr"
    deployed = actions.deploy_services(configuration=c)
    assert (aws_mirror["tmp"] / "deployed").read_text() == "dr" and deployed["runbook_step"] == "deploy"
    validated = actions.validate_critical_path(configuration=c)
    assert validated["result"]["validated"]
    notified = actions.post_status_update(message="Failed over to DR.", configuration=c)
    page = (aws_mirror["tmp"] / "aws-state" / "status-page.jsonl").read_text()
    assert "Failed over to DR." in page and notified["runbook_step"] == "notify"
    actions.scale_down_region(configuration=c)
    group = _client("autoscaling", DR).describe_auto_scaling_groups(AutoScalingGroupNames=["mirror-dr-nodes"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 1 and nodes()["desiredSize"] == 1


def test_detection_times_out_on_a_healthy_endpoint_rather_than_declaring(aws_mirror):
    with pytest.raises(TargetError, match="no outage of payments detected"):
        actions.detect_outage(services=["payments"], interval_s=0.1, timeout_s=0.5, configuration=conf(aws_mirror))


def test_declaring_needs_the_outage_to_persist_and_a_manual_declaration_posts_the_status(aws_mirror, monkeypatch):
    c = conf(aws_mirror)
    with pytest.raises(TargetError, match="the outage did not persist"):
        actions.declare_disaster(confirm_s=0, configuration=c)  # the endpoint serves: no disaster
    import threading
    import time

    from drdrill import runbook

    runbook_dir = aws_mirror["tmp"] / "aws-state" / "runbook"

    def operator() -> None:  # the incident commander, in another terminal
        while runbook.pending(runbook_dir) is None:
            time.sleep(0.05)
        runbook.confirm("declare", runbook_dir)

    confirming = threading.Thread(target=operator, daemon=True)
    confirming.start()
    declared = actions.declare_disaster(configuration={**c, "runbook_manual": "declare"})
    confirming.join(timeout=10)
    assert declared["mode"] == "manual" and declared["result"] == {"declared": True, "by": "operator"}
    page = (aws_mirror["tmp"] / "aws-state" / "status-page.jsonl").read_text()
    assert "Regional disaster declared." in page


# ---------------------------------------------------------------------------------------- probes


def test_probes_read_databases_lag_target_health_and_the_serving_region(aws_mirror):
    import datetime as dt

    c = conf(aws_mirror)
    primary = probes.database_status(configuration=c)
    assert primary["multi_az"] and primary["az"] == f"{PRIMARY}a" and primary["replica_of"] is None
    dr = probes.database_status("dr", configuration=c)
    assert dr["replica_of"].endswith(":db:mirror-db")
    assert probes.replica_lag_s(configuration=c) is None  # no datapoint yet
    _client("cloudwatch", DR).put_metric_data(Namespace="AWS/RDS", MetricData=[{
        "MetricName": "ReplicaLag", "Value": 7.0, "Timestamp": dt.datetime.now(dt.UTC),
        "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": "mirror-db-dr"}]}])
    assert probes.replica_lag_s(configuration=c) == 7.0
    health = probes.target_health(configuration=c)
    assert health == {aws_mirror["target_group"]: {"healthy": 4, "total": 4}}
    actions.crash_az("c", configuration=c)
    assert probes.target_health(configuration=c)[aws_mirror["target_group"]]["healthy"] == 3
    assert probes.serving_region(configuration=c) == "primary"
    assert probes.every_service_served(configuration=c) is True


# ---------------------------------------------------------------------------------------- guardrails


def test_a_wrong_account_is_refused_with_nothing_touched(aws_mirror):
    path = write_config(aws_mirror, allowed_accounts=["999999999999"])
    a_ids = aws_mirror["primary"]["instances"]["a"]
    with pytest.raises(GuardrailError, match="account 123456789012 is not in allowed_accounts"):
        actions.crash_az("a", configuration=conf(aws_mirror, path))
    assert set(states(PRIMARY, a_ids).values()) == {"running"}
    assert not (aws_mirror["tmp"] / "aws-state" / "faults.json").exists()


def test_a_region_outside_the_allow_list_is_refused_with_nothing_touched(aws_mirror):
    path = write_config(aws_mirror, allowed_regions=[PRIMARY])
    with pytest.raises(GuardrailError, match=f"region {DR} is not in allowed_regions"):
        actions.scale_up_region(configuration=conf(aws_mirror, path))
    group = _client("autoscaling", DR).describe_auto_scaling_groups(AutoScalingGroupNames=["mirror-dr-nodes"])
    assert group["AutoScalingGroups"][0]["DesiredCapacity"] == 1


def test_an_untagged_resource_is_refused_with_nothing_touched(aws_mirror):
    ec2 = _client("ec2", PRIMARY)
    stranger = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1,
                                 SubnetId=aws_mirror["primary"]["subnets"]["c"])["Instances"][0]["InstanceId"]
    with pytest.raises(GuardrailError, match=f"instance {stranger} .* is not tagged drdrill:mirror=creator-platform"):
        actions.crash_az("c", configuration=conf(aws_mirror))
    ids = [stranger, *aws_mirror["primary"]["instances"]["c"]]
    assert set(states(PRIMARY, ids).values()) == {"running"}


def test_over_the_blast_radius_is_refused_with_nothing_touched(aws_mirror):
    path = write_config(aws_mirror, blast_radius={"max_resources": 2})
    with pytest.raises(GuardrailError, match="blast radius: crash_region would change 6 resources, more than "
                                             "blast_radius.max_resources = 2"):
        actions.crash_region(configuration=conf(aws_mirror, path))
    all_ids = [i for ids in aws_mirror["primary"]["instances"].values() for i in ids]
    assert set(states(PRIMARY, all_ids).values()) == {"running"}


def test_the_experiment_control_refuses_before_the_first_fault(aws_mirror):
    from chaoslib.exceptions import InterruptExecution

    from drdrill.chaos.aws.control import before_experiment_control

    experiment = json.loads((ROOT / "experiments" / "aws" / "az-power-loss.json").read_text())
    path = write_config(aws_mirror, blast_radius={"max_resources": 1})
    with pytest.raises(InterruptExecution, match="blast radius: crash_az would change 3 resources"):
        before_experiment_control(experiment, configuration=conf(aws_mirror, path))
    before_experiment_control(experiment, configuration=conf(aws_mirror))  # allowed: no exception


# ---------------------------------------------------------------------------------------- dry run and drill


def _drill(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "drdrill.cli", "drill", "--target", "aws", "--features",
                           str(ROOT / "features"), "--experiments", str(ROOT / "experiments"), *args],
                          capture_output=True, text=True, timeout=600, cwd=cwd, env=os.environ.copy())


def test_a_dry_run_prints_every_operation_and_changes_nothing(aws_mirror, tmp_path):
    result = _drill(["--aws-config", str(aws_mirror["config"]), "--dry-run", "--suite", "nightly",
                     "--runs-dir", str(tmp_path / "runs")], tmp_path)  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-3000:]
    assert "dry run against the aws target" in out and "4 scenario(s) planned; every guardrail holds" in out
    subnets = sorted(aws_mirror["primary"]["subnets"].values())
    assert f"cut off 3 subnet(s) of {aws_mirror['primary']['vpc']} with a deny-all network ACL" in out
    assert ", ".join(subnets) in out
    assert f"stop 2 instance(s) in {PRIMARY}a" in out
    assert "promote RDS read replica mirror-db-dr" in out and "set the Route 53 weights" in out
    assert "terminate the 2 instance(s) of payments in Auto Scaling group mirror-payments" in out
    assert "experiments/aws/cross-region-failover.json" in out
    all_ids = [i for ids in aws_mirror["primary"]["instances"].values() for i in ids]
    assert set(states(PRIMARY, all_ids).values()) == {"running"}
    assert probes.serving_region(configuration=conf(aws_mirror)) == "primary"
    assert not (tmp_path / "runs").exists()


def test_a_dry_run_shows_the_refusals_and_exits_3(aws_mirror, tmp_path):
    path = write_config(aws_mirror, allowed_accounts=["999999999999"])
    result = _drill(["--aws-config", str(path), "--dry-run", "-k", "payments"], tmp_path)
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "REFUSED: account 123456789012 is not in allowed_accounts" in result.stdout


def test_a_drill_on_aws_writes_no_credential_anywhere(aws_mirror, tmp_path):
    # a one-scenario feature: the AWS service failure, judged from the endpoint's users
    features = tmp_path / "features"
    features.mkdir()
    (features / "aws.feature").write_text(textwrap.dedent("""\
        @mirror
        Feature: service failure on the AWS mirror
          Scenario: the payments group replaces its instances
            Given the platform under test is healthy
            And synthetic traffic of 10 users is running
            When the experiment "service-failure" runs
            And the platform has recovered
            Then the critical services recover within 60 seconds
        """))
    (features / "test_bind.py").write_text("from pytest_bdd import scenarios\nscenarios('.')\n")
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["drdrill.pytest_plugin", "drdrill.steps.environment", "drdrill.steps.traffic", "drdrill.steps.faults", '
        '"drdrill.steps.objectives"]\n')
    (tmp_path / "pytest.ini").write_text(f"[pytest]\ndrdrill_experiment_dirs = {ROOT / 'experiments'}\n"
                                         "markers =\n    mirror: m\n")
    runs, allure = tmp_path / "runs", tmp_path / "allure"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "pytest", "features", "-p", "no:cacheprovider",
                             "--drdrill-target=aws", f"--drdrill-aws-config={aws_mirror['config']}",
                             f"--drdrill-runs-dir={runs}", f"--alluredir={allure}"],
                            capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env)  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    (run_dir,) = runs.iterdir()
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["status"] == "completed"
    crash = next(r for r in journal["run"] if r["activity"]["name"] == "crash-payments-service")
    assert "terminate the 2 instance(s) of payments" in crash["output"]["operations"][0]
    written = [p for p in [*tmp_path.rglob("*"), *(aws_mirror["tmp"] / "aws-state").rglob("*")] if p.is_file()]
    assert len(written) > 10
    for path in written:
        content = path.read_bytes()
        assert SECRET_KEY.encode() not in content, path
        assert ACCESS_KEY.encode() not in content, path
