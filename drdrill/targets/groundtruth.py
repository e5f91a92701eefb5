"""The ground-truth target: the test service whose outages and data loss are known exactly."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from drdrill.targets import TargetBase, TargetOptions
from drdrill.testing.groundtruth import GroundTruthService

__all__ = ["GroundTruthTarget"]


class GroundTruthTarget(TargetBase):
    """A :class:`~drdrill.targets.Target` backed by a :class:`GroundTruthService` subprocess."""

    name = "groundtruth"
    tags = ("groundtruth",)

    def __init__(self, service: GroundTruthService | None = None) -> None:
        self.service = service or GroundTruthService()

    @classmethod
    def from_options(cls, options: TargetOptions) -> GroundTruthTarget:
        return cls()

    def __repr__(self) -> str:
        return f"GroundTruthTarget({self.base_url if self.service.running else 'stopped'})"

    def start(self) -> GroundTruthTarget:
        if not self.service.running:
            self.service.start()
        return self

    def stop(self) -> None:
        self.service.stop()

    @property
    def base_url(self) -> str:
        return self.service.base_url

    def healthy(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.base_url}/healthz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def final_read(self, prefix: str) -> dict[str, list[str]]:
        return self.service.lookup(prefix)

    def experiment_configuration(self) -> dict[str, Any]:
        return {"gt_base_url": self.service.base_url, "gt_control_url": self.service.control_url}

    def experiment_problems(self, experiment: dict[str, Any]) -> list[str]:
        """Nothing to check: the ground-truth service has no regions, AZs or replicas to name."""
        return []

    def static_problems(self, experiment: dict[str, Any]) -> list[str]:
        """A local-mirror activity in the experiment is checked against the DR plan's topology, as the
        local target checks it (``drdrill validate`` checks every feature under this target)."""
        from drdrill.chaos.local.control import experiment_problems

        return experiment_problems(experiment)

    def describe(self) -> dict[str, str]:
        """One process on 127.0.0.1 whose outages and data loss are known exactly."""
        return {"topology": "ground-truth service (drdrill.testing.groundtruth): one process, "
                            "scripted outages and data loss"}

    def truth(self) -> dict[str, Any]:
        """What really happened (outages, lost writes): for tests and benchmarks."""
        return self.service.truth()
