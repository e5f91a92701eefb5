"""The nightly suite's wall time on this machine: `drdrill drill --suite nightly`, end to end.

One command, real everything (Docker engine, mirror up and down, Locust, chaoslib, checkers)::

    .venv/bin/python bench/nightly.py [--runs 1] [--json PATH]

Each run calls the CLI exactly as CI and the README do (images already built, as on a CI machine
that keeps its Docker cache; the first build from nothing is `bench/mirror.py --from-nothing`) and
measures the wall time of the whole command, the time to the mirror being healthy and each
scenario's duration (from its run directory: created → results written). Goal: ≤ 10 min on 2 cores
with mirror start-up. Run directories and Allure results go to ``bench/out/nightly/``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import OUT, progress, table, write_json

REPO = Path(__file__).resolve().parents[1]
GOAL_S = 600.0


def one_run(index: int) -> dict:
    out = OUT / "nightly" / f"run-{index}"
    runs_dir = out / "runs"
    command = [sys.executable, "-m", "drdrill.cli", "drill", "--suite", "nightly",
               "--runs-dir", str(runs_dir), "--alluredir", str(out / "allure")]
    progress(f"run {index}: {' '.join(command[2:])}")
    started = time.monotonic()
    healthy_s = None
    lines = []
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        for line in process.stdout:
            lines.append(line)
            if healthy_s is None and re.search(r"\[mirror .*\] healthy;", line):
                healthy_s = time.monotonic() - started
            if "PASSED" in line or "FAILED" in line or "scenario(s) in" in line:
                progress(line.rstrip())
    wall_s = time.monotonic() - started
    scenarios = {}
    for run in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        meta = json.loads((run / "drill.json").read_text())
        results = run / "results.json"
        if results.is_file():
            verdict = json.loads(results.read_text())["validity"]
            scenarios[meta["scenario"]] = (results.stat().st_mtime - meta["created_s"], verdict)
    return {"wall_s": wall_s, "exit_code": process.returncode, "mirror_healthy_after_s": healthy_s,
            "scenarios": scenarios, "tail": "".join(lines[-12:])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = [one_run(i) for i in range(1, args.runs + 1)]
    rows = []
    for i, run in enumerate(runs, 1):
        for scenario, (seconds, verdict) in run["scenarios"].items():
            rows.append((i, scenario[:60], f"{seconds:.0f} s", verdict))
    print(table(("run", "scenario", "duration", "verdict"), rows))
    walls = [r["wall_s"] for r in runs]
    print(table(("runs", "wall time median", "max", "mirror healthy after", "exit codes", f"goal ≤ {GOAL_S:.0f} s"), [(
        len(runs), f"{statistics.median(walls):.0f} s", f"{max(walls):.0f} s",
        ", ".join(f"{r['mirror_healthy_after_s']:.0f} s" if r["mirror_healthy_after_s"] else "-" for r in runs),
        ", ".join(str(r["exit_code"]) for r in runs),
        "met" if max(walls) <= GOAL_S else "NOT met")]))
    if any(r["exit_code"] != 0 for r in runs):
        print(runs[-1]["tail"], file=sys.stderr)
    if args.json:
        write_json(args.json, runs)
    return 0 if all(r["exit_code"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
