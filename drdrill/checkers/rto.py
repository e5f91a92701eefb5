"""The RTO checker: how long users of each service and tier were not served, measured from the history.

Terms and units
---------------
t_fault (``fault_s``)
    Epoch seconds at which the first fault action of the experiment's method started (the first
    nemesis ``start:`` op with phase ``method`` and kind ``action``).
client op of a service
    A completion (``ok``/``fail``/``info``) of a ``client-*`` process aimed at that service, placed at
    its start time ``time_s``: what a user who tried at that moment got.
observation end (``observed_until_s``)
    ``time_s`` of the last client op in the history.
window
    The client ops of a service whose ``time_s`` lies in ``[t, t + window_s)`` for some op at ``t``.
    A window is *full* when ``t + window_s`` is not after the observation end (truncated windows at the
    end prove nothing and are ignored); *bad* when full and its ok-ratio is below ``threshold``;
    *good* when full, its ok-ratio is at least ``threshold``, it holds at least ``min_ops`` ops and its
    first op is ``ok`` (so recovery is placed at a success a user saw, not inside the failures a
    tolerant ratio lets through).
t_recovered (``recovered_s``)
    The start of the first good window that begins after every bad window starting at or after
    t_fault. Flapping therefore counts until the last relapse.
maintenance window (``maintenance_windows``)
    A planned outage, ``[start, end)`` in epoch seconds: from the start of the runbook's
    ``maintenance`` step to the end of its next ``dns-back`` step (the failback's traffic stop), or
    a ``maintenance_window_s`` a nemesis op reports (the rollback's automatic failback). Client ops
    started in one are not judged for the failover's RTO: traffic was stopped on purpose. Once the
    runbook opens one (the failback began), nothing later is judged for the failover either.
failback RTO (``rto-failback``)
    The same measurement with t_fault = the start of the runbook's first maintenance window: how
    long users were not served because of the failback.
measured RTO (``measured_rto_s``)
    ``t_recovered - t_fault``; 0 when no window after t_fault is bad (users never saw degradation).
time to impact (``time_to_impact_s``)
    Seconds from t_fault to the first non-ok client op of the service at or after it.

Verdicts: INVALID when the measured RTO is not below the objective, or when the service never
recovered within the observation (``rto_lower_bound_s`` then says how long it was at least down);
UNKNOWN when there was no fault, or too little traffic after the fault to judge; else VALID. A tier
is recovered when all its services are: its RTO is the largest of theirs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import numpy as np

from drdrill.checkers.result import CheckResult, Validity, compose
from drdrill.config import DrillConfig, RecoveryWindow
from drdrill.history import INVOKE, OK, History

__all__ = ["check_rto", "fault_applied_s", "fault_start_s", "maintenance_windows", "service_rto"]


def clock(epoch_s: float) -> str:
    """Epoch seconds as a UTC wall-clock time with milliseconds (for explanations)."""
    return datetime.fromtimestamp(epoch_s, UTC).strftime("%H:%M:%S.%f")[:-3] + " UTC"


def fault_start_s(history: History) -> float | None:
    """t_fault: start of the first fault action in the method, or None when no fault ran."""
    for op in history.nemesis:
        if (
            str(op.get("f", "")).startswith("start:")
            and op.get("phase", "method") == "method"
            and op.get("kind", "action") == "action"
        ):
            return float(op["time_s"])
    return None


def fault_applied_s(history: History) -> float | None:
    """When the first fault action completed (the fault was in effect); its start if it never completed."""
    started = fault_start_s(history)
    if started is None:
        return None
    for op in history.nemesis:
        if (str(op.get("f", "")).startswith("stop:") and op.get("phase", "method") == "method"
                and op.get("kind", "action") == "action" and op.get("time_s") == started and "end_s" in op):
            return float(op["end_s"])
    return started


def maintenance_windows(history: History) -> list[tuple[float, float, str]]:
    """Planned outages as ``(start_s, end_s, source)``; source ``runbook`` or the activity's ``f``."""
    until = observed_until_s(history)
    windows: list[tuple[float, float, str]] = []
    opened: float | None = None
    for op in history.nemesis:
        f = str(op.get("f", ""))
        reported = op.get("maintenance_window_s")
        if reported and f.startswith("stop:"):
            windows.append((float(reported[0]), float(reported[1]), f[len("stop:"):]))
        step = op.get("runbook_step")
        if step == "maintenance" and f.startswith("start:") and opened is None:
            opened = float(op["time_s"])
        elif step == "dns-back" and f.startswith("stop:") and opened is not None:
            windows.append((opened, float(op.get("end_s", op["time_s"])), "runbook"))
            opened = None
    if opened is not None:
        windows.append((opened, until if until is not None else float("inf"), "runbook"))
    return sorted(windows)


def observed_until_s(history: History) -> float | None:
    """Start time of the last client op, or None for a history without client ops."""
    completions = history.time_s[history.type != INVOKE]
    return float(completions.max()) if completions.size else None


def service_rto(
    history: History,
    service: str,
    fault_s: float | None,
    objective_s: float,
    recovery: RecoveryWindow,
    observed_until: float | None = None,
    excluded: list[tuple[float, float, str]] | None = None,
    prefix: str = "rto",
) -> CheckResult:
    """Measure one service's RTO against ``objective_s`` (see the module docstring).

    ``excluded``: windows whose client ops are not judged (default: the history's maintenance
    windows; pass [] for none). ``prefix`` names the result (``<prefix>:<service>``).
    """
    name = f"{prefix}:{service}"
    if excluded is None:
        excluded = maintenance_windows(history)
    if fault_s is None:
        return CheckResult(name, Validity.UNKNOWN, explanation=[
            f"No fault action started in this run, so there is nothing to measure {service}'s recovery from."])
    if observed_until is None:
        observed_until = observed_until_s(history)
    selected = (history.service.codes == history.service.code(service)) & (history.type != INVOKE)
    for start, end, _ in excluded:
        selected &= ~((history.time_s >= start) & (history.time_s < end))
    times = history.time_s[selected]
    order = np.argsort(times, kind="stable")
    times = times[order]
    ok = history.type[selected][order] == OK
    del order, selected
    n = times.size
    metrics: dict[str, float | int | None] = {
        "objective_s": objective_s,
        "fault_s": fault_s,
        "ops": int(n),
        "window_s": recovery.window_s,
        "threshold": recovery.threshold,
    }
    first = int(np.searchsorted(times, fault_s, side="left"))
    if n == 0 or first >= n or observed_until is None:
        return CheckResult(name, Validity.UNKNOWN, metrics, explanation=[
            f"No request to {service} was observed after the fault at {clock(fault_s)}; "
            "run more synthetic traffic for this service to measure its recovery."])
    times_after = times[first:]
    ok_after = ok[first:]
    del times, ok
    failures_after = np.flatnonzero(~ok_after)
    metrics["ops_after_fault"] = int(times_after.size)
    metrics["errors_after_fault"] = int(failures_after.size)
    metrics["time_to_impact_s"] = (
        float(times_after[failures_after[0]] - fault_s) if failures_after.size else None)
    metrics["observed_until_s"] = observed_until

    ok_cumulative = np.concatenate(([0], np.cumsum(ok_after, dtype=np.int64)))
    ends = np.searchsorted(times_after, times_after + recovery.window_s, side="left")
    starts = np.arange(times_after.size)
    totals = ends - starts
    oks = ok_cumulative[ends] - ok_cumulative[starts]
    full = times_after + recovery.window_s <= observed_until
    below = oks < recovery.threshold * totals
    bad = full & below
    good = full & ~below & (totals >= recovery.min_ops) & ok_after
    del ends, oks, below, ok_cumulative
    bad_at = np.flatnonzero(bad)
    tier_text = f"objective {objective_s:g} s"
    if bad_at.size == 0:
        if not good.any():
            return CheckResult(name, Validity.UNKNOWN, metrics, explanation=[
                f"Too little traffic to {service} after the fault to judge recovery: no {recovery.window_s:g} s "
                f"window held {recovery.min_ops} requests. Run more users or observe longer."])
        metrics["measured_rto_s"] = 0.0
        metrics["recovered_s"] = fault_s
        return CheckResult(name, Validity.VALID, metrics, explanation=[
            f"Users of {service} saw no degradation after the fault at {clock(fault_s)}: every "
            f"{recovery.window_s:g} s window stayed at or above {recovery.threshold:.0%} success "
            f"({metrics['errors_after_fault']} errors in {metrics['ops_after_fault']} requests); measured RTO 0 s ({tier_text})."])
    last_bad = int(bad_at[-1])
    metrics["bad_windows"] = int(bad_at.size)
    recovered = np.flatnonzero(good[last_bad + 1 :])
    if recovered.size == 0:
        lower_bound = float(times_after[last_bad] - fault_s)
        metrics["measured_rto_s"] = None
        metrics["rto_lower_bound_s"] = lower_bound
        evidence = _evidence(history, service, fault_s)
        observed_long_enough = bool(full[last_bad + 1 :].any())
        if observed_long_enough and lower_bound < objective_s:
            return CheckResult(name, Validity.UNKNOWN, metrics, evidence, explanation=[
                f"{service} was degraded for at least {lower_bound:.2f} s after the fault at {clock(fault_s)}; "
                f"afterwards no {recovery.window_s:g} s window held {recovery.min_ops} requests, too thin "
                "to prove recovery. Run more users."])
        why = (f"no later {recovery.window_s:g} s window reached {recovery.threshold:.0%} success"
               if observed_long_enough else
               f"the observation ended {observed_until - times_after[last_bad]:.1f} s after the last "
               f"degraded window began, before a clean {recovery.window_s:g} s window")
        return CheckResult(name, Validity.INVALID, metrics, evidence, explanation=[
            f"{service} did not recover within the observation: it was still degraded "
            f"{lower_bound:.2f} s after the fault at {clock(fault_s)} and {why} ({tier_text})."])
    recovered_s = float(times_after[last_bad + 1 + int(recovered[0])])
    measured = recovered_s - fault_s
    metrics["recovered_s"] = recovered_s
    metrics["measured_rto_s"] = measured
    validity = Validity.VALID if measured < objective_s else Validity.INVALID
    verdict = "within" if validity is Validity.VALID else "NOT within"
    return CheckResult(name, validity, metrics, evidence=_evidence(history, service, fault_s), explanation=[
        f"{service} recovered {measured:.2f} s after the fault ({clock(fault_s)} → {clock(recovered_s)}), "
        f"{verdict} its {tier_text}: from then on every {recovery.window_s:g} s window of requests "
        f"succeeded at ≥ {recovery.threshold:.0%}."])


def _evidence(history: History, service: str, fault_s: float, samples: int = 3) -> dict:
    """First and last failed client ops of ``service`` at or after the fault."""
    rows = np.flatnonzero(
        (history.service.codes == history.service.code(service))
        & (history.type != INVOKE) & (history.type != OK) & (history.time_s >= fault_s))
    if rows.size == 0:
        return {}
    rows = rows[np.argsort(history.time_s[rows], kind="stable")]
    picked = list(rows[:samples]) + [r for r in rows[-samples:] if r not in set(rows[:samples])]
    return {
        "first_error_s": float(history.time_s[rows[0]]),
        "last_error_s": float(history.time_s[rows[-1]]),
        "sample_errors": [history.op(int(r)) for r in picked],
    }


def check_rto(
    history: History,
    config: DrillConfig,
    objective_override_s: Mapping[str, float] | None = None,
    fault_s: float | None = None,
) -> CheckResult:
    """RTO of every configured service and tier (``rto:<service>``, ``rto-tier:<tier>``), and the
    failback's (``rto-failback`` with ``rto-failback-tier:<tier>``) when the runbook opened a
    maintenance window.

    ``objective_override_s`` maps a service or tier name to an objective in seconds that replaces the
    configured one (a Gherkin step's "within 60 seconds"). ``fault_s`` defaults to the history's
    t_fault.
    """
    overrides = dict(objective_override_s or {})
    if fault_s is None:
        fault_s = fault_start_s(history)
    observed_until = observed_until_s(history)
    windows = maintenance_windows(history)
    planned = [w for w in windows if w[2] == "runbook"]
    failover_windows, failover_until = windows, observed_until
    if planned:  # the failover is judged on what users saw before the failback began
        failover_windows = [*windows, (planned[0][0], float("inf"), "failback")]
        failover_until = min(observed_until or planned[0][0], planned[0][0])
    children = _tiers(history, config, overrides, fault_s, failover_until, failover_windows, "rto")
    if planned:
        failback_s = planned[0][0]
        others = [w for w in windows if w[2] != "runbook"]
        failback = compose("rto-failback", _tiers(history, config, overrides, failback_s,
                                                  observed_until, others, "rto-failback"))
        failback.metrics = {"maintenance_start_s": failback_s,
                            "maintenance_s": planned[0][1] - planned[0][0]}
        children.append(failback)
    return compose("rto", children)


def _tiers(
    history: History,
    config: DrillConfig,
    overrides: Mapping[str, float],
    fault_s: float | None,
    observed_until: float | None,
    excluded: list[tuple[float, float, str]],
    prefix: str,
) -> list[CheckResult]:
    """One composed result per tier (``<prefix>-tier:<tier>``) over its services' RTOs."""
    cause = "the fault" if prefix == "rto" else "the maintenance window opened"
    tiers = []
    for tier, tier_objective_s in config.rto_objective_s.items():
        services = config.services_in_tier(tier)
        if not services:
            continue
        objective_s = overrides.get(tier, tier_objective_s)
        results = [
            service_rto(history, service, fault_s, overrides.get(service, objective_s),
                        config.recovery, observed_until, excluded, prefix)
            for service in services
        ]
        tier_result = compose(f"{prefix}-tier:{tier}", results)
        measured = [r.metrics.get("measured_rto_s") for r in results]
        tier_measured = max(measured) if measured and None not in measured else None
        tier_result.metrics = {"objective_s": objective_s, "measured_rto_s": tier_measured}
        per_service = ", ".join(
            f"{s} {m:.2f} s" if m is not None else f"{s} {r.validity.value}"
            for s, m, r in zip(services, measured, results, strict=True))
        if tier_measured is not None:
            verdict = "within" if tier_measured < objective_s else "NOT within"
            tier_result.explanation = [
                f"The {tier} services recovered {tier_measured:.2f} s after {cause}, {verdict} the "
                f"objective of {objective_s:g} s ({per_service})."]
        else:
            tier_result.explanation = [
                f"The {tier} services' recovery could not be measured in full ({per_service}); "
                f"objective {objective_s:g} s."] + [line for r in results for line in r.explanation
                                                    if r.validity is not Validity.VALID][:3]
        tiers.append(tier_result)
    return tiers
