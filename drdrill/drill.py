"""One drill, end to end: traffic on, experiment, recovery, final read, verdicts — all into one run directory.

The Gherkin steps are thin calls into :class:`Drill`; so is anything else that runs a drill.

Order: :meth:`Drill.start_traffic` (and the target's observation of the platform, e.g. the DR
replica's replication samples, until :meth:`Drill.finish`) → :meth:`Drill.run_experiment` →
:meth:`Drill.wait_recovered` (traffic keeps flowing until the target is healthy, then one more
recovery window so recovery can be proven) → :meth:`Drill.finish` (traffic stops, the final read
looks up every key the run wrote) → :meth:`Drill.judge` per objective → :meth:`Drill.close` (writes
``results.json``). Whatever fails in between, ``close`` stops the traffic and leaves a run directory
that ``drdrill check`` can judge.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from drdrill.chaos.runner import find_experiment, load_experiment
from drdrill.chaos.runner import run_experiment as chaos_run
from drdrill.checkers import CheckResult
from drdrill.config import DrillConfig
from drdrill.errors import ExperimentError, TargetError, WaitTimeout
from drdrill.history import History, HistoryWriter
from drdrill.run import RunDir, judge
from drdrill.targets import Target
from drdrill.traffic.runner import TrafficRun
from drdrill.waiting import wait_until

__all__ = ["Drill"]

log = logging.getLogger("drdrill")


class Drill:
    """The state of one drill (one Gherkin scenario) and the operations on it."""

    def __init__(self, target: Target, config: DrillConfig, run: RunDir,
                 experiment_dirs: Iterable[str | os.PathLike[str]]) -> None:
        self.target = target
        self.config = config
        self.run = run
        self.experiment_dirs = [Path(d) for d in experiment_dirs]
        self.writer = HistoryWriter(run.history_path)
        self.traffic: TrafficRun | None = None
        self.observing = contextlib.ExitStack()  # the target's own view of the platform (platform ops)
        self.finished = False
        self._history: History | None = None
        # experiment configuration the scenario's Given steps set (manual runbook steps, outage_s)
        self.experiment_overrides: dict[str, Any] = {}
        self.degraded_links: list[str] = []  # links the scenario degraded (undone by close)

    def __repr__(self) -> str:
        return f"Drill({self.run.path.name})"

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        """Block until the target reports healthy; TargetError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.target.healthy():
            if time.monotonic() > deadline:
                raise TargetError(f"the {self.target.name} target at {self.target.base_url} was not healthy "
                                  f"within {timeout_s:g} s; check that it is up")
            time.sleep(0.2)

    def start_traffic(self, users: int, rate_per_user: float = 10.0, max_duration_s: float = 3600.0,
                      baseline_s: float | None = None, payments_per_s: float | None = None,
                      ramp_s: float | None = None) -> None:
        """Start synthetic users, wait until every service answers them, then observe a baseline.

        ``payments_per_s`` (default: the config's ``traffic.payments_per_s``, else none) adds payment
        writers creating that many payments a second, reached over ``ramp_s`` (default: the config's)
        — a production write rate; bad values are refused before anything starts. The baseline
        (default: one recovery window) is steady-state evidence before any fault: the availability
        checker judges it, and the RPO checker needs writes acknowledged before the fault to see how
        far back a loss reaches.
        """
        defaults = self.config.traffic
        if payments_per_s is None:
            payments_per_s = defaults.payments_per_s
            ramp_s = defaults.ramp_s if ramp_s is None else ramp_s
        ramp_s = ramp_s or 0.0
        self.traffic = TrafficRun(self.target.base_url, self.run.history_path, self.run.run_id,
                                  users=users, rate_per_user=rate_per_user, max_duration_s=max_duration_s,
                                  payments_per_s=payments_per_s, ramp_s=ramp_s if payments_per_s else 0.0)
        load = self.traffic.load
        meta: dict[str, Any] = {"users": users, "rate_per_user": rate_per_user}
        if load is not None:
            meta.update(payments_per_s=load.payments_per_s, ramp_s=load.ramp_s,
                        payment_writers=load.writers, payments_per_writer_s=round(load.per_writer_s, 6))
        self.run.update_meta(traffic=meta)
        try:
            self.observing.enter_context(self.target.observe(self.writer, self.run.update_meta))
        except Exception as exc:  # noqa: BLE001 - the platform's own view is evidence, never a blocker
            log.warning("could not observe the platform's own view (replication samples): %s", exc)
        log.info("traffic: starting %d synthetic users at %g req/s each%s against %s",
                 users, rate_per_user,
                 f" + {load.writers} payment writers at {load.payments_per_s:g} payments/s"
                 f"{f' (ramp {load.ramp_s:g} s)' if load.ramp_s else ''}" if load else "",
                 self.target.base_url)
        self.traffic.start()
        self.traffic.wait_until_flowing()
        baseline = self.config.recovery.window_s if baseline_s is None else baseline_s
        log.info("traffic: flowing to every service; observing a %g s baseline before any fault", baseline)
        time.sleep(baseline)

    def degrade_link(self, link: str, **spec: Any) -> dict[str, Any]:
        """Degrade one of the target's links for the whole drill: a *condition* of the drill, not its
        fault. Recorded in the history as a nemesis action of phase ``steady-state`` (so the report
        shows it and it never becomes t_fault, the first *method* action), undone by :meth:`close`
        (also after a failure or Ctrl-C)."""
        started = time.time()
        result = self.target.degrade_link(link, **spec)
        self.degraded_links.append(link)
        shown = ", ".join(f"{k}={v}" for k, v in spec.items() if v is not None)
        self._condition_ops(f"degrade_link {link} {shown}", started)
        self.run.update_meta(conditions=[*self.run.meta().get("conditions", []), {"degrade_link": link, **spec}])
        log.info("condition: link %s degraded (%s)", link, shown)
        return result

    def _condition_ops(self, name: str, started: float) -> None:
        now = time.time()
        base = {"process": "nemesis", "phase": "steady-state", "kind": "action"}
        self.writer.append({**base, "type": "info", "f": f"start:{name}", "time_s": started})
        self.writer.append({**base, "type": "ok", "f": f"stop:{name}", "time_s": started, "end_s": now,
                            "latency_ms": round((now - started) * 1000, 3)}, flush=True)  # fmt: skip

    def _undo_conditions(self) -> None:
        if not self.degraded_links:
            return
        started = time.time()
        try:
            self.target.restore_links()
            self._condition_ops(f"restore_links {', '.join(self.degraded_links)}", started)
            self.degraded_links = []
        except Exception as exc:  # noqa: BLE001 - reported, never hides the scenario's own outcome
            log.warning("could not restore the degraded links %s: %s; restore them with "
                        "`drdrill mirror links --restore`", self.degraded_links, exc)

    def run_experiment(self, name: str, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run the experiment called ``name`` against the target; returns its journal.

        ``configuration`` overrides experiment configuration keys (e.g. ``outage_s``) on top of the
        target's own (where the target is). Refused before any fault when the experiment names a
        region, AZ, service or runbook step the target does not have.
        """
        path = find_experiment(name, self.experiment_dirs)
        experiment = load_experiment(path)
        merged = {**self.target.experiment_configuration(), **self.experiment_overrides,
                  **(configuration or {})}
        problems = self.target.experiment_problems({**experiment, "configuration": {
            **(experiment.get("configuration") or {}), **merged}})
        if problems:
            raise ExperimentError(f"{path}: refused before any fault:\n  - " + "\n  - ".join(problems))
        self.run.update_meta(experiment={"name": name, "path": str(path), "title": experiment.get("title"),
                                         "configuration": configuration or {}})
        log.info("experiment %s: running %s (rollbacks always)", name, path)
        return chaos_run(experiment, self.writer, self.run.journal_path, configuration=merged)

    def wait_recovered(self, timeout_s: float = 600.0) -> float:
        """Keep traffic flowing until the target is healthy, then one more recovery window; returns seconds waited."""
        started = time.monotonic()
        deadline = started + timeout_s
        log.info("recovery: waiting up to %g s for the target to be healthy", timeout_s)
        while not self.target.healthy():
            if time.monotonic() > deadline:
                log.warning("target not healthy after %.0f s; judging what was observed", timeout_s)
                break
            time.sleep(0.2)
        log.info("recovery: target healthy after %.1f s; observing one more %g s window",
                 time.monotonic() - started, self.config.recovery.window_s)
        time.sleep(self.config.recovery.window_s + 1.0)
        return time.monotonic() - started

    def finish(self) -> None:
        """Stop traffic and take the final read (idempotent)."""
        if self.finished:
            return
        self.finished = True
        if self.traffic is not None:
            self.traffic.stop()
        try:
            self.observing.close()
        except Exception as exc:  # noqa: BLE001 - the platform's own view is evidence, never a blocker
            log.warning("stopping the observation of the platform failed: %s", exc)
        self.writer.flush()
        try:
            present = self.target.final_read(self.run.run_id)
        except Exception as exc:  # noqa: BLE001 - without a final read RPO is UNKNOWN, not a crash
            log.warning("final read failed: %s; RPO will be unknown", exc)
            self.run.update_meta(final_read_error=f"{type(exc).__name__}: {exc}")
            return
        self.run.write_final_read(present, prefix=self.run.run_id)
        log.info("final read: %d keys of run %s present", sum(map(len, present.values())), self.run.run_id)

    def reconcile_sagas(self, limit_s: float, step: str = "") -> CheckResult:
        """Wait (up to ``limit_s``, after the final read) until no payment is left pending by a saga;
        record what was seen as a ``saga`` judgement and evaluate it."""
        self.finish()
        started = time.monotonic()
        observed: dict[str, Any] = {"limit_s": limit_s}
        try:
            first = self.target.pending_payments()
            observed["pending_at_start"] = None if first is None else first.get("pending")
            last = first
            if last is not None and last.get("pending"):

                def settled() -> bool:
                    nonlocal last
                    last = self.target.pending_payments()
                    return last is None or not last.get("pending")

                with contextlib.suppress(WaitTimeout):  # still pending at the limit: judged below
                    wait_until(settled, timeout_s=max(0.0, limit_s - (time.monotonic() - started)),
                               interval_s=0.5, what="every saga settled")
            observed["pending_at_end"] = None if last is None else last.get("pending")
            observed["oldest_pending_age_s"] = None if last is None else last.get("oldest_pending_age_s")
        except (TargetError, OSError) as exc:
            observed["error"] = f"{type(exc).__name__}: {exc}"
        observed["waited_s"] = round(time.monotonic() - started, 3)
        judgement = {"kind": "saga", "subject": "payments", "limit": limit_s, "step": step,
                     "observed": observed}
        self.run.add_judgement(**judgement)
        return judge(self.history(), self.config, self.run.final_read(), judgement,
                     wan_rtt_ms=self.run.wan_rtt_ms)

    def history(self) -> History:
        if self._history is None or not self.finished:
            self._history = self.run.history()
        return self._history

    def judge(self, kind: str, subject: str, limit: float, step: str = "") -> CheckResult:
        """Record and evaluate one objective (see :mod:`drdrill.run`); finishes the drill first."""
        self.finish()
        judgement = {"kind": kind, "subject": subject, "limit": limit, "step": step}
        self.run.add_judgement(**judgement)
        return judge(self.history(), self.config, self.run.final_read(), judgement,
                     wan_rtt_ms=self.run.wan_rtt_ms)

    def close(self) -> CheckResult | None:
        """Finish, close the history and write results.json; never raises for a broken run."""
        try:
            self.finish()
        finally:
            self._undo_conditions()
            self.writer.close()
        try:
            return self.run.check(self.history())
        except Exception as exc:  # noqa: BLE001 - a crash here must not hide the scenario's own error
            log.warning("could not check %s: %s", self.run.path, exc)
            return None
