"""The RPO checker: which acknowledged writes the recovered system lost, per data class, and how far back.

Terms and units
---------------
write
    A client op carrying a ``key``: an ``invoke`` logged before it was sent and a completion after.
attempted
    Keys of every write of the data class (any op type).
acknowledged
    Keys whose completion is ``ok``; the acknowledgement time (``ack_s``) is the completion's ``end_s``
    (its ``time_s`` when ``end_s`` is missing): the moment the user was told it was saved.
final read
    After recovery, the keys found in the recovered system (``final-read.json``: ``present`` maps a
    service to its keys, ``read_at_s`` when it was read).
lost
    acknowledged − present.
recovered
    ``info`` writes (outcome unknown) that turned out present: fine, reported for completeness.
unexpected
    present but never attempted (INVALID: data appeared that no client wrote).
failed but present
    ``fail`` writes that are present (INVALID: the client was told it certainly did not happen).
lost after the fault
    lost writes acknowledged after the first fault action *completed* (when the fault was surely in
    effect; writes acknowledged while the action was still being applied count as ordinary loss):
    split brain, the old primary kept acknowledging writes that the promoted one never got.
    INVALID, reported apart.
data loss window (``data_loss_window_s``)
    ``loss point - earliest ack_s among the lost writes`` (split-brain ones apart); 0 when none was
    lost. The *loss point* (``loss_point_s``) is t_fault, or the last lost acknowledgement when that
    is later: writes acknowledged while the fault was still taking effect (isolating a region cuts
    replication a fraction of a second after t_fault) were lost too. This is the measured RPO: how
    far back in time the loss reaches.
evidence resolution (``rpo_resolution_s``)
    ``t_fault - latest ack_s before it``: a loss shorter than this gap could not have been seen. When
    it is not below the objective the verdict is UNKNOWN (traffic too thin to prove the RPO).

database's view (``db_loss_window_s``, ``db_agrees``, the finding...)
    The same loss from the platform's replication samples, beside the users' figures in the same
    result: see :mod:`drdrill.checkers.db_loss`.

Verdicts: UNKNOWN without a final read, without a fault, or with too little write traffic, or when
the users' and the database's loss windows disagree on opposite sides of the objective;
INVALID for unexpected, failed-but-present or split-brain writes, or a data loss window not below the
objective; VALID otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from drdrill.checkers.db_loss import database_view
from drdrill.checkers.result import CheckResult, Validity, compose
from drdrill.checkers.rto import clock, fault_applied_s, fault_start_s
from drdrill.config import DrillConfig
from drdrill.history import FAIL, INFO, INVOKE, OK, History

__all__ = ["check_rpo", "data_class_rpo", "key_ranges"]


def key_ranges(keys: list[str], limit: int = 50) -> list[str]:
    """Compress keys like ``run-c1-000007`` into ranges ``run-c1-000007..000012`` (sorted; at most ``limit``).

    Keys sharing a prefix and ending in consecutive numbers of the same width become one range.
    """
    def split(key: str) -> tuple[str, str]:
        digits = len(key) - len(key.rstrip("0123456789"))
        return (key[: len(key) - digits], key[len(key) - digits :]) if digits else (key, "")

    ranges: list[str] = []
    run_prefix, run_first, run_last = None, "", ""
    for key in sorted(keys, key=lambda k: (split(k)[0], len(split(k)[1]), split(k)[1])):
        prefix, number = split(key)
        if (run_prefix == prefix and number and run_last and len(number) == len(run_last)
                and int(number) == int(run_last) + 1):
            run_last = number
            continue
        if run_prefix is not None:
            ranges.append(_range_text(run_prefix, run_first, run_last))
        run_prefix, run_first, run_last = prefix, number, number
    if run_prefix is not None:
        ranges.append(_range_text(run_prefix, run_first, run_last))
    if len(ranges) > limit:
        return ranges[:limit] + [f"... and {len(ranges) - limit} more ranges"]
    return ranges


def _range_text(prefix: str, first: str, last: str) -> str:
    return f"{prefix}{first}" if first == last else f"{prefix}{first}..{last}"


def data_class_rpo(
    history: History,
    data_class: str,
    services: list[str],
    final_read: Mapping[str, Any] | None,
    fault_s: float | None,
    objective_s: float,
    applied_s: float | None = None,
    wan_rtt_ms: float | None = None,
) -> CheckResult:
    """Measure the data loss of one data class (see the module docstring), with the database's own
    view beside it (:mod:`drdrill.checkers.db_loss`) once a fault ran and the final read was taken.

    ``applied_s``: when the fault was in effect (the first fault action completed); default ``fault_s``.
    ``wan_rtt_ms``: the WAN's measured round trip (for the explanation).
    """
    name = f"rpo:{data_class}"
    metrics: dict[str, Any] = {"objective_s": objective_s, "services": services, "fault_s": fault_s}
    service_codes = [history.service.code(s) for s in services]
    in_class = np.isin(history.service.codes[history.key_row], service_codes)
    rows = history.key_row[in_class]
    ids = history.key_id[in_class].astype(np.int64)
    types = history.type[rows]
    del in_class
    # Set operations on keys are boolean tables indexed by key id: linear, no string hashing.
    n_keys = history.key_count

    def flags(selected_ids: np.ndarray) -> np.ndarray:
        table = np.zeros(n_keys, dtype=bool)
        table[selected_ids] = True
        return table

    attempted = flags(ids)
    metrics["attempted_count"] = int(attempted.sum())
    if final_read is None:
        return CheckResult(name, Validity.UNKNOWN, metrics, explanation=[
            f"No final read was taken, so nothing says which {data_class} writes survived; "
            "the data loss cannot be measured. Re-run with the final read enabled."])
    present_lists = final_read.get("present", {})
    present_keys = list(dict.fromkeys(k for s in services for k in present_lists.get(s, [])))
    present_ids = history.key_ids_of(present_keys)
    present = flags(present_ids[present_ids >= 0])
    metrics["present_count"] = len(present_keys)

    acked = types == OK
    ack_ids = ids[acked]
    ack_rows = rows[acked]
    ack_s = history.end_s[ack_rows]
    ack_s = np.where(np.isnan(ack_s), history.time_s[ack_rows], ack_s)
    lost_mask = ~present[ack_ids]
    lost_ids = ack_ids[lost_mask]
    lost_ack_s = ack_s[lost_mask]
    lost_sent_s = history.time_s[ack_rows][lost_mask]
    metrics["acknowledged_count"] = int(ack_ids.size)

    unexpected_at = np.flatnonzero((present_ids < 0) | ~attempted[np.maximum(present_ids, 0)])
    unexpected = [present_keys[i] for i in unexpected_at]
    failed_present = flags(ids[types == FAIL]) & present
    info = flags(ids[types == INFO])
    recovered = info & present
    never_completed = flags(ids[types == INVOKE]) & ~flags(ids[types != INVOKE])
    metrics.update({
        "unexpected_count": len(unexpected),
        "failed_but_present_count": int(failed_present.sum()),
        "info_count": int(info.sum()),
        "recovered_count": int(recovered.sum()),
        "never_completed_count": int(never_completed.sum()),
    })

    def decoded(selected_ids: np.ndarray) -> list[str]:
        return history.key_strings(selected_ids)

    if fault_s is None:
        before = np.zeros(lost_ids.size, dtype=bool)
    else:
        before = lost_ack_s <= (fault_s if applied_s is None else max(applied_s, fault_s))
    lost_before_keys = lost_ids[before]
    lost_after_keys = lost_ids[~before]
    metrics["lost_count"] = int(lost_ids.size)
    metrics["lost_after_fault_count"] = int(lost_after_keys.size)
    evidence: dict[str, Any] = {}
    if lost_ids.size:
        evidence["lost_keys"] = key_ranges(decoded(lost_before_keys))
        evidence["first_lost_ack_s"] = float(lost_ack_s.min())
        evidence["last_lost_ack_s"] = float(lost_ack_s.max())
    if lost_after_keys.size:
        evidence["lost_after_fault_keys"] = key_ranges(decoded(lost_after_keys))
    if unexpected:
        evidence["unexpected_keys"] = key_ranges(unexpected)
    if failed_present.any():
        evidence["failed_but_present_keys"] = key_ranges(decoded(np.flatnonzero(failed_present)))

    problems: list[str] = []
    if unexpected:
        problems.append(f"{len(unexpected)} {data_class} record(s) are present that no client ever wrote")
    if failed_present.any():
        problems.append(f"{int(failed_present.sum())} {data_class} write(s) that users were told had failed "
                        "are present anyway")
    if lost_after_keys.size:
        problems.append(f"{lost_after_keys.size} {data_class} write(s) acknowledged after the fault began "
                        "were lost (split brain: the old primary kept accepting writes the new one never got)")

    if fault_s is None:
        metrics["data_loss_window_s"] = None
        if problems:
            return CheckResult(name, Validity.INVALID, metrics, evidence, ["; ".join(problems) + "."])
        return CheckResult(name, Validity.UNKNOWN, metrics, evidence, [
            f"No fault ran, so there is no recovery point to measure; {lost_ids.size} acknowledged "
            f"{data_class} write(s) missing."])

    acked_before = ack_s[ack_s <= fault_s]
    # the moment of loss: t_fault, or later when writes acknowledged while the fault was still taking
    # effect were lost too (isolating a region cuts replication a fraction of a second after t_fault)
    loss_point_s = fault_s
    first_lost_latency_s = None
    if lost_before_keys.size:
        first = int(np.argmin(np.where(before, lost_ack_s, np.inf)))
        first_lost_latency_s = float(lost_ack_s[first] - lost_sent_s[first])
        loss_point_s = max(fault_s, float(lost_ack_s[before].max()))
        window_s = float(loss_point_s - lost_ack_s[before].min())
    else:
        window_s = 0.0
    metrics["data_loss_window_s"] = window_s
    metrics["loss_point_s"] = loss_point_s
    metrics["rpo_resolution_s"] = float(fault_s - acked_before.max()) if acked_before.size else None

    result = _users_verdict(name, metrics, evidence, problems, lost_before_keys.size, int(ack_ids.size),
                            acked_before.size, lost_ack_s[before], data_class, fault_s, window_s, objective_s,
                            loss_point_s)
    view = database_view(history.platform, fault_s, ack_s, window_s, int(lost_before_keys.size), objective_s,
                         data_class, wan_rtt_ms, loss_point_s=loss_point_s,
                         first_lost_latency_s=first_lost_latency_s)
    result.metrics.update(view.metrics)
    result.evidence.update(view.evidence)
    result.explanation.extend(view.explanation)
    if view.decides_verdict and not problems:
        result.validity = Validity.UNKNOWN
        result.explanation.insert(0, (
            f"The verdict is unknown: the users' loss window ({window_s:.3f} s) and the database's "
            f"({view.metrics['db_loss_window_s']:.3f} s) fall on different sides of the RPO objective of "
            f"{objective_s:g} s, and the run cannot tell which measurement is wrong."))
    return result


def _loss_point_text(fault_s: float, loss_point_s: float) -> str:
    if loss_point_s <= fault_s:
        return f"the fault at {clock(fault_s)}"
    return (f"the loss at {clock(loss_point_s)}, {loss_point_s - fault_s:.3f} s after the fault began (the "
            "fault took that long to take effect)")


def _users_verdict(name: str, metrics: dict[str, Any], evidence: dict[str, Any], problems: list[str],
                   lost_count: int, acked_count: int, acked_before_count: int, lost_ack_s: np.ndarray,
                   data_class: str, fault_s: float, window_s: float, objective_s: float,
                   loss_point_s: float) -> CheckResult:
    """The verdict from what users were told (see the module docstring)."""
    if problems:
        return CheckResult(name, Validity.INVALID, metrics, evidence, ["; ".join(problems) + "."])
    if lost_count:
        text = (f"{lost_count} of {acked_count} acknowledged {data_class} writes were lost: "
                f"acknowledged from {clock(float(lost_ack_s.min()))} up to {_loss_point_text(fault_s, loss_point_s)}, "
                f"a data loss window of {window_s:.2f} s")
    else:
        text = (f"None of the {acked_count} acknowledged {data_class} writes was lost "
                f"(data loss window 0 s)")
    if window_s >= objective_s:
        return CheckResult(name, Validity.INVALID, metrics, evidence, [
            f"{text}, NOT within the RPO objective of {objective_s:g} s."])
    if not acked_before_count:
        return CheckResult(name, Validity.UNKNOWN, metrics, evidence, [
            f"No {data_class} write was acknowledged before the fault, so a loss could not have been seen; "
            "run write traffic before injecting the fault."])
    if metrics["rpo_resolution_s"] >= objective_s:
        return CheckResult(name, Validity.UNKNOWN, metrics, evidence, [
            f"{text}, but the last {data_class} write before the fault was acknowledged "
            f"{metrics['rpo_resolution_s']:.1f} s before it — longer than the RPO objective of "
            f"{objective_s:g} s — so a loss within the objective could have gone unseen. Run more write traffic."])
    return CheckResult(name, Validity.VALID, metrics, evidence, [
        f"{text}, within the RPO objective of {objective_s:g} s."])


def check_rpo(
    history: History,
    config: DrillConfig,
    final_read: Mapping[str, Any] | None,
    objective_override_s: Mapping[str, float] | None = None,
    fault_s: float | None = None,
    wan_rtt_ms: float | None = None,
) -> CheckResult:
    """RPO of every data class (``rpo:<data class>``) from the history and the final read."""
    overrides = dict(objective_override_s or {})
    if fault_s is None:
        fault_s = fault_start_s(history)
    applied_s = fault_applied_s(history) if fault_s == fault_start_s(history) else fault_s
    results = []
    for data_class, objective_s in config.rpo_objective_s.items():
        services = config.services_in_data_class(data_class)
        if services:
            results.append(data_class_rpo(history, data_class, services, final_read, fault_s,
                                          overrides.get(data_class, objective_s), applied_s, wan_rtt_ms))
    return compose("rpo", results)
