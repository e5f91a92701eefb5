"""RPO exactness: drdrill reports exactly the acknowledged writes a failover lost, and how far back.

For each replication lag (default ``lose_last_s`` 1, 2 and 5 s) one real drill runs: a fresh
ground-truth service, write-heavy Locust traffic (default 20 users at 20 req/s: 4 payments users, half
of whose requests are writes, plus users and analytics writers), and a Chaos Toolkit experiment
(built here) whose one action is ``POST /_control/failover`` — the service deletes every write
committed in the last ``lose_last_s`` seconds (recording each as lost) and refuses connections for
``--duration`` s. After recovery, traffic stops, the final read (``target.final_read(run_id)``) is
taken and :func:`drdrill.checkers.rpo.check_rpo` judges the run.

Truth: K = the keys the service says it lost that the history shows acknowledged (``ok``). The lost
set is recomputed independently (acknowledged keys − present keys) and compared with truth key by key
(false positives: reported lost but not really; false negatives: really lost but not reported) and
with the checker's ``lost_count``. The data loss window of the financial class is compared with
t_fault − the earliest acknowledgement among the truly lost acknowledged payments (exact), and with
``lose_last_s`` (how finely the traffic resolves the loss). Goals: exactly K, 0 false positives,
window within ``--goal`` (0.05 s). Each value runs ``--repeat`` (default 3) times.

The verdict table also shows what the checker calls split brain (lost writes acknowledged after the
fault action completed) next to the truth (lost writes committed after the failover instant: none,
by construction).

Run from the repo root::

    .venv/bin/python bench/rpo_exactness.py [--lose-last 1,2,5] [--users 20] [--rate 20] [--json PATH]

Run directories go to ``bench/out/rpo_exactness/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    experiment,
    ground_truth_trial,
    http_action,
    parse_floats,
    progress,
    table,
    write_json,
)

from drdrill.catalog import DATA_CLASSES
from drdrill.checkers.rpo import check_rpo
from drdrill.checkers.rto import fault_start_s
from drdrill.history import read_ops


def acknowledged(history_path: Path) -> dict[str, tuple[str, float]]:
    """Every acknowledged write: key → (service, acknowledgement time = completion ``end_s``).

    Read op by op from the history file (:func:`drdrill.history.read_ops`), independently of the
    columnar :class:`~drdrill.history.History` the checker uses.
    """
    acked: dict[str, tuple[str, float]] = {}
    for op in read_ops(history_path):
        if op.get("type") == "ok" and op.get("key") and str(op.get("process", "")).startswith("client-"):
            acked[op["key"]] = (op.get("service") or "?", float(op.get("end_s", op["time_s"])))
    return acked


def ack_rate(acked: dict[str, tuple[str, float]], service: str, start_s: float, end_s: float) -> float:
    """Writes of ``service`` acknowledged per second in ``[start_s, end_s)``."""
    n = sum(1 for svc, ack_s in acked.values() if svc == service and start_s <= ack_s < end_s)
    return n / (end_s - start_s)


def one_trial(lose_last_s: float, index: int, args: argparse.Namespace) -> dict[str, Any]:
    name = f"rpo-lose-{lose_last_s:g}s-{index}"
    baseline_s = max(args.baseline, lose_last_s + 3.0)  # the whole lost span must lie in traffic
    exp = experiment(
        f"Fail over losing the last {lose_last_s:g} s of writes (bench/rpo_exactness.py)",
        method=[http_action("lossy-failover", "/_control/failover",
                            {"duration_s": args.duration, "lose_last_s": lose_last_s,
                             "mode": "refuse"},
                            pause_after_s=args.duration + 1.0)],
    )
    with ground_truth_trial("rpo_exactness", name, args.users, args.rate, baseline_s,
                            max_duration_s=baseline_s + args.duration + args.tail + 120,
                            lose_last_s=lose_last_s) as trial:
        progress(f"{name}: running the experiment (failover losing {lose_last_s:g} s, "
                 f"{args.duration:g} s refuse outage)")
        journal = trial.run_experiment(exp)
        progress(f"{name}: experiment {journal.get('status')}")
        trial.wait_healthy()
        time.sleep(args.tail)
        progress(f"{name}: recovered; stopping traffic and taking the final read")
        trial.drill.finish()
        truth = trial.target.truth()
        final_read = trial.run.final_read()
        history = trial.drill.history()
    if final_read is None:
        raise SystemExit(f"{name}: the final read failed; see {trial.run.meta_path}")

    result = check_rpo(history, trial.config, final_read)
    fault_s = fault_start_s(history)
    (failover,) = truth["failovers"]
    acked = acknowledged(trial.run.history_path)
    present = {key for keys in final_read["present"].values() for key in keys}
    truth_lost = {entry["key"] for entry in failover["lost"]}
    truth_k = truth_lost & acked.keys()
    recomputed_lost = acked.keys() - present
    false_positives = recomputed_lost - truth_lost
    false_negatives = truth_k - recomputed_lost

    classes = {dc: result.find(f"rpo:{dc}") for dc in DATA_CLASSES}
    reported = sum(int(c.metrics["lost_count"]) for c in classes.values())
    lost_after_fault = sum(int(c.metrics["lost_after_fault_count"]) for c in classes.values())
    unexpected = sum(int(c.metrics["unexpected_count"]) for c in classes.values())
    failed_present = sum(int(c.metrics["failed_but_present_count"]) for c in classes.values())

    fin = classes["financial"].metrics
    window = fin.get("data_loss_window_s")
    lost_payments = sorted(acked[k][1] for k in truth_k if acked[k][0] == "payments")
    true_window = fault_s - lost_payments[0] if lost_payments else None
    # Lost writes acknowledged after t_fault but committed before the failover instant: the checker
    # files them as "lost after the fault" (split brain). How late can an ack be and still be lost?
    late = sorted(acked[k][1] - fault_s for k in truth_k if acked[k][1] > fault_s)
    commit_s = {entry["key"]: entry["commit_s"] for entry in failover["lost"]}
    # The ground truth never accepts a write after the failover instant (it refuses connections),
    # so every truly lost write was committed before it: a "lost after the fault" is never split brain.
    committed_after_failover = sum(1 for k in truth_k if commit_s[k] > failover["time_s"])
    # lose_last − window = injection latency + cutoff gap + ack lag (an identity): why they differ.
    lost_payment_commits = sorted(commit_s[k] for k in truth_k if acked[k][0] == "payments")
    cutoff_gap = (lost_payment_commits[0] - (failover["time_s"] - lose_last_s)
                  if lost_payment_commits else None)
    ack_lag = lost_payments[0] - lost_payment_commits[0] if lost_payments else None

    # per-service view of truth K vs recomputed lost
    by_service: dict[str, dict[str, int]] = {}
    for key in truth_k | recomputed_lost:
        service = acked[key][0]
        entry = by_service.setdefault(service, {"truth_k": 0, "recomputed_lost": 0})
        entry["truth_k"] += key in truth_k
        entry["recomputed_lost"] += key in recomputed_lost

    writes_before = {s: ack_rate(acked, s, fault_s - baseline_s + 1.0, fault_s)
                     for s in ("payments", "users", "analytics")}
    unacked_lost = truth_lost - acked.keys()
    return {
        "lose_last_s": lose_last_s,
        "run_dir": str(trial.run.path),
        "fault_s": fault_s,
        "truth": {
            "failover_time_s": failover["time_s"],
            "injection_latency_s": failover["time_s"] - fault_s,
            "lost_total": len(truth_lost),
            "lost_not_acknowledged": len(unacked_lost),
            "k_acknowledged_lost": len(truth_k),
            "writes_committed": truth["writes_committed"],
        },
        "checker": {
            "reported_lost": reported,
            "reported_by_class": {dc: int(c.metrics["lost_count"]) for dc, c in classes.items()},
            "lost_after_fault": lost_after_fault,
            "unexpected_count": unexpected,
            "failed_but_present_count": failed_present,
            "validity": {dc: str(c.validity) for dc, c in classes.items()},
            "explanation": {dc: c.explanation for dc, c in classes.items()},
            "financial_data_loss_window_s": window,
            "financial_rpo_resolution_s": fin.get("rpo_resolution_s"),
        },
        "recomputed": {
            "acknowledged": len(acked),
            "present": len(present),
            "lost": len(recomputed_lost),
            "equals_checker_lost_count": len(recomputed_lost) == reported,
            "false_positives": len(false_positives),
            "false_negatives": len(false_negatives),
            "false_positive_keys": sorted(false_positives)[:20],
            "false_negative_keys": sorted(false_negatives)[:20],
            "by_service": by_service,
            "late_lost_acks_after_fault_s": late[:20],
            "lost_committed_after_failover": committed_after_failover,
        },
        "window": {
            "true_window_s": true_window,
            "error_vs_truth_s": None if window is None or true_window is None else abs(window - true_window),
            "error_vs_lose_last_s": None if window is None else abs(window - lose_last_s),
            "cutoff_gap_s": cutoff_gap,
            "first_lost_ack_after_commit_s": ack_lag,
            "goal_s": args.goal,
        },
        "acked_writes_per_s_before_fault": writes_before,
        "goal_met": {
            "exact_k": reported == len(truth_k) and not false_negatives,
            "no_false_positives": not false_positives,
            "window_vs_truth": (window is not None and true_window is not None
                                and abs(window - true_window) <= args.goal),
            "window_vs_lose_last": window is not None and abs(window - lose_last_s) <= args.goal,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="RPO exactness of drdrill against the ground-truth service's record of the "
                    "writes a failover lost.")
    parser.add_argument("--lose-last", type=parse_floats, default=[1.0, 2.0, 5.0], metavar="S,S,...",
                        help="seconds of writes each failover loses (default 1,2,5)")
    parser.add_argument("--repeat", type=int, default=3, help="trials per value (default 3)")
    parser.add_argument("--users", type=int, default=20,
                        help="Locust users, spread over the 5 services (default 20)")
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second per user (default 20)")
    parser.add_argument("--duration", type=float, default=1.0,
                        help="seconds the failover refuses connections (default 1)")
    parser.add_argument("--baseline", type=float, default=5.0,
                        help="seconds of traffic before the fault (default 5; at least lose_last + 3)")
    parser.add_argument("--tail", type=float, default=3.0,
                        help="seconds of traffic after the service is healthy again (default 3)")
    parser.add_argument("--goal", type=float, default=0.05,
                        help="loss-window accuracy goal in seconds (default 0.05)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.users < 5:
        parser.error("--users must be at least 5 (one per service)")

    progress(f"RPO exactness: lose_last {', '.join(f'{v:g}' for v in args.lose_last)} s x {args.repeat}; "
             f"{args.users} users x {args.rate:g} req/s; failover outage {args.duration:g} s")
    trials = []
    for lose_last_s in args.lose_last:
        for index in range(1, args.repeat + 1):
            t = one_trial(lose_last_s, index, args)
            trials.append(t)
            progress(f"rpo-lose-{lose_last_s:g}s-{index}: K={t['truth']['k_acknowledged_lost']} "
                     f"reported={t['checker']['reported_lost']} FP={t['recomputed']['false_positives']} "
                     f"FN={t['recomputed']['false_negatives']} window={t['checker']['financial_data_loss_window_s']}")

    count_rows, window_rows = [], []
    for t in trials:
        tr, ch, rc, w, ok = t["truth"], t["checker"], t["recomputed"], t["window"], t["goal_met"]
        count_rows.append([
            f"{t['lose_last_s']:g}", tr["k_acknowledged_lost"], ch["reported_lost"], rc["lost"],
            rc["equals_checker_lost_count"], rc["false_positives"], rc["false_negatives"],
            ch["unexpected_count"], ok["exact_k"], ok["no_false_positives"]])
        window_rows.append([
            f"{t['lose_last_s']:g}", ch["financial_data_loss_window_s"], w["true_window_s"],
            w["error_vs_truth_s"], w["error_vs_lose_last_s"], tr["injection_latency_s"] * 1000,
            None if w["cutoff_gap_s"] is None else w["cutoff_gap_s"] * 1000,
            None if w["first_lost_ack_after_commit_s"] is None else w["first_lost_ack_after_commit_s"] * 1000,
            round(t["acked_writes_per_s_before_fault"]["payments"], 1),
            ok["window_vs_truth"], ok["window_vs_lose_last"]])
    print(table(
        ["lose_last_s", "K", "reported", "recomputed", "=checker", "FP", "FN", "unexpected",
         "exact_K", "0_FP"],
        count_rows, title="RPO exactness: counts (K = truly lost acknowledged writes, all services; "
                          "reported = checker lost_count, both data classes; recomputed = acked − present)"))
    print()
    print(table(
        ["lose_last_s", "window_s", "true_window_s", "|err|_truth_s", "|err|_lose_last_s",
         "inject_lat_ms", "cutoff_gap_ms", "ack_lag_ms", "pay_acks/s", f"truth<={args.goal:g}",
         f"lose_last<={args.goal:g}"],
        window_rows, title="Financial data loss window (true window = t_fault − earliest ack among truly "
                           "lost payments; lose_last − window = inject_lat + cutoff_gap + ack_lag: the "
                           "fault's start-up, the wait for the first payment write after the cutoff, "
                           "and its commit→ack time)"))
    print()
    verdict_rows = []
    for t in trials:
        late = t["recomputed"]["late_lost_acks_after_fault_s"]
        verdict_rows.append([
            f"{t['lose_last_s']:g}", t["checker"]["reported_by_class"]["financial"],
            t["checker"]["reported_by_class"]["other"], t["checker"]["validity"]["financial"],
            t["checker"]["validity"]["other"], t["truth"]["lost_total"],
            t["truth"]["lost_not_acknowledged"], t["checker"]["financial_rpo_resolution_s"],
            t["checker"]["lost_after_fault"], t["recomputed"]["lost_committed_after_failover"],
            f"{late[0] * 1000:.1f}..{late[-1] * 1000:.1f}" if late else "-",
            t["truth"]["injection_latency_s"] * 1000])
    print(table(["lose_last_s", "lost_financial", "lost_other", "verdict_financial", "verdict_other",
                 "truth_lost_all", "truth_lost_unacked", "rpo_resolution_s", "split_brain_reported",
                 "committed_after_failover", "late_acks_ms", "inject_lat_ms"],
                verdict_rows, title="Checker verdicts (split_brain_reported = lost writes acknowledged "
                                    "after t_fault; committed_after_failover = truly split-brain ones; "
                                    "late_acks_ms = their acks, ms after t_fault)"))
    spurious = [t for t in trials if t["checker"]["lost_after_fault"]
                > t["recomputed"]["lost_committed_after_failover"]]
    if spurious:
        print()
        print(f"NOTE: in {len(spurious)} of {len(trials)} trial(s) the checker reported split brain that "
              "the truth rules out: writes sent in the injection latency (between the nemesis start "
              "op = t_fault and the failover taking effect) were committed before the failover, lost "
              "by it, and acknowledged after t_fault; their data class is judged INVALID.")
    all_met = all(all(t["goal_met"].values()) for t in trials)
    print()
    names = {"exact_k": "exactly K reported", "no_false_positives": "0 false positives",
             "window_vs_truth": f"window within {args.goal:g} s of truth",
             "window_vs_lose_last": f"window within {args.goal:g} s of lose_last"}
    for goal, text in names.items():
        met = sum(bool(t["goal_met"][goal]) for t in trials)
        print(f"{text}: {met}/{len(trials)} trials")
    errors = [t["window"]["error_vs_lose_last_s"] for t in trials
              if t["window"]["error_vs_lose_last_s"] is not None]
    if errors:
        print(f"|window − lose_last|: mean {np.mean(errors):.3f} s, max {max(errors):.3f} s")
    print(f"goals (exact K, 0 FP, window within {args.goal:g} s of truth and of lose_last): "
          f"{'MET' if all_met else 'NOT MET'}")
    if args.json:
        write_json(args.json, {"benchmark": "rpo_exactness", "args": vars(args), "trials": trials,
                               "goal_met": all_met})
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
