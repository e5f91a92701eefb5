"""Shared plumbing of the accuracy benchmarks (bench/rto_accuracy.py, bench/rpo_exactness.py).

Every benchmark trial is one real drill: a fresh ground-truth service subprocess
(:class:`~drdrill.targets.groundtruth.GroundTruthTarget`), real Locust users through
:class:`~drdrill.drill.Drill` / :class:`~drdrill.traffic.runner.TrafficRun`, a Chaos Toolkit
experiment built here as a dict and run by :func:`drdrill.chaos.runner.run_experiment` (so its
nemesis ops land in the history), and a run directory under ``bench/out/<benchmark>/``.

Progress goes to stderr (:func:`progress`); figures to stdout (:func:`table`) and, on request, to a
JSON file (:func:`write_json`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"

if str(REPO) not in sys.path:  # run from anywhere, even without the editable install
    sys.path.insert(0, str(REPO))

from drdrill.chaos.runner import run_experiment  # noqa: E402
from drdrill.config import DrillConfig, default_config  # noqa: E402
from drdrill.drill import Drill  # noqa: E402
from drdrill.run import RunDir  # noqa: E402
from drdrill.tables import table as drdrill_table  # noqa: E402
from drdrill.targets.groundtruth import GroundTruthTarget  # noqa: E402

_T0 = time.monotonic()


def progress(message: str) -> None:
    """One progress line on stderr, stamped with seconds since the benchmark started."""
    print(f"[{time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def parse_floats(text: str) -> list[float]:
    """``"2,5,20"`` → ``[2.0, 5.0, 20.0]`` (for argparse ``type=``)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from exc
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"expected positive numbers, got {text!r}")
    return values


# ------------------------------------------------------------------------- experiments


def http_action(name: str, path: str, arguments: dict[str, Any], pause_after_s: float,
                pause_before_s: float = 0.0) -> dict[str, Any]:
    """A Chaos Toolkit action POSTing JSON ``arguments`` to the ground truth's control port.

    chaoslib sleeps ``pause_before_s`` *before* it announces the activity (so t_fault, the nemesis
    ``start:`` op, is after the pause) and ``pause_after_s`` after it completed.
    """
    pauses = {"after": pause_after_s}
    if pause_before_s > 0:
        pauses["before"] = pause_before_s
    return {
        "type": "action",
        "name": name,
        "provider": {
            "type": "http",
            "url": "${gt_control_url}" + path,
            "method": "POST",
            "headers": {"Content-Type": "application/json"},
            "arguments": arguments,
            "timeout": 5,
        },
        "pauses": pauses,
    }


def healthz_hypothesis() -> dict[str, Any]:
    """A steady-state hypothesis: the platform's ``/healthz`` answers 200."""
    return {
        "title": "The platform answers its health check",
        "probes": [{
            "type": "probe",
            "name": "platform-healthz",
            "tolerance": 200,
            "provider": {"type": "http", "url": "${gt_base_url}/healthz", "timeout": 2},
        }],
    }


def experiment(title: str, method: list[dict[str, Any]],
               hypothesis: dict[str, Any] | None = None) -> dict[str, Any]:
    """A complete, validated experiment against the ground-truth service (URLs come from the target)."""
    from chaoslib.experiment import ensure_experiment_is_valid

    exp: dict[str, Any] = {
        "version": "1.0.0",
        "title": title,
        "description": "Built by a drdrill benchmark (bench/) against the ground-truth service.",
        "tags": ["bench", "ground-truth"],
        "configuration": {
            "gt_base_url": "http://127.0.0.1:8080",  # replaced by the target's configuration
            "gt_control_url": "http://127.0.0.1:8081",
        },
        "method": method,
        "rollbacks": [],
    }
    if hypothesis is not None:
        exp["steady-state-hypothesis"] = hypothesis
    ensure_experiment_is_valid(exp)
    return exp


def iso_to_epoch_s(text: str) -> float:
    """A chaoslib journal timestamp (ISO 8601, UTC offset included) as epoch seconds."""
    return datetime.fromisoformat(text).timestamp()


# ------------------------------------------------------------------------- drills


@dataclass
class Trial:
    """One running drill: its target (ground-truth service), drill state and run directory."""

    target: GroundTruthTarget
    drill: Drill
    config: DrillConfig

    @property
    def run(self) -> RunDir:
        return self.drill.run

    def run_experiment(self, exp: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Run ``exp`` with chaoslib (nemesis ops into the history); returns the journal."""
        self.run.update_meta(experiment={"title": exp["title"], "built_by": "bench"})
        return run_experiment(exp, self.drill.writer, self.run.journal_path,
                              configuration=self.target.experiment_configuration(), **kwargs)

    def wait_healthy(self, timeout_s: float = 60.0) -> float:
        """Block until ``/healthz`` answers again; returns the epoch seconds it first did."""
        self.drill.wait_healthy(timeout_s)
        return time.time()


@contextmanager
def ground_truth_trial(benchmark: str, name: str, users: int, rate_per_user: float,
                       baseline_s: float, max_duration_s: float = 600.0,
                       **meta: Any) -> Iterator[Trial]:
    """A fresh ground-truth service + a drill with Locust traffic flowing (after ``baseline_s``).

    Traffic is drdrill's own (:meth:`Drill.start_traffic`: ``drdrill/traffic/locustfile.py``).
    Whatever happens, traffic is stopped, the final read taken, ``results.json`` written and the
    service stopped on exit. Read ``target.truth()`` before leaving the block.
    """
    config = default_config()
    target = GroundTruthTarget().start()
    drill: Drill | None = None
    try:
        run = RunDir.create(OUT / benchmark, name, config, target=target.name, bench=meta)
        drill = Drill(target, config, run, experiment_dirs=[])
        drill.wait_healthy()
        progress(f"{name}: ground truth on {target.base_url} (control {target.service.control_url}); "
                 f"starting {users} Locust users at {rate_per_user:g} req/s each; run dir {run.path}")
        drill.start_traffic(users, rate_per_user, max_duration_s=max_duration_s, baseline_s=baseline_s)
        progress(f"{name}: traffic flowing; {baseline_s:g} s baseline observed")
        yield Trial(target, drill, config)
    finally:
        try:
            if drill is not None:
                drill.close()
        finally:
            target.stop()


# ------------------------------------------------------------------------- output


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` decimals, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        if math.isinf(value):
            return "inf"
        if math.isnan(value):
            return "nan"
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """A plain-text table (first column left-aligned, the rest right-aligned): drdrill's printer."""
    return drdrill_table(headers, [[fmt(c) for c in row] for row in rows], align="first-left",
                         rule=True, title=title)  # fmt: skip


def write_json(path: str | Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    progress(f"figures written to {path}")


TICK = os.sysconf("SC_CLK_TCK")  # clock ticks per second of /proc's CPU times


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one running process (all its threads); 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK
