"""The serving-region checker: which region answered the synthetic users, from the history alone.

Terms
-----
served by region R
    A client op of a service completed ``ok`` with ``region`` R (the ``X-Drdrill-Region`` of the
    answer): a user of that service was served by R.
after the fault
    Ops that started at or after t_fault (``fault_s``).
at the end
    The last ``ok`` op of each service in the history.

``check_served_by(history, region, services)`` is VALID when every named service was served by
``region`` after the fault (``at_end=True``: its last successful op came from ``region``), INVALID
when one never was, UNKNOWN when a service had no successful op after the fault at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drdrill.checkers.result import CheckResult, Validity, compose
from drdrill.checkers.rto import fault_start_s
from drdrill.history import OK, History

__all__ = ["check_served_by"]


def check_served_by(history: History, region: str, services: Sequence[str], at_end: bool = False,
                    fault_s: float | None = None) -> CheckResult:  # fmt: skip
    """Whether users of every one of ``services`` were served by ``region`` (see the module docstring)."""
    if fault_s is None:
        fault_s = fault_start_s(history)
    since = fault_s if fault_s is not None else -np.inf
    results = []
    for service in services:
        rows = np.flatnonzero((history.service.codes == history.service.code(service))
                              & (history.type == OK) & (history.time_s >= since))  # fmt: skip
        name = f"served-by:{service}"
        if rows.size == 0:
            results.append(CheckResult(name, Validity.UNKNOWN, {"ok_ops": 0}, explanation=[
                f"No request to {service} succeeded after the fault; cannot tell which region "
                f"serves it."]))
            continue
        regions = history.region.codes[rows]
        counts = {history.region.names[c] if c >= 0 else "unknown": int(n)
                  for c, n in zip(*np.unique(regions, return_counts=True), strict=True)}
        metrics = {"ok_ops": int(rows.size), "ok_ops_by_region": counts}
        if at_end:
            last = rows[np.argmax(history.time_s[rows])]
            last_region = history.region.value(int(last)) or "unknown"
            metrics["last_region"] = last_region
            ok = last_region == region
            text = (f"The last successful {service} request was served by region {last_region}"
                    f"{'' if ok else f', not {region}'}.")
        else:
            ok = counts.get(region, 0) > 0
            text = (f"{counts.get(region, 0)} of {rows.size} successful {service} requests after "
                    f"the fault were served by region {region} (by region: {counts}).")
        results.append(CheckResult(name, Validity.VALID if ok else Validity.INVALID, metrics,
                                   explanation=[text]))
    result = compose(f"served-by:{region}", results)
    result.explanation = [line for r in results for line in r.explanation]
    return result
