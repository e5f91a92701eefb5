"""What a drill adds to its Allure results: labels, links, environment, categories and evidence tables.

Terms:

epic         the fault class of the scenario's feature (its tag: ``@service``, ``@database``, ``@az``,
             ``@region``; ``@groundtruth`` for the measurement checks); Allure's *feature* is the
             Gherkin feature and its *story* the scenario
severity     from the service tiers the scenario's Then steps judge: ``critical`` when any
             objective concerns a critical service (directly, through its tier or its data class;
             the runbook, the serving region and the payments saga are the critical path's),
             ``normal`` when only non-critical ones, ``minor`` when it judges none
categories   Allure sorts every scenario that did not pass by the exception that ended it (see
             :data:`CATEGORIES`): a lost acknowledged write (``DataLost``), a missed objective
             (any other failure), too little evidence (``Indeterminate``), a platform that was not
             healthy or reachable, or a rollback that failed (``TargetError``); anything else is
             the harness's own error
measured     per-run values (measured RTO, data loss, lost writes, the run directory) are Allure
             parameters marked *excluded*: shown on the scenario's page, left out of its history id,
             so the trend and history of a scenario follow it from run to run
"""

from __future__ import annotations

import csv
import io
import json
import platform
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from drdrill.catalog import DATA_CLASSES, TIERS
from drdrill.checkers import CheckResult
from drdrill.config import DrillConfig

__all__ = [
    "CATEGORIES",
    "EPICS",
    "collect_results",
    "environment",
    "evidence_tables",
    "measured_parameters",
    "severity",
    "store_results",
    "write_categories",
    "write_environment",
    "write_executor",
]

EPICS = {
    "service": "Service failure",
    "database": "Database failure",
    "az": "Availability-zone failure",
    "region": "Region failure",
    "groundtruth": "Measurement accuracy",
}

CATEGORIES: list[dict[str, Any]] = [
    {"name": "Data lost", "matchedStatuses": ["failed"], "messageRegex": ".*DataLost.*",
     "description": "Acknowledged writes were lost, or the loss reaches further back than the RPO "
                    "objective: see the lost keys attachment."},
    {"name": "Objective missed", "matchedStatuses": ["failed"],
     "description": "The platform did not recover within an objective (RTO, runbook step, serving "
                    "region, saga): see the timeline and the RTO table."},
    {"name": "Indeterminate (not enough evidence)", "matchedStatuses": ["broken"],
     "messageRegex": ".*Indeterminate.*",
     "description": "The history cannot tell whether the objective was met (traffic too thin, no "
                    "final read): never a pass; run again with more traffic."},
    {"name": "Environment unhealthy", "matchedStatuses": ["broken"],
     "messageRegex": ".*TargetError.*",
     "description": "The platform under test was not healthy or not reachable (before the fault, "
                    "or it refused an operation), or a rollback failed and the platform may not be "
                    "restored for the next scenario."},
    {"name": "Harness error", "matchedStatuses": ["broken"],
     "description": "drdrill itself failed (traffic, chaos run, a bug): the verdicts of this "
                    "scenario are missing; see the trace and the run directory."},
]  # fmt: skip

_CRITICAL_PATH_KINDS = ("runbook", "step", "served-by", "serving-at-end", "saga")


def severity(config: DrillConfig, judgements: Iterable[Mapping[str, Any]]) -> str:
    """Allure severity from the tiers the judgements concern (see the module docstring)."""
    tiers: set[str] = set()
    for judgement in judgements:
        kind, subject = judgement.get("kind"), str(judgement.get("subject", ""))
        if kind in ("rto", "rto-failback"):
            if subject in TIERS:
                tiers.add(subject)
            else:
                tiers.update(s.tier for s in config.services if s.name == subject)
        elif kind in ("rpo", "lost"):
            tiers.update(s.tier for s in config.services if s.data_class == subject)
        elif kind in _CRITICAL_PATH_KINDS:
            tiers.add("critical")
    if "critical" in tiers:
        return "critical"
    return "normal" if tiers else "minor"


def epic(markers: Iterable[str]) -> str:
    """The epic of a scenario with these tags (its fault class)."""
    for name in markers:
        if name in EPICS:
            return EPICS[name]
    return "Other drills"


def _find(result: CheckResult, name: str) -> CheckResult | None:
    try:
        return result.find(name)
    except KeyError:
        return None


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def _s(value: Any) -> str:
    return "" if value is None else f"{float(value):.2f}"


def evidence_tables(result: CheckResult, config: DrillConfig) -> dict[str, str]:
    """The scenario's evidence as CSV tables (Allure shows CSV as a table): name -> CSV text.

    ``RTO`` (per service: tier, measured RTO s, objective s, verdict), ``RPO`` (per data class:
    acknowledged, lost, data loss window s, objective s, verdict), ``loss, two measurements`` (per
    data class the database's view was measured for: the users' and the database's loss windows,
    their difference and tolerance, whether they agree, the DR lag at the fault in bytes and
    seconds, the WAN RTT, the write rate, the finding), ``runbook steps`` (when the run had any)
    and ``lost keys`` (plain text, only when writes were lost).
    """
    tables: dict[str, str] = {}
    rows = []
    for tier in config.rto_objective_s:
        tier_node = _find(result, f"rto-tier:{tier}")
        if tier_node is None:
            continue
        for node in tier_node.children:
            m = node.metrics
            rows.append([node.name.split(":", 1)[1], tier, _s(m.get("measured_rto_s")),
                         _s(m.get("objective_s")), node.validity.value])
        m = tier_node.metrics
        rows.append([f"{tier} tier", tier, _s(m.get("measured_rto_s")), _s(m.get("objective_s")),
                     tier_node.validity.value])
        failback = _find(result, f"rto-failback-tier:{tier}")
        if failback is not None:
            rows.append([f"{tier} tier (failback)", tier, _s(failback.metrics.get("measured_rto_s")),
                         _s(failback.metrics.get("objective_s")), failback.validity.value])
    if rows:
        tables["RTO"] = _csv(["service", "tier", "measured RTO (s)", "objective (s)", "verdict"], rows)
    rows = []
    lost_lines = []
    for data_class in config.rpo_objective_s:
        node = _find(result, f"rpo:{data_class}")
        if node is None:
            continue
        m = node.metrics
        rows.append([data_class, m.get("acknowledged_count", ""), m.get("lost_count", ""),
                     _s(m.get("data_loss_window_s")), _s(m.get("objective_s")), node.validity.value])
        for key in ("lost_keys", "lost_after_fault_keys", "unexpected_keys", "failed_but_present_keys"):
            for entry in node.evidence.get(key) or []:
                lost_lines.append(f"{data_class}\t{key}\t{entry}")
    if rows:
        tables["RPO"] = _csv(["data class", "acknowledged writes", "lost", "data loss window (s)",
                              "objective (s)", "verdict"], rows)  # fmt: skip
    rows = []
    for data_class in config.rpo_objective_s:
        node = _find(result, f"rpo:{data_class}")
        m = node.metrics if node is not None else {}
        if m.get("db_loss_window_s") is None and m.get("db_lag_bytes_at_fault") is None:
            continue
        agrees = m.get("db_agrees")
        rows.append([data_class, _s(m.get("data_loss_window_s")), _s(m.get("db_loss_window_s")),
                     _s(m.get("db_difference_s")), _s(m.get("tolerance_s")),
                     "" if agrees is None else ("yes" if agrees else "NO"),
                     "" if m.get("db_lag_bytes_at_fault") is None else m["db_lag_bytes_at_fault"],
                     _s(m.get("db_replay_lag_s_at_fault")), _s(m.get("wan_rtt_ms")),
                     _s(m.get("write_rate_per_s")), node.evidence.get("finding", "")])
    if rows:
        tables["loss, two measurements"] = _csv(
            ["data class", "users' loss window (s)", "database's loss window (s)", "difference (s)",
             "tolerance (s)", "agree", "DR lag at fault (bytes)", "DR replay lag at fault (s)",
             "WAN RTT (ms)", "write rate (/s)", "finding"], rows)  # fmt: skip
    runbook = _find(result, "runbook")
    if runbook is not None and runbook.evidence.get("steps"):
        tables["runbook steps"] = _csv(
            ["step", "phase", "mode", "started after fault (s)", "duration (s)", "operator (s)", "status"],
            [[r["step"], r["phase"], r["mode"], _s(r["started_after_fault_s"]), _s(r["duration_s"]),
              _s(r["operator_s"]), r["status"]] for r in runbook.evidence["steps"]])  # fmt: skip
    if lost_lines:
        tables["lost keys"] = "data class\tkind\tkeys (first..last, count)\n" + "\n".join(lost_lines) + "\n"
    return tables


def measured_parameters(result: CheckResult) -> dict[str, float | int | str]:
    """Per-run measured values for excluded Allure parameters (name -> value)."""
    params: dict[str, float | int | str] = {}
    for tier in TIERS:
        node = _find(result, f"rto-tier:{tier}")
        if node is not None and node.metrics.get("measured_rto_s") is not None:
            params[f"measured RTO, {tier} (s)"] = round(float(node.metrics["measured_rto_s"]), 2)
    for data_class in DATA_CLASSES:
        node = _find(result, f"rpo:{data_class}")
        if node is not None:
            m = node.metrics
            if m.get("data_loss_window_s") is not None:
                params[f"data loss window, {data_class} (s)"] = round(float(m["data_loss_window_s"]), 2)
            params[f"lost writes, {data_class}"] = m.get("lost_count", "?")
            if m.get("db_loss_window_s") is not None:
                params[f"database's loss window, {data_class} (s)"] = round(float(m["db_loss_window_s"]), 2)
    return params


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git_revision(root: Path) -> str:
    if shutil.which("git") is None:
        return "unknown (no git)"
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10)  # fmt: skip
        if rev.returncode != 0:
            return "unknown (not a git checkout)"
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()  # fmt: skip
        return rev.stdout.strip() + (" (with local changes)" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def environment(target: Any, root: Path) -> dict[str, str]:
    """What the drill ran against and with: target, topology, component versions, git revision."""
    env = {"target": str(target.name), "target.entry": str(target.base_url)}
    describe = getattr(target, "describe", None)
    if callable(describe):
        env.update({str(k): str(v) for k, v in describe().items()})
    env.update({
        "drdrill.git_revision": _git_revision(root),
        "drdrill.version": _version("drdrill"),
        "python": platform.python_version(),
        "chaostoolkit-lib": _version("chaostoolkit-lib"),
        "locust": _version("locust"),
        "pytest-bdd": _version("pytest-bdd"),
        "host": platform.node(),
    })  # fmt: skip
    return env


def _property(text: str) -> str:
    return (text.replace("\\", "\\\\").replace("\n", "\\n").replace("=", "\\=").replace(":", "\\:")
            .replace("#", "\\#").replace("!", "\\!"))  # fmt: skip


def write_environment(alluredir: Path, env: Mapping[str, str]) -> Path:
    """``environment.properties`` in ``alluredir`` (Allure's Environment widget)."""
    alluredir.mkdir(parents=True, exist_ok=True)
    path = alluredir / "environment.properties"
    path.write_text("".join(f"{_property(k).replace(' ', '_')}={_property(v)}\n" for k, v in env.items()))
    return path


def write_categories(alluredir: Path) -> Path:
    """``categories.json`` in ``alluredir`` (see :data:`CATEGORIES`)."""
    alluredir.mkdir(parents=True, exist_ok=True)
    path = alluredir / "categories.json"
    path.write_text(json.dumps(CATEGORIES, indent=2))
    return path


def write_executor(alluredir: Path, build_name: str, report_name: str) -> Path:
    """``executor.json`` in ``alluredir``: who ran the drill and which run it was (names the trend's points)."""
    alluredir.mkdir(parents=True, exist_ok=True)
    path = alluredir / "executor.json"
    path.write_text(json.dumps({"name": "drdrill", "type": "drdrill", "buildName": build_name,
                                "reportName": report_name}))  # fmt: skip
    return path


# ---------------------------------------------------------------------- results kept with their run

RUN_PARAMETER = "run directory"
STORE_DIR = "allure"


def _attachment_sources(node: Mapping[str, Any]) -> list[str]:
    found = [a["source"] for a in node.get("attachments") or [] if a.get("source")]
    for step in node.get("steps") or []:
        found += _attachment_sources(step)
    return found


def _run_dir(result: Mapping[str, Any]) -> Path | None:
    for param in result.get("parameters") or []:
        if param.get("name") == RUN_PARAMETER:
            value = str(param.get("value", "")).strip("'\"")
            return Path(value) if value else None
    return None


def store_results(alluredir: Path) -> list[Path]:
    """Copy each scenario's Allure result (and its attachments, environment, categories, executor) into its
    run directory's ``allure/``, so ``drdrill report RUN_DIR`` can rebuild the HTML; the run
    directories written."""
    written = []
    shared = [alluredir / name for name in ("environment.properties", "categories.json", "executor.json")
              if (alluredir / name).is_file()]  # fmt: skip
    for path in sorted(alluredir.glob("*-result.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        run = _run_dir(result)
        if run is None or not (run / "drill.json").is_file():
            continue
        into = run / STORE_DIR
        if into.is_dir():
            shutil.rmtree(into)
        into.mkdir()
        shutil.copyfile(path, into / path.name)
        for source in _attachment_sources(result):
            if (alluredir / source).is_file():
                shutil.copyfile(alluredir / source, into / source)
        for extra in shared:
            shutil.copyfile(extra, into / extra.name)
        written.append(run)
    return written


def collect_results(run_dirs: Iterable[Path], into: Path) -> int:
    """Gather the Allure results stored in ``run_dirs`` into one results directory; how many."""
    into.mkdir(parents=True, exist_ok=True)
    count = 0
    for run in run_dirs:
        stored = Path(run) / STORE_DIR
        if not stored.is_dir():
            continue
        for path in stored.iterdir():
            shutil.copyfile(path, into / path.name)
        count += sum(1 for _ in stored.glob("*-result.json"))
    return count
