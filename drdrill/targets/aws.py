"""The aws target: the platform's mirror environment in AWS, behind guardrails (see :mod:`drdrill.aws`)."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from drdrill.chaos import http
from drdrill.errors import GuardrailError, TargetError
from drdrill.targets import TargetBase, TargetOptions

__all__ = ["AwsTarget"]

log = logging.getLogger("drdrill")


class AwsTarget(TargetBase):
    """A :class:`~drdrill.targets.Target` for the AWS mirror described by ``config_path``.

    Traffic and the final read go to the mirror's public ``endpoint``; faults and runbook steps run
    through :mod:`drdrill.chaos.aws` (experiments in ``experiments/aws``).
    """

    name = "aws"
    tags = ("mirror",)
    uses = frozenset({"aws_config"})
    validated_offline = False  # its pre-flight needs the mirror's description

    def __init__(self, config_path: str | None = None) -> None:
        from drdrill.aws.config import load_aws_config

        self.config_path = config_path
        self.mirror = load_aws_config(config_path)  # a malformed config is refused before anything
        self.options = TargetOptions(aws_config=str(Path(self.mirror.source).resolve()))
        self._aws: Any = None

    @classmethod
    def from_options(cls, options: TargetOptions) -> AwsTarget:
        return cls(options.aws_config)

    def _session(self) -> Any:
        """One read-only AWS session for every check (the caller's account is looked up once)."""
        from drdrill.aws.plan import Aws

        if self._aws is None:
            self._aws = Aws(self.mirror)
        return self._aws

    def __repr__(self) -> str:
        return f"AwsTarget({self.mirror.name})"

    def start(self) -> AwsTarget:
        """Check the account guardrail (read only); nothing is brought up: the mirror exists in AWS."""
        from drdrill.aws.guardrails import account_problems
        from drdrill.aws.plan import Aws

        problems = account_problems(Aws(self.mirror))
        if problems:
            raise GuardrailError("; ".join(problems))
        return self

    def stop(self) -> None:
        """Nothing to take down."""

    @property
    def base_url(self) -> str:
        return self.mirror.endpoint

    def _get(self, path: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.base_url + path, timeout=timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def healthy(self) -> bool:
        """Every service answers through the public endpoint (a response from the service itself, < 500)."""
        return http.every_service_served(self.base_url)

    def final_read(self, prefix: str) -> dict[str, list[str]]:
        """Every key with ``prefix`` in the serving region's database, through the endpoint's ``/_lookup``."""
        status, body = self._get(f"/_lookup?prefix={urllib.request.quote(prefix)}", timeout_s=60)
        if status != 200:
            raise TargetError(f"final read through {self.base_url}/_lookup failed with HTTP {status}")
        return json.loads(body)

    def pending_payments(self) -> dict[str, Any] | None:
        status, body = self._get("/payments/_pending")
        if status != 200:
            raise TargetError(f"{self.base_url}/payments/_pending answered HTTP {status}")
        return json.loads(body)

    def experiment_configuration(self) -> dict[str, Any]:
        return {"aws_config": str(self.mirror.source)}

    def experiment_problems(self, experiment: dict[str, Any]) -> list[str]:
        """Unknown names, then every action planned and checked against the guardrails (read only)."""
        from drdrill.aws.plan import Aws
        from drdrill.chaos.aws.control import experiment_problems, plan_experiment

        problems = experiment_problems(experiment, self.mirror, self.experiment_configuration())
        return problems or plan_experiment(experiment, Aws(self.mirror), self.experiment_configuration())[1]

    def static_problems(self, experiment: dict[str, Any]) -> list[str]:
        """What cannot run on this mirror, without asking AWS: foreign providers, unknown functions
        and regions, unknown manual runbook steps."""
        from drdrill.chaos.aws.control import experiment_problems

        return experiment_problems(experiment, self.mirror, self.experiment_configuration())

    def session_problems(self) -> list[str]:
        """The account guardrail (STS, read only): refused, no scenario is planned."""
        from drdrill.aws.guardrails import account_problems

        return account_problems(self._session())

    def plan(self, experiment: dict[str, Any]) -> tuple[list[str], list[str]]:
        """Every action resolved into its AWS operations (read only), and the guardrails' refusals."""
        from drdrill.chaos.aws.control import plan_experiment

        return plan_experiment(experiment, self._session(), self.experiment_configuration())

    def describe(self) -> dict[str, str]:
        """The mirror's regions, databases and guardrails (never credentials)."""
        mirror = self.mirror
        out = {"topology": f"{mirror.name} (AWS mirror, {mirror.source})",
               "guardrails": f"accounts {', '.join(mirror.allowed_accounts)}; regions "
                             f"{', '.join(mirror.allowed_regions)}; tag {mirror.mirror_tag[0]}="
                             f"{mirror.mirror_tag[1]}; at most {mirror.max_resources} resources per action"}
        for name, region in mirror.regions.items():
            out[f"region.{name}"] = f"{region.role}, {region.aws_region}, {region.vpc_id}, RDS {region.database}"
        return out
