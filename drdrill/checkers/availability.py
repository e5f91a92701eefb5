"""The availability checker: what share of each service's requests succeeded, before, during and after the fault.

Terms and units
---------------
ok-ratio
    ``ok`` completions / all completions (``ok`` + ``fail`` + ``info``) of a service's client ops.
before the fault / after the fault
    Client ops whose ``time_s`` is before / at or after t_fault (see :mod:`drdrill.checkers.rto`).

Verdict: the platform must be healthy before the fault — every service's ok-ratio before it at least
``steady_state_threshold`` (default 0.99) — otherwise the drill measured a platform that was already
broken: INVALID. UNKNOWN when a service had no request before the fault (steady state unproven).
The ratios after the fault are reported, not judged (the RTO checker judges recovery).
"""

from __future__ import annotations

import numpy as np

from drdrill.checkers.result import CheckResult, Validity, compose
from drdrill.checkers.rto import fault_start_s
from drdrill.config import DrillConfig
from drdrill.history import INVOKE, OK, History

__all__ = ["check_availability"]


def _ratio(ok: np.ndarray) -> float | None:
    return float(ok.mean()) if ok.size else None


def check_availability(
    history: History, config: DrillConfig, steady_state_threshold: float = 0.99,
    fault_s: float | None = None,
) -> CheckResult:
    """Ok-ratios per service; judges the steady state before the fault."""
    if fault_s is None:
        fault_s = fault_start_s(history)
    completions = history.type != INVOKE
    results = []
    for service in config.services:
        selected = completions & (history.service.codes == history.service.code(service.name))
        times = history.time_s[selected]
        ok = history.type[selected] == OK
        before = times < fault_s if fault_s is not None else np.ones(times.size, dtype=bool)
        metrics = {
            "ops": int(times.size),
            "ok_ratio": _ratio(ok),
            "ops_before_fault": int(before.sum()),
            "ok_ratio_before_fault": _ratio(ok[before]),
            "ops_after_fault": int((~before).sum()),
            "ok_ratio_after_fault": _ratio(ok[~before]),
            "steady_state_threshold": steady_state_threshold,
        }
        name = f"availability:{service.name}"
        ratio_before = metrics["ok_ratio_before_fault"]
        if ratio_before is None:
            results.append(CheckResult(name, Validity.UNKNOWN, metrics, explanation=[
                f"No request to {service.name} completed before the fault, so its steady state is unproven."]))
        elif ratio_before < steady_state_threshold:
            results.append(CheckResult(name, Validity.INVALID, metrics, explanation=[
                f"{service.name} was already unhealthy before the fault: {ratio_before:.2%} of "
                f"{metrics['ops_before_fault']} requests succeeded (steady state needs "
                f"≥ {steady_state_threshold:.0%}). Fix the environment before judging recovery."]))
        else:
            after = metrics["ok_ratio_after_fault"]
            after_text = f"; {after:.2%} of {metrics['ops_after_fault']} after it" if after is not None else ""
            results.append(CheckResult(name, Validity.VALID, metrics, explanation=[
                f"{service.name}: {ratio_before:.2%} of {metrics['ops_before_fault']} requests succeeded "
                f"before the fault{after_text}."]))
    return compose("availability", results)
