"""Checkers: pure functions from a history (and a final read) to three-state verdicts.

Public surface: :func:`check_run` (every checker, composed), the individual checkers, and
:class:`CheckResult` / :class:`Validity`. A checker that raises yields UNKNOWN, never a pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drdrill.checkers.availability import check_availability
from drdrill.checkers.result import CheckResult, Validity, compose, merge_validity, run_checker
from drdrill.checkers.rpo import check_rpo
from drdrill.checkers.rto import check_rto, fault_start_s
from drdrill.checkers.runbook import check_runbook, runbook_steps
from drdrill.config import DrillConfig
from drdrill.history import History

__all__ = [
    "CheckResult",
    "Validity",
    "check_availability",
    "check_rpo",
    "check_rto",
    "check_run",
    "check_runbook",
    "fault_start_s",
    "merge_validity",
    "run_checker",
    "runbook_steps",
]


def check_run(
    history: History,
    config: DrillConfig,
    final_read: Mapping[str, Any] | None,
    rto_override_s: Mapping[str, float] | None = None,
    rpo_override_s: Mapping[str, float] | None = None,
    wan_rtt_ms: float | None = None,
) -> CheckResult:
    """Availability, RTO, RPO and (when the run had one) the runbook, composed into ``drill``.

    ``wan_rtt_ms``: the WAN's measured round trip, for the RPO's explanation of its window."""
    fault_s = fault_start_s(history)
    children = [
        run_checker("availability", lambda: check_availability(history, config, fault_s=fault_s)),
        run_checker("rto", lambda: check_rto(history, config, rto_override_s, fault_s=fault_s)),
        run_checker("rpo", lambda: check_rpo(history, config, final_read, rpo_override_s, fault_s=fault_s,
                                                   wan_rtt_ms=wan_rtt_ms)),
    ]
    if any(op.get("runbook_step") for op in history.nemesis):
        children.append(run_checker("runbook", lambda: check_runbook(history, fault_s)))
    return compose("drill", children)
