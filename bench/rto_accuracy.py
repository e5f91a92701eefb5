"""RTO accuracy: drdrill's measured RTO against the ground truth, and against Chaos Toolkit's own view.

For each outage length (default 2, 5 and 20 s) one real drill runs: a fresh ground-truth service,
Locust users on every service (default 10 users at 10 req/s = 20 req/s per service), and a Chaos
Toolkit experiment (built here) whose one action is ``POST /_control/outage`` (mode ``refuse``: the
whole service port stops listening) followed by a pause of ``outage + 3`` s. The same experiment
carries a continuous steady-state hypothesis (an http probe of ``/healthz``, tolerance 200, every
``--ctk-frequency`` s), so one run yields both measurements:

* drdrill: :func:`drdrill.checkers.rto.check_rto` (default config) on the history, per service;
* Chaos Toolkit: from the journal's ``steady_states.during`` probes, the time from t_fault to the
  start of the first probe that met its tolerance after one that did not (0 if none failed: CTK
  missed the outage).

Truth: the service records when the outage was applied and lifted. True RTO = truth ``end_s`` −
t_fault (t_fault = :func:`drdrill.checkers.rto.fault_start_s`, the start of the fault action). Goal:
every service within ``--goal`` (0.1 s) of it.

The continuous hypothesis starts with the method, so its probes fall about whole seconds after the
fault: in phase with whole-second outages, which flatters it. Each outage therefore runs once per
``--ctk-phases`` value (default 0 and 0.5 s), a pause before the fault action that shifts the fault
against the probe grid (drdrill's figures do not depend on it).

Synthetic users start at random phases of their pacing period, so a service with ``u`` users at
``--rate`` r is sampled about every 1/(u·r) s (see the ``sample_s`` column).

Run from the repo root::

    .venv/bin/python bench/rto_accuracy.py [--outages 2,5,20] [--users 10] [--rate 10] [--json PATH]

Run directories go to ``bench/out/rto_accuracy/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from _common import (
    experiment,
    fmt,
    ground_truth_trial,
    healthz_hypothesis,
    http_action,
    iso_to_epoch_s,
    parse_floats,
    progress,
    table,
    write_json,
)

from drdrill.catalog import SERVICES
from drdrill.checkers.rto import check_rto, fault_start_s, observed_until_s
from drdrill.history import INVOKE, OK, History


def parse_phases(text: str) -> list[float]:
    """``"0,0.5"`` → ``[0.0, 0.5]`` (non-negative seconds)."""
    values = [float(part) for part in text.split(",") if part.strip()]
    if not values or any(not 0 <= v < 60 for v in values):
        raise ValueError(f"expected seconds in [0, 60), got {text!r}")
    return values


def ctk_view(journal: dict[str, Any], fault_s: float) -> dict[str, Any]:
    """What Chaos Toolkit's continuous hypothesis saw: its RTO, detection time and probe cadence."""
    probes = []
    for state in (journal.get("steady_states") or {}).get("during") or []:
        for probe in (state or {}).get("probes") or []:
            probes.append((iso_to_epoch_s(probe["start"]), iso_to_epoch_s(probe["end"]),
                           bool(probe.get("tolerance_met"))))
    probes.sort()
    starts = np.array([p[0] for p in probes])
    view: dict[str, Any] = {
        "probes": len(probes),
        "probes_failed": sum(1 for p in probes if not p[2]),
        "probe_interval_s": float(np.diff(starts).mean()) if starts.size > 1 else None,
        "first_failed_probe_s": None,
        "recovered_probe_s": None,
        "rto_s": None,
        "missed": False,
    }
    failed_at = None
    for start, _end, met in probes:
        if not met and failed_at is None:
            failed_at = start
        elif met and failed_at is not None:
            view["recovered_probe_s"] = start
            view["rto_s"] = start - fault_s
            break
    if failed_at is None:
        view["missed"] = True
        view["rto_s"] = 0.0  # CTK would report no deviation: the outage was not seen at all
    else:
        view["first_failed_probe_s"] = failed_at
        view["time_to_detect_s"] = failed_at - fault_s
    return view


def first_ok_after(history: History, service: str, instant_s: float) -> float | None:
    """Start time of the first ``ok`` client op of ``service`` starting at or after ``instant_s``."""
    rows = (history.service.codes == history.service.code(service)) & (history.type == OK)
    times = history.time_s[rows]
    times = times[times >= instant_s]
    return float(times.min()) if times.size else None


def service_rate(history: History, service: str, start_s: float, end_s: float) -> float:
    """Completed client ops per second of ``service`` starting in ``[start_s, end_s)``."""
    rows = (history.service.codes == history.service.code(service)) & (history.type != INVOKE)
    times = history.time_s[rows]
    n = int(((times >= start_s) & (times < end_s)).sum())
    return n / (end_s - start_s) if end_s > start_s else 0.0


def sampling_interval(history: History, service: str, start_s: float, end_s: float,
                      cluster_s: float = 0.005) -> float | None:
    """Mean time between *distinct* request instants of ``service`` in ``[start_s, end_s)``.

    Requests starting within ``cluster_s`` of the previous one count as the same instant: users in
    lock-step sample the service no more often than one user would, whatever their number.
    """
    rows = (history.service.codes == history.service.code(service)) & (history.type != INVOKE)
    times = np.sort(history.time_s[rows])
    times = times[(times >= start_s) & (times < end_s)]
    if times.size < 2:
        return None
    instants = 1 + int((np.diff(times) > cluster_s).sum())
    return (end_s - start_s) / instants


def one_trial(outage_s: float, phase_s: float, index: int, args: argparse.Namespace) -> dict[str, Any]:
    name = f"rto-{outage_s:g}s-phase{phase_s:g}-{index}"
    exp = experiment(
        f"Refuse every connection for {outage_s:g} s (bench/rto_accuracy.py)",
        method=[http_action("refuse-outage", "/_control/outage",
                            {"duration_s": outage_s, "mode": "refuse"},
                            pause_after_s=outage_s + args.ctk_settle, pause_before_s=phase_s)],
        hypothesis=healthz_hypothesis(),
    )
    with ground_truth_trial("rto_accuracy", name, args.users, args.rate, args.baseline,
                            max_duration_s=outage_s + args.baseline + args.tail + 120,
                            outage_s=outage_s, ctk_phase_s=phase_s) as trial:
        progress(f"{name}: running the experiment ({phase_s:g} s pause, refuse outage {outage_s:g} s, "
                 f"continuous hypothesis every {args.ctk_frequency:g} s, method lasts "
                 f"~{phase_s + outage_s + args.ctk_settle:g} s)")
        journal = trial.run_experiment(exp, hypothesis_strategy="continuously",
                                       hypothesis_frequency_s=args.ctk_frequency)
        progress(f"{name}: experiment {journal.get('status')} (deviated: {journal.get('deviated')}); "
                 f"{len(journal['steady_states']['during'])} continuous hypothesis runs")
        trial.wait_healthy()
        truth = trial.target.truth()
        (outage,) = truth["outages"]
        while outage["end_s"] is None:  # cannot happen once healthy, but never guess
            time.sleep(0.1)
            (outage,) = trial.target.truth()["outages"]
        wait_s = outage["end_s"] + args.tail - time.time()
        if wait_s > 0:
            progress(f"{name}: keeping traffic {wait_s:.1f} s more ({args.tail:g} s after recovery)")
            time.sleep(wait_s)
        trial.drill.finish()
        history = trial.drill.history()
    # results.json written, service stopped; judge with drdrill's checker
    result = check_rto(history, trial.config)
    fault_s = fault_start_s(history)
    observed_until = observed_until_s(history)
    true_rto = outage["end_s"] - fault_s
    per_service = {}
    for service in SERVICES:
        metrics = result.find(f"rto:{service}").metrics
        measured = metrics.get("measured_rto_s")
        first_ok = first_ok_after(history, service, outage["end_s"])
        per_service[service] = {
            "measured_rto_s": measured,
            "error_s": None if measured is None else measured - true_rto,
            "first_ok_after_recovery_s": None if first_ok is None else first_ok - outage["end_s"],
            "req_per_s_after_recovery": service_rate(history, service, outage["end_s"], observed_until),
            "req_per_s_baseline": service_rate(history, service, fault_s - args.baseline, fault_s),
            "sampling_interval_s": sampling_interval(history, service, outage["end_s"], observed_until),
            "validity": str(result.find(f"rto:{service}").validity),
        }
    errors = [abs(s["error_s"]) for s in per_service.values() if s["error_s"] is not None]
    drdrill_error = max(errors) if len(errors) == len(SERVICES) else None
    ctk = ctk_view(journal, fault_s)
    ctk_error = None if ctk["rto_s"] is None else abs(ctk["rto_s"] - true_rto)
    return {
        "outage_s": outage_s,
        "ctk_phase_s": phase_s,
        "run_dir": str(trial.run.path),
        "fault_s": fault_s,
        "truth": {
            "start_s": outage["start_s"],
            "end_s": outage["end_s"],
            "duration_s": outage["end_s"] - outage["start_s"],
            "injection_latency_s": outage["start_s"] - fault_s,
            "true_rto_s": true_rto,
        },
        "drdrill": {
            "per_service": per_service,
            "max_abs_error_s": drdrill_error,
            "goal_s": args.goal,
            "goal_met": drdrill_error is not None and drdrill_error <= args.goal,
        },
        "ctk": {**ctk, "abs_error_s": ctk_error,
                "error_ratio": (ctk_error / drdrill_error
                                if ctk_error is not None and drdrill_error else None)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="RTO accuracy of drdrill (and of Chaos Toolkit's continuous hypothesis) against "
                    "the ground-truth service's own record of a refuse outage.")
    parser.add_argument("--outages", type=parse_floats, default=[2.0, 5.0, 20.0], metavar="S,S,...",
                        help="outage lengths in seconds (default 2,5,20)")
    parser.add_argument("--repeat", type=int, default=1, help="trials per outage length (default 1)")
    parser.add_argument("--users", type=int, default=10,
                        help="Locust users, spread over the 5 services (default 10)")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second per user (default 10)")
    parser.add_argument("--baseline", type=float, default=5.0,
                        help="seconds of traffic before the fault (default 5)")
    parser.add_argument("--tail", type=float, default=12.0,
                        help="seconds of traffic kept after the truth recovery (default 12; the checker "
                             "needs one full 10 s recovery window)")
    parser.add_argument("--ctk-frequency", type=float, default=1.0,
                        help="seconds between continuous hypothesis runs (default 1)")
    parser.add_argument("--ctk-settle", type=float, default=3.0,
                        help="pause after the outage action beyond the outage itself, so the continuous "
                             "hypothesis can see recovery (default 3)")
    parser.add_argument("--ctk-phases", type=parse_phases, default=[0.0, 0.5], metavar="S,S,...",
                        help="pause before the fault action, one trial per value (default 0,0.5): "
                             "shifts the fault against the continuous hypothesis' probe grid, which "
                             "starts with the method. With 0 the probes fall about whole seconds after "
                             "the fault, in phase with whole-second outages")
    parser.add_argument("--goal", type=float, default=0.1, help="accuracy goal in seconds (default 0.1)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.users < len(SERVICES):
        parser.error(f"--users must be at least {len(SERVICES)} (one per service)")

    per_service_rate = args.users / len(SERVICES) * args.rate
    progress(f"RTO accuracy: outages {', '.join(f'{o:g}' for o in args.outages)} s x CTK phases "
             f"{', '.join(f'{p:g}' for p in args.ctk_phases)} s x {args.repeat}; "
             f"{args.users} users x {args.rate:g} req/s = {per_service_rate:g} req/s per service offered")
    trials = []
    for outage_s in args.outages:
        for phase_s in args.ctk_phases:
            for index in range(1, args.repeat + 1):
                trial = one_trial(outage_s, phase_s, index, args)
                trials.append(trial)
                d, c = trial["drdrill"], trial["ctk"]
                progress(f"rto-{outage_s:g}s-phase{phase_s:g}-{index}: true RTO "
                         f"{trial['truth']['true_rto_s']:.3f} s; drdrill max |error| "
                         f"{fmt(d['max_abs_error_s'])} s; CTK RTO {fmt(c['rto_s'])} s "
                         f"(|error| {fmt(c['abs_error_s'])} s)")

    summary_rows = []
    service_rows = []
    for t in trials:
        d, c, tr = t["drdrill"], t["ctk"], t["truth"]
        measured = [s["measured_rto_s"] for s in d["per_service"].values()]
        known = [m for m in measured if m is not None]
        rates = [s["req_per_s_baseline"] for s in d["per_service"].values()]
        intervals = [s["sampling_interval_s"] for s in d["per_service"].values()
                     if s["sampling_interval_s"] is not None]
        summary_rows.append([
            f"{t['outage_s']:g}", f"{t['ctk_phase_s']:g}", tr["duration_s"], tr["true_rto_s"],
            min(known) if known else None, max(known) if known else None,
            d["max_abs_error_s"], d["goal_met"], min(rates), max(intervals) if intervals else None,
            "missed" if c["missed"] else c["rto_s"], c["abs_error_s"],
            None if c["error_ratio"] is None else f"{c['error_ratio']:.1f}x",
        ])
        for service, s in d["per_service"].items():
            service_rows.append([f"{t['outage_s']:g}", f"{t['ctk_phase_s']:g}", service, s["measured_rto_s"], s["error_s"],
                                 s["first_ok_after_recovery_s"], s["req_per_s_baseline"],
                                 s["req_per_s_after_recovery"], s["sampling_interval_s"],
                                 s["validity"]])
    print(table(
        ["outage_s", "ctk_phase_s", "truth_dur_s", "true_rto_s", "drdrill_min_s", "drdrill_max_s",
         "drdrill_max|err|_s", f"<= {args.goal:g} s", "min_req/s/svc", "max_sample_s", "ctk_rto_s",
         "ctk|err|_s",
         "ctk/drdrill"],
        summary_rows, title="RTO accuracy (seconds; truth = ground-truth service's record)"))
    print()
    print(table(
        ["outage_s", "ctk_phase_s", "service", "measured_rto_s", "error_s", "first_ok_after_end_s", "req/s_before",
         "req/s_after", "sample_s", "verdict"],
        service_rows, title="Per service (error = measured − true; first_ok_after_end = gap from the true "
                            "recovery to the first success; sample_s = mean time between distinct request "
                            "instants, requests < 5 ms apart counted once)"))
    all_met = all(t["drdrill"]["goal_met"] for t in trials)
    print()
    overview = []
    for phase_s in args.ctk_phases:
        these = [t for t in trials if t["ctk_phase_s"] == phase_s]
        dd = [t["drdrill"]["max_abs_error_s"] for t in these if t["drdrill"]["max_abs_error_s"] is not None]
        ck = [t["ctk"]["abs_error_s"] for t in these if t["ctk"]["abs_error_s"] is not None]
        overview.append([f"{phase_s:g}", len(these), max(dd) if dd else None,
                         float(np.mean(dd)) if dd else None, max(ck) if ck else None,
                         float(np.mean(ck)) if ck else None,
                         sum(t["ctk"]["missed"] for t in these)])
    print(table(["ctk_phase_s", "trials", "drdrill_max|err|_s", "drdrill_mean|err|_s", "ctk_max|err|_s",
                 "ctk_mean|err|_s", "ctk_missed"], overview, title="Overview"))
    print()
    print(f"goal |drdrill error| <= {args.goal:g} s on every service: {'MET' if all_met else 'NOT MET'}")
    if args.json:
        write_json(args.json, {"benchmark": "rto_accuracy", "args": vars(args), "trials": trials,
                               "goal_met": all_met})
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
