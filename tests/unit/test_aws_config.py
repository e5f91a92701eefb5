"""The AWS mirror's description: the example loads, and every malformed field is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from drdrill.aws.config import aws_config_from_dict, load_aws_config
from drdrill.chaos.aws.control import experiment_problems
from drdrill.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "aws-mirror.yaml"


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_the_documented_example_describes_the_dr_plans_two_regions():
    mirror = load_aws_config(EXAMPLE)
    assert set(mirror.regions) == {"primary", "dr"}
    assert mirror.region("primary").az("a") == "us-east-1a" and mirror.region("dr").role == "dr"
    assert mirror.allowed_regions == ("us-east-1", "us-west-2") and mirror.max_resources == 25
    assert mirror.mirror_tag == ("drdrill:mirror", "creator-platform")


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("allowed_accounts"), "allowed_accounts: required"),
    (lambda d: d.update(mirror_tag={"key": "x"}), "mirror_tag: required"),
    (lambda d: d.update(blast_radius={"max_resources": 0}), "blast_radius.max_resources: expected a positive"),
    (lambda d: d["regions"]["dr"].pop("vpc_id"), "regions.dr.vpc_id: required"),
    (lambda d: d["regions"]["dr"].update(capacity={"huge": 9}), "regions.dr.capacity.huge"),
    (lambda d: d["regions"]["primary"].update(vpc="x"),
     "mirror.yaml: regions.primary.vpc: unknown field; expected one of aws_region, role, vpc_id, database"),
    (lambda d: d.update(regoins={}), "mirror.yaml: regoins: unknown field; expected one of name, allowed_accounts"),
    (lambda d: d["regions"]["dr"].update(eks_nodegroups=["mirror"]),
     r"regions.dr.eks_nodegroups\[0\]: expected cluster/nodegroup, got 'mirror'"),
    (lambda d: d["runbook"].update(deploy_command="deploy.sh"), "runbook.deploy_command: expected a command"),
])
def test_a_malformed_config_names_the_field(change, message):
    data = example()
    change(data)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        aws_config_from_dict(data, "mirror.yaml")


def test_no_config_says_how_to_give_one(monkeypatch):
    monkeypatch.delenv("DRDRILL_AWS_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="--aws-config FILE or \\$DRDRILL_AWS_CONFIG"):
        load_aws_config(None)


def test_a_local_experiment_or_an_unknown_region_is_refused_for_aws_without_asking_aws():
    import json

    mirror = load_aws_config(EXAMPLE)
    local = json.loads((ROOT / "experiments" / "failback.json").read_text())
    problems = experiment_problems(local, mirror)
    assert len(problems) == 1 and "acts on another target (drdrill.chaos.local.actions, " in problems[0]
    assert "from experiments/aws/" in problems[0]
    ours = json.loads((ROOT / "experiments" / "aws" / "cross-region-failover.json").read_text())
    assert experiment_problems(ours, mirror) == []
    ours["method"][0]["provider"]["arguments"] = {"region": "eu"}
    assert "no region 'eu' (region)" in experiment_problems(ours, mirror)[0]
