"""Local mirror figures: time to healthy, teardown, leader failover and (opt-in) image build from nothing.

One command, real Docker (no Locust)::

    .venv/bin/python bench/mirror.py [--runs 3] [--failovers 3] [--from-nothing] [--json PATH]

* time to healthy: ``lifecycle.up`` with the images built, ``--runs`` times; the ``healthy`` timing
  up records (containers created → every readiness check passed, image lookup excluded) and the
  wall time of the call. Goal ≤ 30 s on 2 cores.
* teardown: ``lifecycle.down`` after each run. Goal ≤ 5 s.
* leader failover (on the last mirror, ``--failovers`` times): ``faults.crash(leader("primary"))``
  until a write through the primary region's ALB SQL port succeeds; then undo and wait until the
  mirror is healthy again (``heal_s``). Patroni 4's ttl is at least 20 s, so expect ~22 s.
* ``--from-nothing`` (destroys the cache, so opt-in): removes every tag of the repositories
  ``drdrill/base`` and ``drdrill/node`` (nothing else) and the wheel cache
  ``~/.cache/drdrill/mirror``, then times ``build_images()``. Goal ≤ 3 min. Refused while any
  mirror container exists.

Medians over the runs are printed as a table on stdout; progress goes to stderr. Mirrors use a
state file under ``bench/out/mirror/`` and are always taken down.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import OUT, progress, table, write_json

from drdrill.mirror import faults, health, lifecycle, patroni
from drdrill.mirror.engine import ensure_docker
from drdrill.mirror.images import BASE_REPO, NODE_REPO, build_images, cache_dir
from drdrill.mirror.plan import LABEL

GOALS = {"build_from_nothing_s": 180.0, "time_to_healthy_s": 30.0, "teardown_s": 5.0}


def from_nothing(client) -> dict[str, Any]:
    """Remove the mirror's images (by repository) and wheel cache; time a build from scratch."""
    if client.api.containers(all=True, filters={"label": LABEL}):
        raise SystemExit(
            "mirror containers exist; take them down (drdrill mirror down --all) first"
        )
    removed = []
    for repo in (NODE_REPO, BASE_REPO):  # node first: it is built on base
        for image in client.images.list(name=repo):
            for tag in image.tags:
                if tag.split(":", 1)[0] == repo:
                    client.images.remove(tag, force=False)
                    removed.append(tag)
    cache = cache_dir()
    shutil.rmtree(cache, ignore_errors=True)
    progress(f"removed {len(removed)} image tag(s) ({', '.join(removed)}) and {cache}")
    t0 = time.monotonic()
    images = build_images(progress=lambda m: progress(m))
    took = time.monotonic() - t0
    progress(f"built {images} from nothing in {took:.1f} s")
    return {"build_from_nothing_s": took, "images": images, "removed": removed}


def failover_once(state, client) -> dict[str, float]:
    old = patroni.leader(state, "primary")
    fault = faults.crash(faults.leader("primary"), state, client=client, progress=progress)
    t0 = time.monotonic()
    while True:
        try:
            with state.connect(timeout_s=2.0) as conn:
                conn.execute("create table if not exists bench_probe (t timestamptz default now())")
                conn.execute("insert into bench_probe default values")
            break
        except Exception:
            if time.monotonic() - t0 > 90:
                raise
            time.sleep(0.1)
    failover_s = fault.applied_s - fault.started_s + (time.monotonic() - t0)
    new = patroni.leader(state, "primary")
    faults.undo(fault, state, client=client, progress=progress)
    heal_s = health.wait_healthy(state, 120)
    progress(
        f"failover {old} -> {new}: {failover_s:.1f} s; healthy again {heal_s:.1f} s after undo"
    )
    return {"failover_s": failover_s, "heal_s": heal_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3, help="mirrors brought up and down (3)")
    parser.add_argument("--failovers", type=int, default=3, help="leader kills (3; 0 = none)")
    parser.add_argument("--from-nothing", action="store_true",
                        help="remove drdrill/base + drdrill/node and the wheel cache, time the build")  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = parser.parse_args(argv)
    client = ensure_docker(progress=progress)
    figures: dict[str, Any] = {}
    if args.from_nothing:
        figures.update(from_nothing(client))
    else:
        build_images(progress=lambda m: None)
    state_file = OUT / "mirror" / "state.json"
    ups, walls, downs, failovers = [], [], [], []
    for run in range(max(1, args.runs)):
        last = run == max(1, args.runs) - 1
        progress(f"run {run + 1}/{args.runs}: up")
        t0 = time.monotonic()
        try:
            state = lifecycle.up(None, lambda m: None, state_file=state_file, timeout_s=120)
            walls.append(time.monotonic() - t0)
            ups.append(state.data["timings_s"]["healthy"])
            progress(f"healthy in {ups[-1]:.1f} s (wall {walls[-1]:.1f} s)")
            if last:
                for i in range(args.failovers):
                    progress(f"failover {i + 1}/{args.failovers}")
                    failovers.append(failover_once(state, client))
        finally:
            t0 = time.monotonic()
            lifecycle.down(state_file=state_file, progress=lambda m: None)
            downs.append(time.monotonic() - t0)
            progress(f"down in {downs[-1]:.1f} s")

    def med(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    figures.update({
        "time_to_healthy_s": med(ups), "time_to_healthy_runs_s": ups,
        "up_wall_s": med(walls), "up_wall_runs_s": walls,
        "teardown_s": med(downs), "teardown_runs_s": downs,
        "leader_failover_s": med([f["failover_s"] for f in failovers]),
        "leader_failover_runs_s": [f["failover_s"] for f in failovers],
        "heal_after_undo_s": med([f["heal_s"] for f in failovers]),
    })  # fmt: skip
    rows = []
    for name, label, runs in [
        ("build_from_nothing_s", "image build from nothing", None),
        ("time_to_healthy_s", "time to healthy (images built)", ups),
        ("up_wall_s", "up() wall time", walls),
        ("teardown_s", "teardown", downs),
        ("leader_failover_s", "leader failover (kill -> write via ALB)",
         [f["failover_s"] for f in failovers]),
        ("heal_after_undo_s", "healthy again after undo", [f["heal_s"] for f in failovers]),
    ]:  # fmt: skip
        if figures.get(name) is None:
            continue
        goal = GOALS.get(name)
        rows.append([label, figures[name], len(runs) if runs is not None else 1,
                     f"<= {goal:g}" if goal else "-",
                     (figures[name] <= goal) if goal else None])  # fmt: skip
    print(table(["figure", "median s", "n", "goal s", "met"], rows, title="local mirror"))
    if args.json:
        write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
