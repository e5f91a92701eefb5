"""The experiment runner: finds, loads, validates and runs a Chaos Toolkit experiment, recording nemesis ops.

The experiment runs with ``chaoslib`` in the main thread (it installs signal handlers) with the
rollback strategy **always**: rollbacks run whether the method succeeded, failed, or was interrupted
by Ctrl-C or SIGTERM. Every activity start and end is appended to the run's history as a nemesis op
(see :mod:`drdrill.history`): ``start:<activity>`` when it starts, ``stop:<activity>`` when it ends
(``ok`` succeeded, ``fail`` failed, ``info`` interrupted), with ``phase`` (``steady-state``,
``method``, ``rollback``) and ``kind`` (``action``, ``probe``); a runbook step's ops also carry
``runbook_step`` and, when it ends, its ``mode`` and ``operator_s`` (see :mod:`drdrill.runbook`);
an activity whose output names a ``maintenance_window_s`` ([start, end]: traffic it stopped on
purpose, such as the rollback's automatic failback) passes it on to its op.
The journal is saved as ``journal.json``. An interrupted run re-raises KeyboardInterrupt after its
rollbacks and journal.

SIGTERM stops the method as Ctrl-C does (chaoslib alone turns it into a failed activity and goes
on with the next one). Rollbacks always finish: while they run, Ctrl-C and SIGTERM are held back (a
line says so) and take effect once the rollbacks are done.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from drdrill.errors import ExperimentError
from drdrill.history import HistoryWriter

__all__ = ["EXPERIMENT_SUFFIXES", "NemesisRecorder", "find_experiment", "interrupt_on_sigterm",
           "list_experiments", "load_experiment", "run_experiment"]

EXPERIMENT_SUFFIXES = (".json", ".yaml", ".yml")
log = logging.getLogger("drdrill")


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")


def interrupt_on_sigterm() -> None:
    """Make SIGTERM raise KeyboardInterrupt (stop now, roll back) instead of failing one activity."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm)


def list_experiments(directories: Iterable[str | os.PathLike[str]]) -> dict[str, Path]:
    """Experiment name (file stem) → path, for every experiment file directly in ``directories``.

    Not recursive: a subdirectory holds another target's versions (``experiments/aws/``), which its
    target lists first (see :func:`drdrill.pytest_plugin.experiment_dirs`); the first directory
    wins for a name found in several.
    """
    found: dict[str, Path] = {}
    for directory in directories:
        directory = Path(directory)
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.suffix in EXPERIMENT_SUFFIXES and path.is_file():
                found.setdefault(path.stem, path)
    return found


def find_experiment(name: str, directories: Iterable[str | os.PathLike[str]]) -> Path:
    """The experiment file called ``name``; ExperimentError listing the known ones otherwise."""
    directories = list(directories)
    candidate = Path(name)
    if candidate.suffix in EXPERIMENT_SUFFIXES and candidate.is_file():
        return candidate
    known = list_experiments(directories)
    if name in known:
        return known[name]
    where = ", ".join(str(d) for d in directories)
    raise ExperimentError(
        f"unknown experiment {name!r} (looked in {where}); known experiments: "
        + (", ".join(sorted(known)) or "none"))


def load_experiment(path: str | os.PathLike[str], validate: bool = True) -> dict[str, Any]:
    """Load (and validate) an experiment file; ExperimentError naming the file and the problem."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid
    from chaoslib.loader import load_experiment as chaos_load

    path = Path(path)
    try:
        experiment = chaos_load(str(path))
    except json.JSONDecodeError as exc:
        raise ExperimentError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}") from exc
    except ChaosException as exc:
        raise ExperimentError(f"{path}: cannot load experiment: {exc}") from exc
    if validate:
        try:
            ensure_experiment_is_valid(experiment)
        except (ChaosException, ValueError, TypeError) as exc:
            raise ExperimentError(f"{path}: invalid experiment: {exc}") from exc
    return experiment


class NemesisRecorder:
    """A chaoslib run event handler writing one nemesis op per activity start and end."""

    def __init__(self, writer: HistoryWriter, experiment: Mapping[str, Any]) -> None:
        from chaoslib.run import RunEventHandler

        # chaoslib calls handlers by duck typing but registers only RunEventHandler subclasses.
        self.handler = type("_Handler", (RunEventHandler,), {
            "start_activity": lambda _, activity: self.start_activity(activity),
            "activity_completed": lambda _, activity, run: self.activity_completed(activity, run),
            "started": lambda _, experiment, journal: interrupt_on_sigterm(),
            "start_rollbacks": lambda _, experiment: self.hold_signals(),
            "rollbacks_completed": lambda _, experiment, journal: self.release_signals(journal),
        })()
        self.writer = writer
        self._lock = threading.Lock()
        self._started_s: dict[int, float] = {}
        self._phase_by_name: dict[str, str] = {}
        self._held: list[int] = []
        self._saved_handlers: dict[int, Any] = {}
        hypothesis = experiment.get("steady-state-hypothesis") or {}
        for phase, activities in (("steady-state", hypothesis.get("probes") or []),
                                  ("rollback", experiment.get("rollbacks") or []),
                                  ("method", experiment.get("method") or [])):
            for activity in activities:
                self._phase_by_name[activity.get("name", "")] = phase

    def hold_signals(self) -> None:
        """Hold Ctrl-C and SIGTERM back while the rollbacks run (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def hold(signum: int, frame: Any) -> None:
            self._held.append(signum)
            log.warning("%s received while the rollbacks run: they finish first, then the run stops",
                        signal.Signals(signum).name)

        for signum in (signal.SIGINT, signal.SIGTERM):
            self._saved_handlers[signum] = signal.signal(signum, hold)

    def release_signals(self, journal: dict[str, Any] | None = None) -> None:
        """Restore the signal handlers; a signal held back marks the journal interrupted."""
        for signum, handler in self._saved_handlers.items():
            signal.signal(signum, handler)
        self._saved_handlers.clear()
        if self._held and journal is not None:
            journal["status"] = "interrupted"

    @staticmethod
    def _runbook_step(activity: Mapping[str, Any]) -> str | None:
        provider = activity.get("provider") or {}
        if provider.get("type") != "python":
            return None
        try:
            module = importlib.import_module(provider.get("module", ""))
        except Exception:  # noqa: BLE001 - chaoslib reports a bad module itself
            return None
        return getattr(getattr(module, provider.get("func", ""), None), "runbook_step", None)

    def _op(self, activity: Mapping[str, Any], **fields: Any) -> dict[str, Any]:
        name = activity.get("name", "?")
        op = {"process": "nemesis", "phase": self._phase_by_name.get(name, "method"),
              "kind": activity.get("type"), **fields}
        step = self._runbook_step(activity)
        if step:
            op["runbook_step"] = step
        return op

    def start_activity(self, activity: Mapping[str, Any]) -> None:
        now = time.time()
        with self._lock:
            self._started_s[id(activity)] = now
        self.writer.append(self._op(activity, type="info", f=f"start:{activity.get('name')}",
                                    time_s=now), flush=True)

    def activity_completed(self, activity: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        now = time.time()
        with self._lock:
            started = self._started_s.pop(id(activity), now)
        status = run.get("status")
        op_type = {"succeeded": "ok", "failed": "fail"}.get(status, "info")
        error = None
        if run.get("exception"):
            error = redact(str(run["exception"][-1]).strip()[:300])
        elif status is None:
            error = "interrupted"
        op = self._op(activity, type=op_type, f=f"stop:{activity.get('name')}", time_s=started,
                      end_s=now, latency_ms=round((now - started) * 1000, 3), error=error)
        output = run.get("output")
        if isinstance(output, Mapping):
            if output.get("runbook_step"):
                op.update(mode=output.get("mode"), operator_s=output.get("operator_s"))
            if output.get("maintenance_window_s"):  # a planned outage the activity caused
                op["maintenance_window_s"] = list(output["maintenance_window_s"])
        self.writer.append(op, flush=True)


CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_SECRET_KEY = re.compile(r"secret|password|token|access_key|credential", re.IGNORECASE)
REDACTED = "***redacted***"


def redact(data: Any, known: Sequence[str] | None = None) -> Any:
    """``data`` with every credential replaced by ``***redacted***``: the values of a ``secrets``
    section and of keys that name a secret (password, token, access key...), and any occurrence of
    the credentials in the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_SESSION_TOKEN``). Applied to every journal drdrill writes."""
    if known is None:
        known = [v for v in (os.environ.get(k) for k in CREDENTIAL_ENV) if v and len(v) >= 8]

    def walk(value: Any, hidden: bool) -> Any:
        if isinstance(value, Mapping):
            return {k: walk(v, hidden or k == "secrets" or bool(_SECRET_KEY.search(str(k))))
                    for k, v in value.items()}  # fmt: skip
        if isinstance(value, list | tuple):
            return [walk(v, hidden) for v in value]
        if hidden and isinstance(value, str | int | float) and not isinstance(value, bool):
            return REDACTED
        if isinstance(value, str):
            for secret in known:
                value = value.replace(secret, REDACTED)
        return value

    return walk(data, False)


def run_experiment(
    experiment: dict[str, Any],
    writer: HistoryWriter,
    journal_path: str | os.PathLike[str],
    configuration: Mapping[str, Any] | None = None,
    hypothesis_strategy: str = "default",
    hypothesis_frequency_s: float = 1.0,
) -> dict[str, Any]:
    """Run ``experiment`` (rollbacks always), record nemesis ops, save and return the journal.

    ``configuration`` overrides (or adds) experiment configuration keys (how drdrill tells an
    experiment where the target is). Must be called from the main thread. KeyboardInterrupt is re-raised after
    rollbacks ran and the journal was saved.
    """
    from chaoslib.experiment import run_experiment as chaos_run
    from chaoslib.run import Schedule, Strategy

    if threading.current_thread() is not threading.main_thread():
        raise ExperimentError("experiments must run in the main thread (chaoslib installs signal handlers)")
    if configuration:  # chaoslib only overrides keys the experiment declares: declare them
        experiment = {**experiment, "configuration": {
            **(experiment.get("configuration") or {}), **dict(configuration)}}
    recorder = NemesisRecorder(writer, experiment)
    settings = {"runtime": {"rollbacks": {"strategy": "always"}}}
    journal = chaos_run(
        experiment,
        settings=settings,
        experiment_vars=(dict(configuration or {}), {}),
        strategy=Strategy.from_string(hypothesis_strategy),
        schedule=Schedule(continuous_hypothesis_frequency=hypothesis_frequency_s),
        event_handlers=[recorder.handler],
    )
    writer.flush()
    journal_path = Path(journal_path)
    journal_path.write_text(json.dumps(redact(journal), indent=2, default=str))
    if journal.get("status") == "interrupted":
        raise KeyboardInterrupt(f"experiment interrupted; rollbacks ran; journal at {journal_path}")
    return journal
