"""The verdict table a drill ends with: per scenario the critical RTO, the failback's RTO, the
financial RPO and lost payments against their objectives, and the overall verdict."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from drdrill.checkers import CheckResult, Validity, merge_validity
from drdrill.tables import table

__all__ = ["verdict_table"]

HEADERS = ("scenario", "critical RTO (objective)", "failback RTO", "financial RPO (objective)",
           "lost payments", "verdict")  # fmt: skip


def verdict_table(run_dirs: list[Path]) -> tuple[str, Validity]:
    """(the table of these run directories, their overall verdict); a run without results.json is a
    harness error, UNKNOWN. The failback column is shown only when a failback ran."""
    rows = []
    validities = []
    for path in run_dirs:
        scenario = path.name
        with contextlib.suppress(OSError, ValueError, KeyError):
            scenario = json.loads((path / "drill.json").read_text())["scenario"]
        results = path / "results.json"
        if not results.is_file():
            rows.append((scenario, "-", "-", "-", "-", "NO RESULT (harness error)"))
            validities.append(Validity.UNKNOWN)
            continue
        result = CheckResult.from_dict(json.loads(results.read_text()))
        validities.append(result.validity)
        rto = _metric(result, "rto-tier:critical", "measured_rto_s", "objective_s")
        failback = _metric(result, "rto-failback-tier:critical", "measured_rto_s", "objective_s")
        rpo = _metric(result, "rpo:financial", "data_loss_window_s", "objective_s")
        lost = _find(result, "rpo:financial")
        lost_text = f"{lost.metrics.get('lost_count', '-')}" if lost else "-"
        rows.append((scenario[:70], rto, failback, rpo, lost_text, result.validity.value.upper()))
    headers = HEADERS
    if all(row[2] == "-" for row in rows):  # no failback ran: no column for it
        headers = headers[:2] + headers[3:]
        rows = [row[:2] + row[3:] for row in rows]
    overall = merge_validity(validities) if validities else Validity.UNKNOWN
    return table(headers, rows), overall


def _find(result: CheckResult, name: str) -> CheckResult | None:
    try:
        return result.find(name)
    except KeyError:
        return None


def _metric(result: CheckResult, name: str, value_key: str, objective_key: str) -> str:
    found = _find(result, name)
    if found is None:
        return "-"
    value = found.metrics.get(value_key)
    objective = found.metrics.get(objective_key)
    value_text = f"{value:.2f} s" if isinstance(value, int | float) else "not measured"
    return f"{value_text} (< {objective:g} s)" if objective else value_text
