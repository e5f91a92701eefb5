"""The DR test report: what the DR plan's section 6 asks to share with stakeholders, from run directories.

Built from stored run directories only (``results.json`` is re-judged from the history, as
``drdrill check`` does), so rebuilding from the same runs gives the same report. Two files in the
output directory, with the timeline plots:

``dr-test-report.md``    Markdown (plots as PNG files beside it)
``dr-test-report.html``  one self-contained HTML file: inline CSS, plots embedded as data: URIs, no
                         request to any other host

Contents: the overall verdict; the objectives; per scenario the objective against the measured
value (critical and non-critical RTO, the failback's RTO, data loss per data class), the verdicts
of its Then steps, the runbook's step timings, the timeline plot and, per data class that lost
writes (or whose loss the database's view measured: a region failover), a *data loss* section: the lost writes by key
range, the loss window users saw against the database's own (its DR replica's lag at the moment of
loss, :mod:`drdrill.checkers.db_loss`), judged against the objective, where the window comes from,
and the finding when the two disagree; the issues found (every missed
objective, lost write range, failed runbook step, unhealthy component, verdict without enough
evidence), each with a remediation suggested from its evidence; a sign-off section.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drdrill.catalog import DATA_CLASSES
from drdrill.checkers import CheckResult, Validity, merge_validity
from drdrill.errors import HistoryError
from drdrill.run import RunDir

__all__ = ["Issue", "build_report"]

SIGN_OFF_ROLES = ("Incident Commander", "SRE lead (drill owner)", "Engineering manager",
                  "Comms lead", "Risk / compliance")


@dataclass
class Issue:
    """One problem found: where, what, the evidence, and what to do about it."""

    scenario: str
    what: str
    evidence: str
    remediation: str
    severity: str = "objective missed"  # objective missed | data lost | indeterminate | runbook | finding


@dataclass
class Scenario:
    run: RunDir
    name: str
    result: CheckResult
    experiment: str
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)  # what, objective, measured, verdict
    steps: list[tuple[str, str, str]] = field(default_factory=list)  # Then step, verdict, why
    runbook: list[dict[str, Any]] = field(default_factory=list)
    plot: Path | None = None
    issues: list[Issue] = field(default_factory=list)
    losses: list[Loss] = field(default_factory=list)


@dataclass
class Loss:
    """One data class's loss as a stakeholder reads it: a summary, a table, sentences."""

    data_class: str
    summary: str
    rows: list[tuple[str, str]]  # measure, value
    sentences: list[str]  # where the window comes from; the database's absence or agreement
    finding: str | None = None


def _find(result: CheckResult, name: str) -> CheckResult | None:
    try:
        return result.find(name)
    except KeyError:
        return None


def _seconds(value: Any) -> str:
    if value is None:
        return "not measured"
    value = float(value)
    return f"{value:.2f} s" if value < 120 else f"{value:.0f} s ({value / 60:.1f} min)"


def _scenario(run: RunDir, out_dir: Path, index: int) -> Scenario:
    from drdrill.report.timeline import plot_timeline

    meta = run.meta()
    history = run.history()
    result = run.check(history)
    name = meta.get("scenario", run.path.name)
    scenario = Scenario(run, name, result, (meta.get("experiment") or {}).get("name", "-"))
    config = run.config()
    for tier in config.rto_objective_s:
        found = _find(result, f"rto-tier:{tier}")
        if found is not None:
            scenario.rows.append((f"RTO, {tier} services", f"< {_seconds(found.metrics.get('objective_s'))}",
                                  _seconds(found.metrics.get("measured_rto_s")), found.validity.value))
    for tier in config.rto_objective_s:
        found = _find(result, f"rto-failback-tier:{tier}")
        if found is not None:
            scenario.rows.append((f"failback RTO, {tier} services",
                                  f"< {_seconds(found.metrics.get('objective_s'))}",
                                  _seconds(found.metrics.get("measured_rto_s")), found.validity.value))
    for data_class in config.rpo_objective_s:
        found = _find(result, f"rpo:{data_class}")
        if found is not None:
            m = found.metrics
            measured = (f"{_seconds(m.get('data_loss_window_s'))} window, {m.get('lost_count', '?')} of "
                        f"{m.get('acknowledged_count', '?')} acknowledged writes lost")
            scenario.rows.append((f"RPO, {data_class} data", f"< {_seconds(m.get('objective_s'))}",
                                  measured, found.validity.value))
    steps = _find(result, "steps")
    for child in steps.children if steps else []:
        text = child.evidence.get("step") or child.name
        scenario.steps.append((text, child.validity.value, " ".join(child.explanation[:1])))
    runbook = _find(result, "runbook")
    if runbook is not None:
        scenario.runbook = list(runbook.evidence.get("steps", []))
    if history.n:
        scenario.plot = plot_timeline(history, config, result, out_dir / f"timeline-{index:02d}.png",
                                      title=name)
    scenario.losses = [loss for c in config.rpo_objective_s if (loss := _loss(result, c)) is not None]
    scenario.issues = _issues(scenario, run)
    return scenario


def _bytes(value: Any) -> str:
    if value is None:
        return "not measured"
    value = int(value)
    return f"{value} bytes" if value < 10_240 else f"{value / 1024:.0f} KiB ({value} bytes)"


def _signed_window(value: Any) -> str:
    """A loss window; a negative one (the loss began after t_fault, while the fault took effect) in words."""
    if value is None or float(value) >= 0:
        return _seconds(value)
    return f"{_seconds(-float(value))} after the fault began (while it took effect)"


SHOWN_RANGES = 6  # a stakeholder's table cell; the full list is in results.json and the Allure report


def _ranges_text(ranges: list[Any]) -> str:
    """Lost key ranges for a table cell: all of them when few, else the first ones and how many more."""
    if not ranges:
        return "none"
    shown = "; ".join(str(r) for r in ranges[:SHOWN_RANGES])
    if len(ranges) <= SHOWN_RANGES:
        return shown
    return (f"{shown}; … and {len(ranges) - SHOWN_RANGES} more ranges ({len(ranges)} in all, one or more "
            "per synthetic writer: every one in the run's results.json and the Allure report's lost keys)")


def _loss(result: CheckResult, data_class: str) -> Loss | None:
    """The data loss section of ``data_class`` when it lost writes, or the database's view of a
    failover was measured (its DR database was promoted while sampled)."""
    node = _find(result, f"rpo:{data_class}")
    if node is None:
        return None
    m, e = node.metrics, node.evidence
    finding = e.get("finding")
    if not m.get("lost_count") and not finding and m.get("db_agrees") is None:
        return None
    objective_s = m.get("objective_s")
    window_s = m.get("data_loss_window_s")
    met = window_s is not None and objective_s is not None and float(window_s) < float(objective_s)
    summary = (f"{m.get('lost_count', 0)} of {m.get('acknowledged_count', '?')} acknowledged {data_class} "
               f"writes were lost; verdict {node.validity.value.upper()} against the objective "
               f"< {_seconds(objective_s)}.")
    ranges = e.get("lost_keys") or []
    rows = [("lost writes, by key range", _ranges_text(ranges)),
            ("loss window, from what users were told (moment of loss − first lost acknowledgement)",
             _signed_window(window_s)),
            ("loss window, from the database (moment of loss − the DR's last replayed commit)",
             _signed_window(m.get("db_loss_window_s")) if m.get("db_loss_window_s") is not None
             else "not measured (no replication samples, or no DR promotion)")]
    if m.get("db_lag_bytes_at_fault") is not None or m.get("db_replay_lag_s_at_fault") is not None:
        lag = _bytes(m.get("db_lag_bytes_at_fault")) + " of WAL"
        if m.get("db_replay_lag_s_at_fault") is not None:
            lag += f", {_seconds(m['db_replay_lag_s_at_fault'])} (PostgreSQL's replay lag)"
        rows.append(("DR replica's lag at the moment of loss", lag))
    if m.get("db_agrees") is not None:
        rows.append(("the two measurements agree",
                     (f"yes: {m['db_difference_s']:+.3f} s apart" if m["db_agrees"] else
                      f"NO: {m['db_difference_s']:+.3f} s apart")
                     + f", tolerance {m['tolerance_s']:.3f} s (sampling period + one write interval"
                     + (" + the first lost write's response time" if m.get("first_lost_latency_s") else "") + ")"))
    if m.get("wan_rtt_ms") is not None:
        rows.append(("WAN round trip (measured)", f"{float(m['wan_rtt_ms']):.1f} ms"))
    if m.get("write_rate_per_s"):
        rows.append((f"{data_class} write rate before the fault", f"{float(m['write_rate_per_s']):.1f}/s"))
    rows.append((f"objective (< {_seconds(objective_s)})", "met" if met else "NOT met"))
    sentences = [x for x in node.explanation if x.startswith(("Where the window comes from",
                                                              "The database's own view is absent",
                                                              "The DR database was",
                                                              "The DR replica replayed"))]  # fmt: skip
    return Loss(data_class, summary, rows, sentences, finding)


def _issues(scenario: Scenario, run: RunDir) -> list[Issue]:
    """Every problem in the scenario's results, with a remediation derived from its evidence."""
    found: list[Issue] = []
    result = scenario.result
    runbook = _find(result, "runbook")
    slowest = None
    if runbook is not None and runbook.evidence.get("steps"):
        slowest = max(runbook.evidence["steps"], key=lambda r: r["duration_s"])

    def walk(node: CheckResult) -> None:
        # a tier's RTO is one issue (its explanation names every service), not one per service
        tier_rto = node.name.startswith(("rto", "rto-failback")) and node.validity is Validity.INVALID
        if node.children and not tier_rto:
            for child in node.children:
                walk(child)
            return
        if node.validity is Validity.VALID:
            return
        text = " ".join(node.explanation[:2]) or node.name
        if node.validity is Validity.UNKNOWN:
            found.append(Issue(scenario.name, f"{node.name}: not enough evidence", text,
                               "Run the drill again with more synthetic users or a longer observation; "
                               "an unknown verdict is never a pass.", "indeterminate"))
            return
        if node.name.startswith(("rto", "rto-failback")) or node.name.startswith("step:"):
            if slowest is not None:
                operator = (f", of which operator time {slowest['operator_s']:.1f} s"
                            if slowest["operator_s"] else "")
                fix = (f"Shorten the slowest runbook step, {slowest['step']} "
                       f"({slowest['duration_s']:.1f} s{operator}); automate manual steps and "
                       "pre-scale the pilot light.")
            else:
                fix = ("Shorten automatic failover: the database's leader TTL and health-check "
                       "intervals, and the load balancers' checks decide how long users wait.")
            found.append(Issue(scenario.name, f"{node.name}: recovery objective missed", text, fix))
        elif node.name.startswith(("rpo", "lost")):
            found.append(_data_issue(scenario.name, node, text))
        elif node.name == "runbook":
            found.append(Issue(scenario.name, "a runbook step failed", text,
                               "Fix the failing step and rehearse it; the runbook did not work as "
                               "written.", "runbook"))
        elif node.name == "saga":
            found.append(Issue(scenario.name, "payments left pending", text,
                               "Check the saga reconciler runs in the serving region after a "
                               "failover, and its deadline.", "data lost"))
        else:
            found.append(Issue(scenario.name, f"{node.name}: {node.validity.value}", text,
                               "See the evidence in the run directory."))

    steps = _find(result, "steps")
    walk(steps if steps is not None else result)
    if steps is not None:  # what no Then step asked about still counts when it failed
        for child in result.children:
            if child.name != "steps" and child.validity is not Validity.VALID:
                walk(child)
    # every lost write is worth knowing, even within the objective
    reported = {i.what.split(":")[1] for i in found if i.severity == "data lost" and ":" in i.what}
    for data_class in DATA_CLASSES:
        node = _find(result, f"rpo:{data_class}")
        if node is not None and node.metrics.get("lost_count") and data_class not in reported:
            found.append(_data_issue(scenario.name, node, " ".join(node.explanation[:2])))
    for data_class in DATA_CLASSES:
        node = _find(result, f"rpo:{data_class}")
        if node is not None and node.evidence.get("finding"):
            found.append(Issue(scenario.name, f"{node.name}: the two loss measurements disagree",
                               node.evidence["finding"],
                               "Find which one is lying: compare the lost keys' acknowledgement times "
                               "in history.jsonl with their commit times on the old primary, and the "
                               "replication samples (platform ops) around the fault with the database's "
                               "logs; check the harness's and the containers' clocks.", "finding"))
    for failed in run.failed_rollbacks():
        found.append(Issue(scenario.name, "a rollback failed", f"Rollback {failed}.",
                           "The platform may not have been restored after this scenario: check its "
                           "health before trusting the next one, and fix the rollback.", "runbook"))
    journal = run.journal_path
    if journal.is_file():
        data = json.loads(journal.read_text())
        if data.get("deviated"):
            probes = [p.get("activity", {}).get("name") for p in
                      (data.get("steady_states") or {}).get("after", {}).get("probes", [])
                      if not p.get("tolerance_met", True)]
            views = [r["output"]["view"] for r in data.get("run") or []
                     if isinstance(r.get("output"), dict) and isinstance(r["output"].get("view"), dict)]
            down = [f"{svc} (HTTP {v.get('status')})" for svc, v in (views[-1] if views else {}).items()
                    if not v.get("served")]  # fmt: skip
            where = f"; still not served when the method ended: {', '.join(down)}" if down else ""
            found.append(Issue(scenario.name, "unhealthy component after the experiment",
                               f"The steady-state hypothesis did not hold after the method: "
                               f"{', '.join(p for p in probes if p) or 'see the journal'}{where}.",
                               "A component did not heal by itself before the rollback; find which "
                               "in the journal and add self-healing or a runbook step for it.",
                               "runbook"))
    return found


def _data_issue(scenario: str, node: CheckResult, text: str) -> Issue:
    """A loss of acknowledged writes, with its key ranges and a remediation for its kind."""
    m = node.metrics
    ranges = node.evidence.get("lost_key_ranges") or node.evidence.get("lost_keys") or []
    shown = "; ".join(str(r) for r in ranges[:3])
    evidence = text + (f" Lost keys: {shown}" if shown and "Lost keys" not in text else "")
    if m.get("lost_after_fault_count"):
        fix = ("Writes acknowledged after the fault were lost: fence the old primary (split brain) — "
               "it must stop accepting writes once it loses its lock.")
    elif m.get("unexpected_count") or m.get("failed_but_present_count"):
        fix = ("Writes were found that users were told failed, or that were never sent: make "
               "retries idempotent and answers truthful.")
    else:
        fix = ("Acknowledged writes were lost with the primary: reduce the replication lag to the DR "
               "replica (monitor and alert on it; synchronous replication for financial data) and "
               "reconcile the lost range from the saga log.")
    within = node.validity is Validity.VALID
    what = f"{node.name}: {m.get('lost_count', '?')} acknowledged write(s) lost" + (
        " (within the objective)" if within else "")
    return Issue(scenario, what, evidence, fix, "data lost")


def build_report(run_dirs: Sequence[str | Path], out_dir: str | Path,
                 title: str = "Disaster-recovery test report") -> dict[str, Any]:  # fmt: skip
    """Write the DR test report for ``run_dirs`` into ``out_dir``: the paths written (``markdown``,
    ``html``) and the overall ``validity``."""
    if not run_dirs:
        raise HistoryError("no run directory to report on")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [RunDir.open(path) for path in run_dirs]  # every bad path fails before any work
    scenarios = [_scenario(run, out_dir, i) for i, run in enumerate(runs, 1)]
    overall = merge_validity([s.result.validity for s in scenarios])
    issues = [issue for s in scenarios for issue in s.issues]
    when = max(float(r.meta().get("created_s", 0.0)) for r in runs)
    date = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d %H:%M UTC")
    config = runs[0].config()
    markdown = _markdown(title, date, overall, scenarios, issues, config)
    page = _html(title, date, overall, scenarios, issues, config)
    paths = {"markdown": out_dir / "dr-test-report.md", "html": out_dir / "dr-test-report.html"}
    paths["markdown"].write_text(markdown)
    paths["html"].write_text(page)
    return {**paths, "validity": overall}


def _objective_rows(config: Any) -> list[tuple[str, str]]:
    rows = [(f"RTO, {tier} services ({', '.join(config.services_in_tier(tier))})", f"< {_seconds(s)}")
            for tier, s in config.rto_objective_s.items()]
    rows += [(f"RPO, {c} data ({', '.join(config.services_in_data_class(c))})", f"< {_seconds(s)}")
             for c, s in config.rpo_objective_s.items()]
    return rows


def _verdict_text(overall: Validity, scenarios: list[Scenario]) -> str:
    counts = {v: sum(s.result.validity is v for s in scenarios) for v in Validity}
    return (f"**{overall.value.upper()}** — {len(scenarios)} scenario(s): {counts[Validity.VALID]} valid, "
            f"{counts[Validity.INVALID]} invalid, {counts[Validity.UNKNOWN]} unknown. The test is "
            "successful when every scenario is valid: the platform recovered within its RTO "
            "objectives and lost no more data than its RPO objectives allow.")


def _markdown(title, date, overall, scenarios, issues, config) -> str:
    lines = [f"# {title}", "", f"Drill of {date}.", "", "## Overall verdict", "",
             _verdict_text(overall, scenarios), "", "## Objectives", "", "| objective | target |",
             "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in _objective_rows(config)]
    lines += ["", "## Scenarios", ""]
    for s in scenarios:
        lines += [f"### {s.name}", "", f"Experiment `{s.experiment}`; verdict **{s.result.validity.value.upper()}**; "
                  f"run directory `{s.run.path.name}`.", "", "| measure | objective | measured | verdict |",
                  "|---|---|---|---|"]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in s.rows]
        if s.steps:
            lines += ["", "| Then step | verdict | why |", "|---|---|---|"]
            lines += [f"| {a} | {b} | {c} |" for a, b, c in s.steps]
        if s.runbook:
            lines += ["", "Runbook steps:", "", "| step | phase | mode | started after fault | duration | operator | status |",
                      "|---|---|---|---|---|---|---|"]
            lines += [f"| {r['step']} | {r['phase']} | {r['mode']} | {_seconds(r['started_after_fault_s'])} | "
                      f"{_seconds(r['duration_s'])} | {_seconds(r['operator_s'])} | {r['status']} |" for r in s.runbook]
        for loss in s.losses:
            lines += ["", f"#### Data loss: {loss.data_class} data", "", loss.summary, "",
                      "| measure | value |", "|---|---|"]
            lines += [f"| {a} | {b} |" for a, b in loss.rows]
            lines += [""] + [sentence for sentence in loss.sentences]
            if loss.finding:
                lines += ["", f"**Finding:** {loss.finding}"]
        if s.plot:
            lines += ["", f"![timeline: what users saw]({s.plot.name})"]
        lines.append("")
    lines += ["## Issues found", ""]
    if not issues:
        lines += ["None: every objective was met with enough evidence.", ""]
    for i, issue in enumerate(issues, 1):
        lines += [f"{i}. **{issue.what}** ({issue.severity}) — {issue.scenario}", f"   - Evidence: {issue.evidence}",
                  f"   - Suggested remediation: {issue.remediation}"]
    lines += ["", "## Sign-off", "", "| role | name | decision | date | signature |", "|---|---|---|---|---|"]
    lines += [f"| {role} | | accept / remediate | | |" for role in SIGN_OFF_ROLES]
    return "\n".join(lines) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1c2833;padding:0 1rem}
h1{border-bottom:3px solid #1c2833;padding-bottom:.3rem}h2{margin-top:2.2rem;border-bottom:1px solid #aab7b8}
table{border-collapse:collapse;margin:.6rem 0;width:100%}td,th{border:1px solid #d5d8dc;padding:.3rem .5rem;text-align:left;font-size:.92rem}
th{background:#f4f6f6}.valid{color:#1e8449;font-weight:600}.invalid{color:#c0392b;font-weight:600}.unknown{color:#b9770e;font-weight:600}
.verdict{font-size:1.2rem;padding:.8rem;border-radius:6px;background:#f4f6f6}img{max-width:100%;border:1px solid #d5d8dc}
.issue{border-left:4px solid #c0392b;padding:.3rem .8rem;margin:.6rem 0;background:#fdedec}.scenario{margin-bottom:2rem}
"""


def _cell(value: str) -> str:
    text = html.escape(str(value))
    return f'<span class="{value}">{text.upper()}</span>' if value in ("valid", "invalid", "unknown") else text


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(title, date, overall, scenarios, issues, config) -> str:
    parts = [f"<h1>{html.escape(title)}</h1><p>Drill of {html.escape(date)}.</p>",
             f'<h2>Overall verdict</h2><p class="verdict">{_verdict_text(overall, scenarios).replace("**", "")}</p>',
             "<h2>Objectives</h2>", _table(("objective", "target"), _objective_rows(config)), "<h2>Scenarios</h2>"]
    for s in scenarios:
        parts.append(f'<div class="scenario"><h3>{html.escape(s.name)}</h3><p>Experiment <code>{html.escape(s.experiment)}</code>; '
                     f"verdict {_cell(s.result.validity.value)}; run directory <code>{html.escape(s.run.path.name)}</code>.</p>")
        parts.append(_table(("measure", "objective", "measured", "verdict"), s.rows))
        if s.steps:
            parts.append(_table(("Then step", "verdict", "why"), s.steps))
        if s.runbook:
            parts.append("<p>Runbook steps:</p>" + _table(
                ("step", "phase", "mode", "started after fault", "duration", "operator", "status"),
                [(r["step"], r["phase"], r["mode"], _seconds(r["started_after_fault_s"]), _seconds(r["duration_s"]),
                  _seconds(r["operator_s"]), r["status"]) for r in s.runbook]))
        for loss in s.losses:
            parts.append(f"<h4>Data loss: {html.escape(loss.data_class)} data</h4><p>{html.escape(loss.summary)}</p>")
            parts.append(_table(("measure", "value"), loss.rows))
            parts += [f"<p>{html.escape(sentence)}</p>" for sentence in loss.sentences]
            if loss.finding:
                parts.append(f'<p class="issue"><b>Finding:</b> {html.escape(loss.finding)}</p>')
        if s.plot:
            data = base64.b64encode(s.plot.read_bytes()).decode()
            parts.append(f'<img alt="timeline: what users saw" src="data:image/png;base64,{data}">')
        parts.append("</div>")
    parts.append("<h2>Issues found</h2>")
    if not issues:
        parts.append("<p>None: every objective was met with enough evidence.</p>")
    for issue in issues:
        parts.append(f'<div class="issue"><b>{html.escape(issue.what)}</b> ({html.escape(issue.severity)}) — '
                     f"{html.escape(issue.scenario)}<br>Evidence: {html.escape(issue.evidence)}<br>"
                     f"Suggested remediation: {html.escape(issue.remediation)}</div>")
    parts.append("<h2>Sign-off</h2>" + _table(("role", "name", "decision", "date", "signature"),
                                              [(r, "", "accept / remediate", "", "") for r in SIGN_OFF_ROLES]))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
