"""The database's own view of a failover's data loss, from the platform's replication samples, set against the users'.

The RPO checker measures the loss from what users were told (:mod:`drdrill.checkers.rpo`). The
platform's replication samples (``replication.sample`` platform ops, see :mod:`drdrill.history`)
measure it a second, independent way: from where PostgreSQL says the DR replica stood when the
primary region was lost. Both figures side by side, and a *finding* when they disagree.

Terms and units
---------------
promotion (``db_promoted_s``)
    ``time_s`` of the first DR sample at or after t_fault that is no longer in recovery: the DR
    database became writable. Without one there was no region failover to compare (the DB side is
    absent, not failed).
DB recovery point (``db_last_replay_s``)
    ``last_replay_s`` of the last DR sample still in recovery before the promotion (the primary's
    commit time of the last transaction the DR replayed; after the fault it stops advancing). When
    no such sample exists, the promoted sample's (PostgreSQL keeps it static after recovery).
DB loss window (``db_loss_window_s``)
    ``loss point - db_last_replay_s`` (the users' loss point, :mod:`drdrill.checkers.rpo`: t_fault or
    the last lost acknowledgement when later): how far back the database says the loss reaches,
    counted from the same moment as the users' window. A fault takes time to take effect (isolating a
    region on the mirror cut replication 0.34 s after t_fault); ``db_replayed_after_fault_s`` says how
    far past t_fault the DR replica got.
lag at the fault (``db_lag_bytes_at_fault``, ``db_replay_lag_s_at_fault``)
    The primary's ``current_lsn`` of its last sample at or before t_fault minus the DR's
    ``replay_lsn`` of its last sample at or before t_fault; and the primary's ``replay_lag_s`` (the
    DR walsender's, PostgreSQL's estimate) of that sample.
sampling period (``db_sample_period_s``)
    The median gap between consecutive DR samples in the 10 s before t_fault (all of them when
    none is that close).
write interval (``write_interval_s``) and write rate (``write_rate_per_s``)
    The median gap between consecutive acknowledgements of the data class's writes, and their
    number per second, in the 10 s before t_fault.
agreement (``db_agrees``)
    ``|db_difference_s| <= tolerance_s``. With a loss, ``db_difference_s = db_loss_window_s -
    data_loss_window_s``: the users' first lost acknowledgement minus the database's last replayed
    commit (t_fault cancels out, so a fault slow to take effect changes nothing). Without one,
    ``max(0, db_loss_window_s)``: the loss the database claims before the fault where users saw
    none. ``tolerance_s`` = sampling period + write interval + the first lost write's own response
    time (``first_lost_latency_s``, with a loss): the database's recovery point is a commit, the
    users' the acknowledgement of the first lost write, whose commit lies somewhere between its
    request and that acknowledgement (under load tens of ms) and at most about one write interval
    after the last replayed one; the sampling period bounds how stale the database's last word can
    be. A disagreement is a *finding*: either the harness
    (its acknowledgement times, its final read, its clock) or the platform (its reported replay
    position) is lying.

Verdict: a finding is always reported. It changes the RPO verdict to UNKNOWN only when the two
figures fall on different sides of the objective: the verdict is then decided by which measurement
is wrong, which the run cannot tell; when both are on the same side, the objective is met (or
missed) whichever is right, so the verdict stands and the finding is flagged beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from drdrill.checkers.result import CheckResult

__all__ = ["NEAR_FAULT_S", "DatabaseView", "database_view", "loss_figures", "replication_samples"]

NEAR_FAULT_S = 10.0  # how far before t_fault the write rate, write interval and sampling period are read
SAMPLE = "replication.sample"


@dataclass
class DatabaseView:
    """What :func:`database_view` found: metrics and evidence to merge into the RPO result."""

    metrics: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    explanation: list[str] = field(default_factory=list)
    finding: str | None = None
    decides_verdict: bool = False  # the disagreement puts the two figures on both sides of the objective


def replication_samples(platform_ops: tuple[Mapping[str, Any], ...] | list[Mapping[str, Any]],
                        side: str) -> list[Mapping[str, Any]]:  # fmt: skip
    """The ``replication.sample`` ops of ``side`` (``dr`` or ``primary``), by ``time_s``."""
    return sorted((op for op in platform_ops if op.get("f") == SAMPLE and op.get("side") == side),
                  key=lambda op: float(op["time_s"]))  # fmt: skip


def _last_before(samples: list[Mapping[str, Any]], at_s: float, field_name: str) -> Mapping[str, Any] | None:
    found = None
    for op in samples:
        if float(op["time_s"]) > at_s:
            break
        if op.get(field_name) is not None:
            found = op
    return found


def _median_gap(times: np.ndarray) -> float | None:
    return float(np.median(np.diff(np.sort(times)))) if times.size >= 2 else None


def database_view(platform_ops: tuple[Mapping[str, Any], ...], fault_s: float, ack_s: np.ndarray,
                  users_window_s: float, lost_count: int, objective_s: float, data_class: str,
                  wan_rtt_ms: float | None = None, loss_point_s: float | None = None,
                  first_lost_latency_s: float | None = None) -> DatabaseView:  # fmt: skip
    """The DB side of one data class's loss after the fault at ``fault_s`` (see the module docstring).

    ``ack_s``: acknowledgement times of the class's acknowledged writes; ``users_window_s`` and
    ``lost_count``: the users' figures (the RPO checker's ``data_loss_window_s`` and ``lost_count``);
    ``loss_point_s``: the moment of loss both windows count back from (default ``fault_s``);
    ``first_lost_latency_s``: the response time of the first lost write (request to acknowledgement).
    """
    reference_s = fault_s if loss_point_s is None else loss_point_s
    view = DatabaseView()
    m = view.metrics
    near = ack_s[(ack_s <= fault_s) & (ack_s > fault_s - NEAR_FAULT_S)]
    m["write_interval_s"] = _median_gap(near)
    if near.size >= 2:
        m["write_rate_per_s"] = float((near.size - 1) / max(near.max() - near.min(), 1e-9))
    else:
        m["write_rate_per_s"] = float(near.size / NEAR_FAULT_S)
    if wan_rtt_ms is not None:
        m["wan_rtt_ms"] = float(wan_rtt_ms)
    dr = replication_samples(platform_ops, "dr")
    primary = replication_samples(platform_ops, "primary")
    m["db_samples"] = {"dr": len(dr), "primary": len(primary)}
    keys = ("db_loss_window_s", "db_last_replay_s", "db_replayed_after_fault_s", "db_promoted_s",
            "db_lag_bytes_at_fault",
            "db_replay_lag_s_at_fault", "db_sample_period_s", "first_lost_latency_s", "tolerance_s", "db_difference_s", "db_agrees")
    m.update(dict.fromkeys(keys))
    if not dr:
        view.explanation.append(
            "The database's own view is absent: no replication samples of the DR replica were recorded "
            "(the target does not sample them, or the sampler never reached it).")
        return view
    dr_times = np.array([float(op["time_s"]) for op in dr])
    close = dr_times[(dr_times <= fault_s) & (dr_times > fault_s - NEAR_FAULT_S)]
    m["db_sample_period_s"] = _median_gap(close) if close.size >= 2 else _median_gap(dr_times)

    dr_at_fault = _last_before(dr, fault_s, "replay_lsn")
    primary_at_fault = _last_before(primary, fault_s, "current_lsn")
    if dr_at_fault is not None and primary_at_fault is not None:
        m["db_lag_bytes_at_fault"] = max(0, int(primary_at_fault["current_lsn"]) - int(dr_at_fault["replay_lsn"]))
        view.evidence["db_samples_at_fault"] = {"dr": dict(dr_at_fault), "primary": dict(primary_at_fault)}
    if primary_at_fault is not None and primary_at_fault.get("replay_lag_s") is not None:
        m["db_replay_lag_s_at_fault"] = float(primary_at_fault["replay_lag_s"])

    promoted = next((op for op in dr if float(op["time_s"]) >= fault_s and op.get("in_recovery") is False), None)
    if promoted is None:
        view.explanation.append(
            "The DR database was not promoted while it was sampled, so there was no region failover "
            "whose loss the database could report; only its lag at the fault is shown.")
        _explain_window(view, lost_count, users_window_s, data_class)
        return view
    promoted_s = float(promoted["time_s"])
    m["db_promoted_s"] = promoted_s
    standby = [op for op in dr if float(op["time_s"]) < promoted_s and op.get("in_recovery") is not False
               and op.get("last_replay_s") is not None]  # fmt: skip
    final = standby[-1] if standby else (promoted if promoted.get("last_replay_s") is not None else None)
    if final is None:
        view.explanation.append(
            "The DR database was promoted, but no sample reported when its last replayed commit was; "
            "the database's loss window is unknown.")
        return view
    view.evidence["db_final_sample"] = dict(final)
    m["db_last_replay_s"] = float(final["last_replay_s"])
    db_window_s = reference_s - m["db_last_replay_s"]
    m["db_loss_window_s"] = db_window_s
    m["db_replayed_after_fault_s"] = max(0.0, m["db_last_replay_s"] - fault_s)
    _explain_window(view, lost_count, users_window_s, data_class)
    if m["db_replayed_after_fault_s"] > 0:
        view.explanation.append(
            f"The DR replica replayed commits made up to {m['db_replayed_after_fault_s']:.3f} s after the "
            "fault began (the fault took that long to cut replication).")

    if m["write_interval_s"] is None or m["db_sample_period_s"] is None:
        view.explanation.append(
            f"The database's last replayed commit was {_from_fault(db_window_s)}; too few writes or "
            "samples before the fault to say whether that agrees with what users saw.")
        return view
    latency_s = float(first_lost_latency_s or 0.0) if lost_count else 0.0
    m["first_lost_latency_s"] = latency_s if lost_count else None
    tolerance_s = m["db_sample_period_s"] + m["write_interval_s"] + latency_s
    within = ("the sampling period, one write interval and the first lost write's response time"
              if lost_count else "the sampling period plus one write interval")
    # with a loss: the first lost acknowledgement minus the last replayed commit (t_fault cancels out);
    # without: how far before the fault the database claims a loss users did not see
    difference_s = db_window_s - users_window_s if lost_count else max(0.0, db_window_s)
    m["tolerance_s"] = tolerance_s
    m["db_difference_s"] = difference_s
    m["db_agrees"] = bool(abs(difference_s) <= tolerance_s)
    users = (f"the users' first lost write was acknowledged {_from_fault(users_window_s)}" if lost_count
             else "users lost no acknowledged write")
    if m["db_agrees"]:
        view.explanation.append(
            f"The database agrees: its DR replica's last replayed commit was {_from_fault(db_window_s)}, "
            f"{users} (difference {difference_s:+.3f} s, within {within}, {tolerance_s:.3f} s).")
        return view
    view.finding = (
        f"The two loss measurements disagree: {users}, but the DR database reports its last replayed "
        f"commit {_from_fault(db_window_s)} — a difference of {difference_s:+.3f} s, more than the sampling "
        f"period ({m['db_sample_period_s']:.3f} s), one write interval ({m['write_interval_s']:.3f} s)"
        + (f" and the first lost write's response time ({latency_s:.3f} s)" if lost_count else "")
        + " allow. Either the harness (its acknowledgement times, final read or clock) or the platform (its "
        "reported replay position) is lying.")
    view.decides_verdict = (users_window_s < objective_s) != (db_window_s < objective_s)
    view.evidence["finding"] = view.finding
    view.explanation.append(view.finding)
    return view


def _from_fault(window_s: float) -> str:
    """A signed window as words: ``0.500 s before the moment of loss`` / ``0.340 s after it``."""
    return (f"{window_s:.3f} s before the moment of loss" if window_s >= 0
            else f"{-window_s:.3f} s after the moment of loss")


def _explain_window(view: DatabaseView, lost_count: int, users_window_s: float, data_class: str) -> None:
    """One sentence: where the loss window comes from (lag at the fault, WAN RTT, write rate)."""
    m = view.metrics
    parts = []
    if m.get("db_lag_bytes_at_fault") is not None:
        lag = f"the DR replica was {m['db_lag_bytes_at_fault']} bytes of WAL behind the primary"
        if m.get("db_replay_lag_s_at_fault") is not None:
            lag += f" ({m['db_replay_lag_s_at_fault']:.3f} s by PostgreSQL's replay lag)"
        parts.append(lag)
    if m.get("wan_rtt_ms") is not None:
        parts.append(f"the WAN between the regions had a measured round trip of {m['wan_rtt_ms']:.1f} ms")
    if m.get("write_rate_per_s"):
        parts.append(f"{data_class} writes were acknowledged at {m['write_rate_per_s']:.1f}/s")
    if not parts:
        return
    text = "Where the window comes from: at the fault " + ", ".join(parts)
    if m.get("write_rate_per_s") and users_window_s > 0:
        text += (f"; a {users_window_s:.3f} s window at that rate holds about "
                 f"{m['write_rate_per_s'] * users_window_s:.0f} writes ({lost_count} lost)")
    view.explanation.append(text + ".")


def loss_figures(result: CheckResult) -> tuple[float | None, float | None, bool | None]:
    """(users' loss window s, the database's loss window s, whether they agree) of an ``rpo:<class>``
    result; None where a side was not measured (tests and benchmarks compare these)."""
    m = result.metrics
    return m.get("data_loss_window_s"), m.get("db_loss_window_s"), m.get("db_agrees")
