"""The shipped experiments name only what the mirror has; anything else is refused before any fault."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from drdrill.chaos.local import actions
from drdrill.chaos.local.control import experiment_problems
from drdrill.runbook import STEPS

ROOT = Path(__file__).resolve().parents[2]
LOCAL = sorted(p for p in (ROOT / "experiments").glob("*.json") if "ground-truth" not in p.name)


def load(name: str) -> dict:
    return json.loads((ROOT / "experiments" / f"{name}.json").read_text())


def activity(experiment: dict, name: str) -> dict:
    return next(a for a in experiment["method"] if a["name"] == name)


def test_the_dr_plan_scenarios_are_all_there():
    assert {p.stem for p in LOCAL} >= {
        "service-failure", "database-leader-crash", "database-leader-hang", "az-power-loss",
        "az-isolation", "region-isolation", "region-power-loss", "cross-region-failover", "failback"}


@pytest.mark.parametrize("path", LOCAL, ids=lambda p: p.stem)
def test_every_local_experiment_names_only_what_the_mirror_has(path):
    experiment = json.loads(path.read_text())
    assert experiment_problems(experiment) == []
    # each restores health whatever happened, and is refused up front by the pre-flight control
    assert [r["provider"]["func"] for r in experiment["rollbacks"]] == ["restore_mirror"]
    assert experiment["controls"][0]["provider"]["module"] == "drdrill.chaos.local.control"


def test_the_failover_runbook_has_every_step_of_the_plan_in_order():
    funcs = [a["provider"]["func"] for a in load("cross-region-failover")["method"]]
    steps = [getattr(actions, f).runbook_step for f in funcs if hasattr(getattr(actions, f), "runbook_step")]
    assert steps == ["detect", "declare", "scale-up", "promote", "dns", "deploy", "validate", "notify"]
    funcs = [a["provider"]["func"] for a in load("failback")["method"]]
    steps = [getattr(actions, f).runbook_step for f in funcs if hasattr(getattr(actions, f), "runbook_step")]
    assert steps[8:] == ["rebuild", "catch-up", "maintenance", "switchover", "dns-back", "validate",
                         "notify", "scale-down"]
    assert set(steps) == set(STEPS)


@pytest.mark.parametrize(("experiment", "activity_name", "argument", "value", "message"), [
    ("az-power-loss", "power-off-az-a", "az", "z", "no AZ 'z' in region primary; AZs are a, b, c"),
    ("service-failure", "crash-payments-service", "service", "billing",
     "no service 'billing'; services are payments, auth, users, storefront, analytics"),
    ("cross-region-failover", "scale-up-dr-region", "region", "mars",
     "no region 'mars' (region); regions are primary, dr"),
    ("failback", "switch-dns-back-to-primary", "to_region", "moon",
     "no region 'moon' (to_region); regions are primary, dr"),
])
def test_unknown_targets_are_named_with_the_valid_choices(experiment, activity_name, argument, value,
                                                           message):
    doc = copy.deepcopy(load(experiment))
    activity(doc, activity_name)["provider"]["arguments"][argument] = value
    problems = experiment_problems(doc)
    assert len(problems) == 1 and message in problems[0] and activity_name in problems[0]


def test_selectors_and_manual_steps_are_checked_too():
    doc = load("database-leader-crash")
    doc["method"][0]["provider"] = {"type": "python", "module": "drdrill.chaos.local.actions",
                                    "func": "crash", "arguments": {"target": "primary/zone:a"}}
    doc["configuration"]["runbook_manual"] = "declare,dnss"
    problems = experiment_problems(doc)
    assert any("kinds are az, role, service" in p for p in problems)
    assert any("'dnss'" in p and "steps are detect" in p for p in problems)


def test_manual_steps_from_the_environment_are_checked_through_the_experiment(monkeypatch):
    doc = load("failback")
    monkeypatch.delenv("DRDRILL_RUNBOOK_MANUAL", raising=False)
    assert experiment_problems(doc) == []
    monkeypatch.setenv("DRDRILL_RUNBOOK_MANUAL", "declare,dnss")
    assert any("'dnss'" in p for p in experiment_problems(doc))


class _Config:
    """What :func:`drdrill.pytest_plugin.experiment_dirs` reads of a pytest config."""

    rootpath = ROOT

    def __init__(self, target: str) -> None:
        self.target = target

    def getini(self, name: str) -> list:
        return []

    def getoption(self, name: str) -> str:
        return self.target


@pytest.mark.parametrize("target, expected", [
    ("local", "experiments/service-failure.json"),
    ("groundtruth", "experiments/service-failure.json"),
    ("aws", "experiments/aws/service-failure.json"),
])
def test_each_target_runs_its_own_version_of_an_experiment(target, expected):
    from drdrill.chaos.runner import find_experiment
    from drdrill.pytest_plugin import experiment_dirs

    assert find_experiment("service-failure", experiment_dirs(_Config(target))) == ROOT / expected
    # an experiment with no AWS version is found where it is (and refused by the aws pre-flight)
    assert find_experiment("failback", experiment_dirs(_Config(target))) == ROOT / "experiments" / "failback.json"


AWS = sorted((ROOT / "experiments" / "aws").glob("*.json"))


@pytest.mark.parametrize("path", AWS, ids=lambda p: p.stem)
def test_every_aws_experiment_uses_the_aws_providers_and_rolls_back(path):
    from drdrill.aws.config import load_aws_config
    from drdrill.chaos.aws.control import experiment_problems as aws_problems
    from drdrill.chaos.runner import load_experiment

    experiment = load_experiment(path)  # chaoslib validates it
    assert aws_problems(experiment, load_aws_config(ROOT / "examples" / "aws-mirror.yaml")) == []
    assert [r["provider"]["func"] for r in experiment["rollbacks"]] == ["restore_mirror"]
    assert experiment["controls"][0]["provider"]["module"] == "drdrill.chaos.aws.control"
    assert (ROOT / "experiments" / path.name).is_file()  # the AWS version of a local experiment
