"""The timeline plot of one run: what users of each service saw, second by second, around the fault.

Terms
-----
success ratio
    Per service and per bin of ``bin_s`` seconds (default 1): ok client ops / completed client ops
    that started in the bin; bins where no op started (users waiting on a hung request) are
    skipped, the line joins the bins around them.
fault in effect
    From t_fault to the start of the first rollback (the harness undoing it), or the end of the
    method when there was none: shaded red.
maintenance window
    A planned outage (the failback's, or the rollback's automatic failback): shaded grey.
recovered
    A tier's ``recovered_s`` from the RTO results: a dashed vertical line per tier.
objective
    The tier's RTO objective after t_fault: drawn when it falls inside the chart, else named in the
    legend ("beyond the chart").

DR replica lag
    When the history holds replication samples (platform ops, :mod:`drdrill.mirror.replication`),
    a second panel below, on the same time axis: the DR walsender's replay lag in seconds
    (PostgreSQL's ``replay_lag``, left axis) and in bytes of WAL (``lag_bytes``, right axis), as the
    primary reported them; and the moment the DR database was promoted (left recovery).

The x axis is seconds relative to t_fault (absolute when the run had no fault).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from drdrill.checkers import CheckResult
from drdrill.checkers.db_loss import replication_samples
from drdrill.checkers.rto import fault_start_s, maintenance_windows
from drdrill.config import DrillConfig
from drdrill.history import INVOKE, OK, History

__all__ = ["fault_window_s", "plot_timeline"]

TIER_COLOURS = {"critical": "#c0392b", "non-critical": "#2471a3"}


def fault_window_s(history: History) -> tuple[float, float] | None:
    """(t_fault, when the fault stopped being the platform's problem: the first rollback's start)."""
    start = fault_start_s(history)
    if start is None:
        return None
    ends = [float(op["time_s"]) for op in history.nemesis
            if op.get("phase") == "rollback" and str(op.get("f", "")).startswith("start:")]  # fmt: skip
    method_ends = [float(op.get("end_s", op["time_s"])) for op in history.nemesis
                   if op.get("phase") == "method" and str(op.get("f", "")).startswith("stop:")]  # fmt: skip
    end = min(ends) if ends else (max(method_ends) if method_ends else start)
    return start, max(end, start)


def _find(result: CheckResult | None, name: str) -> CheckResult | None:
    if result is None:
        return None
    try:
        return result.find(name)
    except KeyError:
        return None


def plot_timeline(history: History, config: DrillConfig, results: CheckResult | None, path: Path,
                  title: str = "", bin_s: float = 1.0) -> Path:  # fmt: skip
    """Draw the run's timeline (see the module docstring) into the PNG file ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    completed = history.type != INVOKE
    fault = fault_window_s(history)
    origin = fault[0] if fault else (float(history.time_s[completed].min()) if completed.any() else 0.0)
    primary = [op for op in replication_samples(history.platform, "primary") if op.get("lag_bytes") is not None]
    if primary:
        fig, (ax, lag_ax) = plt.subplots(2, 1, figsize=(11, 7.4), dpi=110, sharex=True,
                                         gridspec_kw={"height_ratios": [3, 1.3]})
    else:
        fig, ax = plt.subplots(figsize=(11, 5.2), dpi=110)
    end_x = 0.0
    for service in config.services:
        code = history.service.code(service.name) if service.name in history.service.names else -1
        rows = completed & (history.service.codes == code)
        if not rows.any():
            continue
        rel = history.time_s[rows] - origin
        ok = history.type[rows] == OK
        bins = np.floor(rel / bin_s).astype(np.int64)
        low = int(bins.min())
        totals = np.bincount(bins - low)
        oks = np.bincount(bins - low, weights=ok.astype(float), minlength=totals.size)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(totals > 0, oks / np.maximum(totals, 1), np.nan)
        xs = (np.arange(totals.size) + low) * bin_s
        seen = totals > 0  # bins where no request started (users stuck in a hung one) are skipped
        style = "-" if service.tier == "critical" else "--"
        ax.plot(xs[seen], ratio[seen] * 100, style, marker=".", markersize=3, linewidth=1.3,
                label=f"{service.name} ({service.tier})")
        end_x = max(end_x, float(xs.max()) + bin_s)
    if fault:
        ax.axvspan(0, fault[1] - origin, color="#e74c3c", alpha=0.12, label="fault in effect")
    for start, end, source in maintenance_windows(history):
        ax.axvspan(start - origin, min(end, origin + end_x) - origin, color="#7f8c8d", alpha=0.18,
                   label="maintenance (failback)" if source == "runbook" else "harness restoring")
    beyond = []
    for tier, objective_s in config.rto_objective_s.items():
        tier_result = _find(results, f"rto-tier:{tier}")
        colour = TIER_COLOURS.get(tier, "black")
        if tier_result is not None and tier_result.metrics.get("measured_rto_s") is not None and fault:
            measured = float(tier_result.metrics["measured_rto_s"])
            ax.axvline(measured, color=colour, linestyle=":", linewidth=1.5,
                       label=f"{tier} recovered: RTO {measured:.1f} s")
        if fault and objective_s <= end_x:
            ax.axvline(objective_s, color=colour, linewidth=2, label=f"{tier} RTO objective {objective_s:g} s")
        else:
            beyond.append(f"{tier} {objective_s:g} s")
    if beyond:
        ax.plot([], [], " ", label="RTO objectives beyond the chart: " + ", ".join(beyond))
    ax.set_ylim(-5, 105)
    ax.set_ylabel("requests served (%)")
    ax.set_title(title or "What users saw")
    ax.grid(alpha=0.3)
    if primary:
        _plot_lag(lag_ax, history, primary, origin, fault is not None)
        lag_ax.set_xlabel("seconds after the fault" if fault else "seconds")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.04), fontsize=7, ncol=4, frameon=False)
    else:
        ax.set_xlabel("seconds after the fault" if fault else "seconds")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=7, ncol=4, frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)
    return path


def _plot_lag(ax, history: History, primary: list, origin: float, faulted: bool) -> None:
    """The DR replica's lag as the primary reported it: seconds (left) and bytes of WAL (right)."""
    xs = np.array([float(op["time_s"]) for op in primary]) - origin
    lag_s = np.array([np.nan if op.get("replay_lag_s") is None else float(op["replay_lag_s"]) for op in primary])
    lag_bytes = np.array([float(op["lag_bytes"]) for op in primary])
    ax.plot(xs, lag_s, color="#8e44ad", linewidth=1.1, label="DR replay lag (s, PostgreSQL's replay_lag)")
    ax.set_ylabel("DR lag (s)")
    ax.grid(alpha=0.3)
    bytes_ax = ax.twinx()
    bytes_ax.plot(xs, lag_bytes, color="#16a085", linewidth=1.0, linestyle="--", label="DR lag (bytes of WAL)")
    bytes_ax.set_ylabel("DR lag (bytes)")
    if faulted:
        ax.axvline(0, color="#e74c3c", linewidth=1.2)
    promoted = next((op for op in replication_samples(history.platform, "dr")
                     if op.get("in_recovery") is False and float(op["time_s"]) >= origin), None)
    if promoted is not None:
        ax.axvline(float(promoted["time_s"]) - origin, color="#2c3e50", linestyle=":", linewidth=1.4,
                   label="DR database promoted")
    handles = ax.get_legend_handles_labels()
    more = bytes_ax.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=7, frameon=False)
