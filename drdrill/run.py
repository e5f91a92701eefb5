"""The run directory: everything one drill leaves behind, enough to re-judge it offline.

Layout of ``reports/runs/<UTC timestamp>-<scenario>/``:

    drill.json        what ran: scenario, run id, target, the drill config (services, objectives),
                      the judgements the scenario's Then steps asked for, and what the target
                      measured of its platform: ``network`` (``{"rtt_ms": {"wan": 70.4, ...}}``,
                      links' measured round trips) and ``replication_sampler`` (the sampler's cost)
    history.jsonl     every client and nemesis op (see :mod:`drdrill.history`)
    journal.json      the Chaos Toolkit journal of the experiment
    final-read.json   the keys found in the recovered system: ``{"read_at_s", "prefix", "present"}``
    results.json      the verdicts (written by :meth:`RunDir.check`; rewritten on every re-check)
    traffic.log       Locust's own output

A judgement is one objective a Then step checked: ``{"kind", "subject", "limit", "step": <step
text>}`` with kinds

    rto             subject a service or tier; limit seconds (measured RTO below it)
    rto-failback    subject a tier; limit seconds (the failback's RTO, from its maintenance window)
    rpo             subject a data class; limit seconds (data loss window below it)
    lost            subject a data class; limit a count of acknowledged writes lost
    runbook         every runbook step succeeded (subject and limit unused)
    step            subject a runbook step; limit seconds from t_fault to the step's end
    served-by       subject a region: every critical service was served by it after the fault
    serving-at-end  subject a region: every critical service's last success came from it
    saga            subject payments; limit seconds: every saga payment settled within it after
                    the final read (judged from the stored ``observed`` pending counts: no history
                    records the saga's state)
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drdrill.checkers import CheckResult, Validity, check_run, run_checker
from drdrill.checkers.result import compose
from drdrill.checkers.rpo import data_class_rpo
from drdrill.checkers.rto import check_rto, fault_applied_s, fault_start_s, service_rto
from drdrill.checkers.runbook import check_runbook, check_step_within
from drdrill.checkers.serving import check_served_by
from drdrill.config import DrillConfig, config_from_dict, default_config
from drdrill.errors import HistoryError
from drdrill.history import History, load_history

__all__ = ["RunDir", "judge"]

JUDGEMENT_KINDS = ("rto", "rto-failback", "rpo", "lost", "runbook", "step", "served-by",
                   "serving-at-end", "saga")


@dataclass
class RunDir:
    """A run directory (see the module docstring)."""

    path: Path

    @property
    def history_path(self) -> Path:
        return self.path / "history.jsonl"

    @property
    def journal_path(self) -> Path:
        return self.path / "journal.json"

    @property
    def final_read_path(self) -> Path:
        return self.path / "final-read.json"

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def meta_path(self) -> Path:
        return self.path / "drill.json"

    def __repr__(self) -> str:
        return f"RunDir({self.path})"

    @classmethod
    def create(cls, base: str | os.PathLike[str], scenario: str, config: DrillConfig,
               **meta: Any) -> RunDir:
        """A new, empty run directory under ``base`` named by UTC time and scenario."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")[:-4] + "Z"
        slug = re.sub(r"[^a-z0-9]+", "-", scenario.lower()).strip("-")[:60] or "run"
        path = Path(base) / f"{stamp}-{slug}"
        path.mkdir(parents=True, exist_ok=False)
        run = cls(path)
        run_id = "r" + re.sub(r"\D", "", stamp)[2:14] + f"{os.getpid() % 1000:03d}"
        run.write_meta({"scenario": scenario, "run_id": run_id, "created_s": time.time(),
                        "config": config.to_dict(), "judgements": [], **meta})
        run.history_path.touch()
        return run

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunDir:
        """An existing run directory; HistoryError naming what is missing."""
        path = Path(path)
        if not path.is_dir():
            raise HistoryError(f"no run directory at {path}")
        run = cls(path)
        if not run.history_path.is_file():
            raise HistoryError(f"{path} is not a drdrill run directory: it has no history.jsonl")
        return run

    # ----------------------------------------------------------------- metadata

    def meta(self) -> dict[str, Any]:
        if not self.meta_path.is_file():
            return {}
        try:
            return json.loads(self.meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise HistoryError(f"{self.meta_path}: not valid JSON: {exc}") from exc

    def write_meta(self, meta: dict[str, Any]) -> None:
        _write_json(self.meta_path, meta)

    def update_meta(self, **changes: Any) -> None:
        self.write_meta({**self.meta(), **changes})

    @property
    def run_id(self) -> str:
        return self.meta().get("run_id", "run")

    def config(self) -> DrillConfig:
        data = self.meta().get("config")
        return config_from_dict(data, str(self.meta_path)) if data else default_config()

    def add_judgement(self, kind: str, subject: str, limit: float, step: str = "",
                      observed: dict[str, Any] | None = None) -> None:
        """Record an objective a Then step checks, so that a re-check judges it again (with what
        was ``observed`` outside the history, for kinds that need it)."""
        if kind not in JUDGEMENT_KINDS:
            raise ValueError(f"unknown judgement kind {kind!r}; expected one of {JUDGEMENT_KINDS}")
        meta = self.meta()
        entry = {"kind": kind, "subject": subject, "limit": limit, "step": step}
        if observed is not None:
            entry["observed"] = observed
        if entry not in meta.setdefault("judgements", []):
            meta["judgements"].append(entry)
        self.write_meta(meta)

    # ----------------------------------------------------------------- data

    def write_final_read(self, present: dict[str, list[str]], prefix: str) -> None:
        _write_json(self.final_read_path, {"read_at_s": time.time(), "prefix": prefix,
                                           "present": present})

    def final_read(self) -> dict[str, Any] | None:
        if not self.final_read_path.is_file():
            return None
        try:
            return json.loads(self.final_read_path.read_text())
        except json.JSONDecodeError as exc:
            raise HistoryError(f"{self.final_read_path}: not valid JSON: {exc}") from exc

    def failed_rollbacks(self) -> list[str]:
        """The experiment's rollbacks that did not succeed (``name: error``), from the journal."""
        try:
            journal = json.loads(self.journal_path.read_text())
        except (OSError, ValueError):
            return []
        failed = []
        for record in journal.get("rollbacks") or []:
            if record.get("status") not in (None, "succeeded"):
                name = (record.get("activity") or {}).get("name", "?")
                error = record.get("exception") or record.get("status")  # chaoslib: traceback lines
                lines = "".join(error).strip().splitlines() if isinstance(error, list) else [str(error)]
                failed.append(f"{name}: {lines[-1] if lines else record.get('status')}")
        return failed

    def history(self) -> History:
        return load_history(self.history_path)

    @property
    def wan_rtt_ms(self) -> float | None:
        """The WAN's round trip measured at the drill's start (drill.json ``network``), if any."""
        rtt = ((self.meta().get("network") or {}).get("rtt_ms") or {}).get("wan")
        return float(rtt) if isinstance(rtt, int | float) else None

    def check(self, history: History | None = None) -> CheckResult:
        """Judge the run from its files alone; writes and returns results.json's content."""
        history = history if history is not None else self.history()
        config = self.config()
        final_read = self.final_read()
        wan_rtt_ms = self.wan_rtt_ms
        base = check_run(history, config, final_read, wan_rtt_ms=wan_rtt_ms)
        judgements = [
            run_checker(f"{j['kind']}:{j['subject']}",
                        lambda j=j: judge(history, config, final_read, j, wan_rtt_ms=wan_rtt_ms))
            for j in self.meta().get("judgements", [])
        ]
        children = base.children + ([compose("steps", judgements)] if judgements else [])
        result = compose("drill", children)
        result.metrics = {"fault_s": fault_start_s(history), "client_ops": history.n,
                          "nemesis_ops": len(history.nemesis), "platform_ops": len(history.platform)}
        _write_json(self.results_path, result.to_dict())
        return result


def judge(history: History, config: DrillConfig, final_read: dict[str, Any] | None,
          judgement: dict[str, Any], wan_rtt_ms: float | None = None) -> CheckResult:
    """Evaluate one recorded judgement (see the module docstring); ``wan_rtt_ms`` as in drill.json."""
    kind, subject, limit = judgement["kind"], judgement["subject"], float(judgement["limit"])
    step = judgement.get("step", "")
    fault_s = fault_start_s(history)
    if kind == "rto-failback":
        result = check_rto(history, config, {subject: limit}, fault_s=fault_s)
        try:
            result = result.find(f"rto-failback-tier:{subject}")
        except KeyError:
            result = CheckResult("rto-failback", Validity.UNKNOWN, explanation=[
                "No failback ran in this drill (no runbook maintenance window); nothing to measure."])
    elif kind == "runbook":
        result = check_runbook(history, fault_s) or CheckResult("runbook", Validity.UNKNOWN, explanation=[
            "No runbook step ran in this drill."])
    elif kind == "step":
        result = check_step_within(history, subject, limit, fault_s)
    elif kind == "saga":
        result = _saga(judgement.get("observed") or {}, limit)
    elif kind in ("served-by", "serving-at-end"):
        result = check_served_by(history, subject, config.services_in_tier("critical"),
                                 at_end=kind == "serving-at-end", fault_s=fault_s)
    elif kind == "rto":
        if subject in config.rto_objective_s:
            result = check_rto(history, config, {subject: limit}, fault_s=fault_s).find(f"rto-tier:{subject}")
        else:
            config.service(subject)
            result = service_rto(history, subject, fault_s, limit, config.recovery)
    else:
        if subject not in config.rpo_objective_s:
            raise ValueError(f"unknown data class {subject!r}; known: {', '.join(config.rpo_objective_s)}")
        services = config.services_in_data_class(subject)
        objective_s = limit if kind == "rpo" else config.rpo_objective_s[subject]
        result = data_class_rpo(history, subject, services, final_read, fault_s, objective_s,
                                fault_applied_s(history), wan_rtt_ms)
        if kind == "lost" and result.validity is not Validity.UNKNOWN:
            lost = result.metrics["lost_count"]
            ok = lost <= limit
            result = CheckResult(
                f"lost:{subject}", Validity.VALID if ok else Validity.INVALID, result.metrics,
                result.evidence,
                [f"{lost} acknowledged {subject} write(s) were lost; at most {limit:g} allowed."]
                + result.explanation)
    result.name = f"{kind}:{subject}"
    if step:
        result.evidence = {**result.evidence, "step": step}
    return result


def _saga(observed: dict[str, Any], limit_s: float) -> CheckResult:
    """The saga judgement from what :meth:`drdrill.drill.Drill.reconcile_sagas` observed."""
    metrics = {k: v for k, v in observed.items() if k != "error"}
    if observed.get("error") or observed.get("pending_at_end") is None:
        why = observed.get("error") or "the target has no payment sagas to observe"
        return CheckResult("saga", Validity.UNKNOWN, metrics, explanation=[
            f"Could not observe the payments saga's pending payments: {why}."])
    start, end = observed.get("pending_at_start"), observed["pending_at_end"]
    waited = float(observed.get("waited_s") or 0.0)
    if end == 0 and waited <= limit_s:
        return CheckResult("saga", Validity.VALID, metrics, explanation=[
            f"Every pending payment was reconciled (captured or compensated) {waited:.1f} s after "
            f"the final read ({start} pending then), within {limit_s:g} s."])
    return CheckResult("saga", Validity.INVALID, metrics, explanation=[
        f"{end} payment(s) were still pending {waited:.1f} s after the final read ({start} then; "
        f"the oldest {observed.get('oldest_pending_age_s')} s old): the saga did not reconcile "
        f"them within {limit_s:g} s."])


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)
