"""The loss of a cross-region failover measured two ways: users' loss window vs the database's lag at the moment of loss.

One command, the real mirror (hold the mirror lock; it is brought up unless one is up in the state
file, and taken down at the end if it was brought up here)::

    flock /tmp/drdrill-mirror.lock .venv/bin/python bench/loss_agreement.py [--rates 50,100,200] \
        [--trials 1] [--json PATH]

Each trial is one drill of the shipped experiment ``cross-region-failover`` (the DR runbook; its
rollback fails back) at a payment rate, with the replication sampler on (every 0.1 s). Per trial:
the users' loss window (``data_loss_window_s``), the database's (``db_loss_window_s``: t_fault − the
DR's last replayed commit), |difference| (the checker's ``db_difference_s``: the first lost
acknowledgement − the last replayed commit; without a loss, the loss the database claims before the
fault) against the goal (≤ 0.1 s) and the checker's tolerance
(sampling period + one write interval), the lost payments against rate × window, the DR lag at the
fault (bytes) and the WAN RTT (when the mirror measures it).

The rate is asked as payments per second (payment writers beside 10 browsing users). ``--wan-delays``
sweeps the WAN's one-way delay (``links.degrade``, restored at the end; the topology's is 35 ms).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from _common import OUT, REPO, parse_floats, progress, table, write_json

from drdrill.checkers.db_loss import loss_figures
from drdrill.config import default_config
from drdrill.drill import Drill
from drdrill.mirror import links
from drdrill.run import RunDir
from drdrill.targets.local import LocalTarget

BENCH = "loss_agreement"
GOAL_DIFFERENCE_S = 0.1
USERS = 10


def trial(target: LocalTarget, rate_per_s: float, index: int, wan_delay_ms: float) -> dict[str, Any]:
    """One cross-region failover at ``rate_per_s`` payments/s; its figures."""
    config = default_config()
    run = RunDir.create(OUT / BENCH, f"failover-{wan_delay_ms:g}ms-{rate_per_s:g}-per-s-{index}", config,
                        target="local", bench={"payments_per_s": rate_per_s, "wan_delay_ms": wan_delay_ms})
    drill = Drill(target, config, run, [REPO / "experiments"])
    try:
        drill.start_traffic(USERS, rate_per_user=2.0, payments_per_s=rate_per_s)
        progress(f"{run.path.name}: traffic flowing; cross-region failover")
        drill.run_experiment("cross-region-failover")
        drill.wait_recovered(timeout_s=300)
    finally:
        result = drill.close()
    if result is None:
        raise SystemExit(f"{run.path}: could not be judged; see the run directory")
    rpo = result.find("rpo:financial")
    users_s, db_s, agree = loss_figures(rpo)
    m = rpo.metrics
    sampler = run.meta().get("replication_sampler") or {}
    return {
        "run": str(run.path), "wan_delay_ms": wan_delay_ms, "rate_per_s": rate_per_s, "users_window_s": users_s, "db_window_s": db_s,
        "difference_s": None if m.get("db_difference_s") is None else abs(m["db_difference_s"]),
        "tolerance_s": m.get("tolerance_s"), "agree": agree, "lost": m.get("lost_count"),
        "rate_x_window": (m.get("write_rate_per_s") or 0) * (users_s or 0),
        "measured_rate_per_s": m.get("write_rate_per_s"), "lag_bytes_at_fault": m.get("db_lag_bytes_at_fault"),
        "wan_rtt_ms": m.get("wan_rtt_ms"),
        "samples_per_s": (sampler.get("dr") or {}).get("achieved_per_s"),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=parse_floats, default=[50.0, 100.0, 200.0],
                        help="payments per second, comma-separated (default 50,100,200)")
    parser.add_argument("--wan-delays", type=parse_floats, default=[35.0, 100.0],
                        help="one-way WAN delays in ms, comma-separated (default 35,100)")
    parser.add_argument("--trials", type=int, default=1, help="trials per rate (default 1)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    target = LocalTarget(state_file=str(OUT / BENCH / "state.json"))
    (OUT / BENCH).mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    try:
        target.start()
        for delay_ms in args.wan_delays:
            links.degrade(target.state, "wan", delay_ms=delay_ms, source="bench")
            for rate in args.rates:
                for index in range(args.trials):
                    if not target.healthy():  # a failed rollback would poison every later trial
                        raise SystemExit(f"the mirror is not healthy after the previous trial (see its "
                                         f"journal's rollbacks: {rows[-1]['run'] if rows else '-'}); stopping")
                    rows.append(trial(target, rate, index, delay_ms))
                    progress(f"WAN {delay_ms:g} ms, rate {rate:g}/s trial {index}: {rows[-1]}")
    finally:
        if target.state is not None:
            links.restore(target.state)
        target.stop()
    headers = ["WAN one-way (ms)", "payments/s", "measured/s", "users' window (s)", "DB window (s)", "|difference| (s)",
               "tolerance (s)", "agree", "lost", "rate x window", "DR lag at fault (bytes)", "WAN RTT (ms)",
               "samples/s"]  # fmt: skip
    print(table(headers, [[r["wan_delay_ms"], r["rate_per_s"], r["measured_rate_per_s"], r["users_window_s"], r["db_window_s"],
                           r["difference_s"], r["tolerance_s"], r["agree"], r["lost"], r["rate_x_window"],
                           r["lag_bytes_at_fault"], r["wan_rtt_ms"], r["samples_per_s"]] for r in rows],
                title="Cross-region failover: the users' loss window vs the database's"))
    differences = [r["difference_s"] for r in rows if r["difference_s"] is not None]
    if differences:
        within = sum(d <= GOAL_DIFFERENCE_S for d in differences)
        print(f"|difference| <= {GOAL_DIFFERENCE_S} s in {within} of {len(differences)} trial(s); "
              f"median {statistics.median(differences):.3f} s, max {max(differences):.3f} s")
    if args.json:
        write_json(args.json, rows)


if __name__ == "__main__":
    main()
