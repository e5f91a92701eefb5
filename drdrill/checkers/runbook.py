"""The runbook checker: which DR runbook steps ran, how long each took, and whether each worked.

Terms and units
---------------
step row
    One completed runbook step from the history's nemesis ops (a ``stop:`` op carrying
    ``runbook_step``): ``step``, ``phase`` (its RTO-breakdown bucket, :data:`drdrill.runbook.STEPS`),
    ``mode`` (``auto``/``manual``), ``started_after_fault_s`` (seconds from t_fault to its start),
    ``duration_s`` (start to end, operator time included), ``operator_s`` (seconds its operator took
    to confirm it), ``status`` (``ok``, ``fail``, ``info`` = interrupted).
RTO breakdown (``<phase>_s`` metrics)
    Seconds spent per phase (detection, declaration, scale-up, promotion, dns, deploy, validation,
    communication, failback), summed over its steps; ``operator_s`` is the human share of them all.

Verdict: VALID when every step that ran succeeded; INVALID when one failed (the runbook did not
work as written); UNKNOWN when one was interrupted. A run without runbook steps has no runbook result.
"""

from __future__ import annotations

from typing import Any

from drdrill.checkers.result import CheckResult, Validity
from drdrill.checkers.rto import fault_start_s
from drdrill.history import History
from drdrill.runbook import STEPS

__all__ = ["check_runbook", "check_step_within", "runbook_steps"]


def runbook_steps(history: History, fault_s: float | None = None) -> list[dict[str, Any]]:
    """The runbook's completed steps in the order they started (see the module docstring)."""
    if fault_s is None:
        fault_s = fault_start_s(history)
    rows = []
    for op in history.nemesis:
        step = op.get("runbook_step")
        if not step or not str(op.get("f", "")).startswith("stop:"):
            continue
        start = float(op.get("time_s", 0.0))
        end = float(op.get("end_s", start))
        rows.append({
            "step": step,
            "activity": str(op["f"])[len("stop:"):],
            "phase": STEPS[step].phase if step in STEPS else "?",
            "mode": op.get("mode") or "auto",
            "started_after_fault_s": None if fault_s is None else round(start - fault_s, 3),
            "duration_s": round(end - start, 3),
            "operator_s": float(op.get("operator_s") or 0.0),
            "status": op.get("type"),
            "error": op.get("error"),
        })  # fmt: skip
    return sorted(rows, key=lambda r: r["started_after_fault_s"] or 0.0)


def check_runbook(history: History, fault_s: float | None = None) -> CheckResult | None:
    """The runbook's steps judged (None when the run had none)."""
    rows = runbook_steps(history, fault_s)
    if not rows:
        return None
    metrics: dict[str, Any] = {}
    for row in rows:
        key = f"{row['phase']}_s"
        metrics[key] = round(metrics.get(key, 0.0) + row["duration_s"], 3)
    metrics["operator_s"] = round(sum(r["operator_s"] for r in rows), 3)
    metrics["steps"] = len(rows)
    breakdown = ", ".join(
        f"{r['step']} {r['duration_s']:.1f} s" + (f" ({r['operator_s']:.1f} s operator)"
                                                  if r["mode"] == "manual" else "")
        for r in rows
    )
    failed = [r for r in rows if r["status"] == "fail"]
    interrupted = [r for r in rows if r["status"] not in ("ok", "fail")]
    if failed:
        first = failed[0]
        return CheckResult("runbook", Validity.INVALID, metrics, {"steps": rows}, [
            f"Runbook step {first['step']!r} ({first['activity']}) failed: {first['error']}.",
            f"Steps: {breakdown}."])
    if interrupted:
        return CheckResult("runbook", Validity.UNKNOWN, metrics, {"steps": rows}, [
            f"Runbook step {interrupted[0]['step']!r} was interrupted; the runbook did not finish.",
            f"Steps: {breakdown}."])
    return CheckResult("runbook", Validity.VALID, metrics, {"steps": rows}, [
        f"Every runbook step succeeded ({len(rows)} steps, {metrics['operator_s']:.1f} s of operator "
        f"time): {breakdown}."])


def check_step_within(history: History, step: str, limit_s: float,
                      fault_s: float | None = None) -> CheckResult:  # fmt: skip
    """Whether runbook step ``step`` first finished within ``limit_s`` seconds of t_fault."""
    if fault_s is None:
        fault_s = fault_start_s(history)
    rows = [r for r in runbook_steps(history, fault_s) if r["step"] == step]
    name = f"step:{step}"
    if fault_s is None or not rows:
        return CheckResult(name, Validity.UNKNOWN, {"limit_s": limit_s}, explanation=[
            f"The runbook step {step!r} did not run after a fault; nothing to time."])
    row = rows[0]
    done_after_s = row["started_after_fault_s"] + row["duration_s"]
    metrics = {"limit_s": limit_s, "done_after_fault_s": round(done_after_s, 3),
               "duration_s": row["duration_s"], "operator_s": row["operator_s"]}
    if row["status"] != "ok":
        return CheckResult(name, Validity.INVALID, metrics, {"step": row}, [
            f"The runbook step {step!r} did not succeed ({row['status']}): {row['error']}."])
    ok = done_after_s <= limit_s
    return CheckResult(name, Validity.VALID if ok else Validity.INVALID, metrics, {"step": row}, [
        f"The runbook step {step!r} was done {done_after_s:.2f} s after the fault, "
        f"{'within' if ok else 'NOT within'} {limit_s:g} s."])
