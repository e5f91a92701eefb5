"""Payment rate: the highest payment rate the mirror sustains through its global entry, recorded.

Run from the repository root, holding the mirror lock (it drives a mirror)::

    flock /tmp/drdrill-mirror.lock .venv/bin/python bench/payment_rate.py --up          # bring one up, take it down
    .venv/bin/python bench/payment_rate.py                     # the mirror of reports/mirror/state.json
    .venv/bin/python bench/payment_rate.py --rates 50,100,200,300,400 --hold-s 60 --json PATH
    .venv/bin/python bench/payment_rate.py --ground-truth --rates 100,500 --hold-s 10  # no Docker

What it does
------------
For each asked rate, in increasing order, one :class:`~drdrill.traffic.runner.TrafficRun` (drdrill's
own locustfile, the recorder on, writing a history) against the mirror's global entry (the state
file's ``global.http`` on 127.0.0.1): ``--users`` browsing users at ``--rate-per-user`` requests/s
(every service keeps traffic, as in a drill) plus payment writers at the asked payments/s, ramped
over ``--ramp-s`` (the locustfile's load shape), then held. The figures come from the recorded
history over the hold window (``--hold-s``, after the ramp and ``--settle-s``):

* achieved: acknowledged ``payments.create`` ops (type ``ok``) that ended in the window, per second;
* errors: non-ok completions of every request in the window (fail + info), in % of them;
* latency p50 / p99 of ``payments.create`` in the window (the recorder's ``latency_ms``);
* CPU, in % of one core, of each component over the window: the mirror's containers from their
  cgroup (``/sys/fs/cgroup/cpuacct/docker/<id>/cpuacct.usage``), grouped by region and role
  (services by service), Locust from ``/proc/<pid>/stat``; and the machine's total busy %.

A rate is *sustained* when achieved >= 95 % of asked and errors < 1 %. The highest sustained rate is
printed with its latency and the busiest component; the run stops after the first rate that is not
sustained (``--all``: run every rate). Progress on stderr, the table on stdout, run directories
(history, traffic.log) under ``bench/out/payment_rate/``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import OUT, TICK, parse_floats, process_cpu_s, progress, table, write_json

from drdrill.history import read_ops
from drdrill.traffic.load import PaymentLoad
from drdrill.traffic.runner import TrafficRun

BENCH_OUT = OUT / "payment_rate"
CGROUP_CPU = Path("/sys/fs/cgroup/cpuacct/docker")
SUSTAINED_SHARE = 0.95
MAX_ERROR_PCT = 1.0


# ------------------------------------------------------------------------------------------------
# CPU accounting
# ------------------------------------------------------------------------------------------------



def machine_busy_s() -> tuple[float, int]:
    """(busy CPU seconds of all cores so far, cores) from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]] + [0] * 8
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICK, os.cpu_count() or 1


ROLE_NAMES = {"alb": "alb (haproxy)", "dns": "entry (haproxy)"}
ENGINE_COMMANDS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy")


def component(container: dict[str, Any]) -> str:
    """A container's component name: ``primary payments``, ``primary postgres pg-a``, ``global entry (haproxy)``."""
    region = container.get("region") or "global"
    role = ROLE_NAMES.get(container.get("role") or "?", container.get("role") or "?")
    if role == "service":
        key = container.get("key", "")
        return f"{region} {key.split('/')[-1].rsplit('-', 1)[0]}"
    if role == "postgres" and container.get("member"):
        return f"{region} postgres {container['member'].removeprefix(region + '-')}"
    return f"{region} {role}"


def engine_cpu_s() -> float:
    """CPU seconds so far of the Docker engine's host processes (dockerd, containerd, shims, docker-proxy)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if (proc / "comm").read_text().strip() in ENGINE_COMMANDS:
                total += process_cpu_s(int(proc.name))
    return total


class CpuMeter:
    """CPU seconds per component between :meth:`start` and :meth:`stop`."""

    def __init__(self, containers: list[dict[str, Any]], locust_pid: int | None) -> None:
        self.containers = [c for c in containers if (CGROUP_CPU / c.get("id", "-") / "cpuacct.usage").exists()]
        self.locust_pid = locust_pid
        self.before: dict[str, float] = {}
        self.started = 0.0

    def sample(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for c in self.containers:
            with contextlib.suppress(OSError, ValueError):
                out[component(c)] += int((CGROUP_CPU / c["id"] / "cpuacct.usage").read_text()) / 1e9
        if self.locust_pid:
            out["locust (load generator)"] = process_cpu_s(self.locust_pid)
        out["docker engine (dockerd, shims, proxies)"] = engine_cpu_s()
        out["machine (all cores)"] = machine_busy_s()[0]
        return out

    def start(self) -> None:
        self.before = self.sample()
        self.started = time.monotonic()

    def stop(self) -> dict[str, float]:
        """CPU % of one core per component over the interval, busiest first."""
        after = self.sample()
        elapsed = max(time.monotonic() - self.started, 1e-9)
        pct = {name: 100.0 * (after[name] - self.before.get(name, 0.0)) / elapsed for name in after}
        return dict(sorted(pct.items(), key=lambda item: -item[1]))


# ------------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def mirror_target(args: argparse.Namespace) -> Iterator[tuple[str, list[dict[str, Any]], str]]:
    """(entry URL, containers, description) of the mirror: brought up with ``--up``, else the running one."""
    from drdrill.mirror import lifecycle
    from drdrill.mirror.state import load_state

    if args.up:
        progress("bringing the mirror up (hold /tmp/drdrill-mirror.lock while this runs)")
        state = lifecycle.up(progress=progress)
    else:
        state = load_state(args.state)
    try:
        yield state.global_http, state.containers(), f"mirror {state.mirror_id} ({state.data.get('image')})"
    finally:
        if args.up:
            lifecycle.down(progress=progress)


@contextlib.contextmanager
def ground_truth_target(args: argparse.Namespace) -> Iterator[tuple[str, list[dict[str, Any]], str]]:
    from drdrill.testing.groundtruth import GroundTruthService

    with GroundTruthService() as service:
        yield service.base_url, [], "ground-truth service (one asyncio process)"


# ------------------------------------------------------------------------------------------------
# One rate
# ------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def measure(args: argparse.Namespace, host: str, containers: list[dict[str, Any]],
            rate: float) -> dict[str, Any]:
    """Drive ``rate`` payments/s for the ramp + settle + hold; the hold window's figures."""
    load = PaymentLoad(rate, args.ramp_s)
    run_dir = BENCH_OUT / f"{time.strftime('%Y%m%d-%H%M%S')}-{rate:g}"
    run_dir.mkdir(parents=True, exist_ok=True)
    history = run_dir / "history.jsonl"
    run_id = f"pr{int(time.time())}r{rate:g}".replace(".", "_")
    total_s = args.ramp_s + args.settle_s + args.hold_s
    traffic = TrafficRun(host, history, run_id, users=args.users, rate_per_user=args.rate_per_user,
                         payments_per_s=rate, ramp_s=args.ramp_s, max_duration_s=total_s + 30)
    progress(f"{rate:g} payments/s: {load.writers} writers at {load.per_writer_s:.3g}/s + {args.users} "
             f"users at {args.rate_per_user:g} req/s; ramp {args.ramp_s:g} s, hold {args.hold_s:g} s "
             f"({run_dir})")
    with traffic:
        traffic.wait_until_flowing(timeout_s=60)
        flowing = time.time()
        time.sleep(max(0.0, args.ramp_s + args.settle_s - (flowing - traffic.started_s)))
        meter = CpuMeter(containers, traffic.process.pid if traffic.process else None)
        meter.start()
        t0 = time.time()
        time.sleep(args.hold_s)
        t1 = time.time()
        cpu = meter.stop()
    ops = [op for op in read_ops(history) if op.get("type") != "invoke"]
    window = [op for op in ops if t0 <= (op.get("end_s") or 0.0) < t1]
    payments = [op for op in window if op.get("f") == "payments.create"]
    acked = [op for op in payments if op["type"] == "ok"]
    errors = [op for op in window if op["type"] != "ok"]
    latencies = [op["latency_ms"] for op in acked if op.get("latency_ms") is not None]
    error_kinds: dict[str, int] = defaultdict(int)
    for op in errors:
        error_kinds[f"{op.get('f')}: {op.get('error') or op['type']}"] += 1
    hold_s = t1 - t0
    achieved = len(acked) / hold_s
    error_pct = 100.0 * len(errors) / len(window) if window else 100.0
    figures = {
        "asked_per_s": rate, "writers": load.writers, "achieved_per_s": achieved,
        "achieved_share": achieved / rate, "error_pct": error_pct, "requests": len(window),
        "payments_sent": len(payments), "payments_acked": len(acked),
        "p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99),
        "cpu_pct": {name: round(value, 1) for name, value in cpu.items()},
        "errors": dict(sorted(error_kinds.items(), key=lambda item: -item[1])[:5]),
        "hold_s": hold_s, "run_dir": str(run_dir),
    }
    figures["sustained"] = (achieved >= SUSTAINED_SHARE * rate and error_pct < MAX_ERROR_PCT)
    top = [f"{name} {value:.0f}%" for name, value in list(cpu.items())[:4]]
    progress(f"{rate:g} payments/s: achieved {achieved:.1f}/s ({100 * achieved / rate:.1f} %), errors "
             f"{error_pct:.2f} %, p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms; CPU {', '.join(top)}"
             + (f"; errors {figures['errors']}" if errors else ""))
    return figures


def busiest(cpu: dict[str, float], count: int = 3) -> str:
    parts = [(n, v) for n, v in cpu.items() if not n.startswith("machine")][:count]
    return ", ".join(f"{name} {value:.0f}%" for name, value in parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=parse_floats, default=[100.0, 200.0, 300.0, 400.0, 500.0, 600.0],
                        help="payments per second to ask, in increasing order (default 100,200,...,600)")
    parser.add_argument("--hold-s", type=float, default=60.0, help="measured hold per rate (default 60)")
    parser.add_argument("--ramp-s", type=float, default=5.0, help="ramp before the hold (default 5)")
    parser.add_argument("--settle-s", type=float, default=5.0,
                        help="seconds after the ramp before the hold window (default 5)")
    parser.add_argument("--users", type=int, default=10, help="browsing users beside the writers (default 10)")
    parser.add_argument("--rate-per-user", type=float, default=2.0,
                        help="requests/s of each browsing user (default 2)")
    parser.add_argument("--all", action="store_true", help="run every rate, even after one is not sustained")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--up", action="store_true", help="bring a mirror up first and take it down after")
    where.add_argument("--ground-truth", action="store_true", help="against the ground-truth service (no Docker)")
    parser.add_argument("--state", default=None, help="the mirror's state file (default reports/mirror/state.json)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    for rate in args.rates:
        PaymentLoad(rate, args.ramp_s)  # a bad rate is refused before anything starts

    target = ground_truth_target if args.ground_truth else mirror_target
    results: list[dict[str, Any]] = []
    with target(args) as (host, containers, described):
        progress(f"target: {described} at {host}; {os.cpu_count()} cores")
        for rate in args.rates:
            figures = measure(args, host, containers, rate)
            results.append(figures)
            if not figures["sustained"] and not args.all:
                break

    rows = [[f"{r['asked_per_s']:g}", r["writers"], r["achieved_per_s"], f"{100 * r['achieved_share']:.1f}",
             r["error_pct"], r["p50_ms"], r["p99_ms"], r["cpu_pct"].get("machine (all cores)"),
             busiest(r["cpu_pct"]), r["sustained"]] for r in results]
    print(table(["asked/s", "writers", "achieved/s", "% of asked", "errors %", "p50 ms", "p99 ms",
                 "machine CPU % (2 cores: 200)", "busiest components (% of one core)", "sustained"], rows,
                title=f"Payment rate through {described}, recorder on, {args.hold_s:g} s holds"))
    sustained = [r for r in results if r["sustained"]]
    if sustained:
        best = max(sustained, key=lambda r: r["asked_per_s"])
        print(f"\nhighest sustained rate: {best['asked_per_s']:g} payments/s (achieved "
              f"{best['achieved_per_s']:.1f}/s, errors {best['error_pct']:.2f} %, p50 {best['p50_ms']} ms, "
              f"p99 {best['p99_ms']} ms); busiest: {busiest(best['cpu_pct'])}")
    else:
        print("\nno rate was sustained")
    failed = [r for r in results if not r["sustained"]]
    if failed:
        first = failed[0]
        print(f"first rate not sustained: {first['asked_per_s']:g}/s (achieved {first['achieved_per_s']:.1f}/s, "
              f"errors {first['error_pct']:.2f} %); busiest: {busiest(first['cpu_pct'], 5)}")
    if args.json:
        write_json(args.json, {"target": described, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
