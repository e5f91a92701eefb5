"""Targets as a protocol with a registry: each target's parts, found by name, and nothing else asks
for a target's name; the AWS code never imports the Docker mirror."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from drdrill import targets
from drdrill.errors import DrdrillError
from drdrill.targets import TARGETS, Target, TargetOptions

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_target_implements_the_protocol():
    for name in TARGETS:
        cls = targets.target_class(name)
        assert cls.name == name
        for member in ("from_options", "prepare", "start", "stop", "finish", "static_problems",
                       "session_problems", "plan", "healthy", "final_read", "experiment_configuration",
                       "experiment_problems", "pending_payments", "describe"):
            assert callable(getattr(cls, member, None)), f"{name} has no {member}"
    assert isinstance(targets.create("groundtruth"), Target)
    assert targets.targets_by_tag() == {"groundtruth": {"groundtruth"}, "mirror": {"local", "aws"}}


def test_an_option_a_target_does_not_read_is_refused_and_a_flag_ignored():
    with pytest.raises(DrdrillError, match="--aws-config is for --target aws"):
        targets.create("local", TargetOptions(aws_config="mirror.yaml"))
    with pytest.raises(DrdrillError, match="unknown target 'gcp'; targets are groundtruth, local, aws"):
        targets.create("gcp")
    assert targets.create("groundtruth", TargetOptions(keep_mirror=True)).name == "groundtruth"
    local = targets.create("local", TargetOptions(keep_mirror=True))
    assert local.keep and local.options.pytest_args() == ["--drdrill-keep-mirror"]


def test_the_aws_target_resolves_its_config_for_the_session_and_checks_without_aws():
    config = ROOT / "examples" / "aws-mirror.yaml"
    aws = targets.create("aws", TargetOptions(aws_config=str(config)))
    assert aws.options.pytest_args() == [f"--drdrill-aws-config={config}"]
    experiment = json.loads((ROOT / "experiments" / "service-failure.json").read_text())
    assert "acts on another target" in aws.static_problems(experiment)[0]


def test_no_code_outside_the_registry_decides_by_a_target_name():
    pattern = re.compile(r"""(target|name)\s*(==|!=|in)\s*\(?["'](groundtruth|local|aws)["']""")
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
             for path in (ROOT / "drdrill").rglob("*.py") if path.parent.name != "targets"
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


def test_the_aws_code_imports_neither_the_docker_mirror_nor_docker():
    code = """
import json, sys
from pathlib import Path
import drdrill.aws.config, drdrill.aws.plan, drdrill.aws.guardrails, drdrill.aws.operations
import drdrill.chaos.aws.actions, drdrill.chaos.aws.probes, drdrill.chaos.aws.control
from drdrill import targets
aws = targets.create("aws", targets.TargetOptions(aws_config=sys.argv[1]))
experiment = json.loads(Path(sys.argv[2]).read_text())
assert aws.static_problems(experiment) == [], aws.static_problems(experiment)
targets.targets_by_tag()
print(json.dumps(sorted(sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples" / "aws-mirror.yaml"),
                             str(ROOT / "experiments" / "aws" / "cross-region-failover.json")],
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout)
    assert "drdrill.targets.aws" in modules and "drdrill.chaos.aws.control" in modules
    assert [m for m in modules if m == "drdrill.mirror" or m.startswith(("drdrill.mirror.", "docker"))] == []
