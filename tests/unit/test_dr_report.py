"""The DR test report and the timeline plot, built from hand-written run directories."""

from __future__ import annotations

import re

import pytest

from drdrill.cli import main
from drdrill.history import History
from drdrill.report.dr_report import build_report
from drdrill.report.timeline import fault_window_s, plot_timeline
from tests.histories import T0, fault, runbook_step
from tests.unit.test_cli import make_run

PNG = b"\x89PNG\r\n\x1a\n"


def test_a_valid_and_a_lossy_slow_run_make_one_report_with_evidence(tmp_path):
    good = make_run(tmp_path, "database failover")
    bad = make_run(tmp_path, "region failover", outage_s=8, lose=True,
                   judgements=[("rto", "critical", 5), ("lost", "financial", 0)])
    paths = build_report([good.path, bad.path], tmp_path / "report")
    md = paths["markdown"].read_text()
    page = paths["html"].read_text()
    assert paths["validity"].value == "invalid"
    assert "**INVALID** — 2 scenario(s): 1 valid, 1 invalid, 0 unknown" in md
    # objectives against measured values, per scenario
    assert "| RTO, critical services | < 3600 s (60.0 min) | 3.00 s | valid |" in md
    assert "| RTO, critical services | < 3600 s (60.0 min) | 8.00 s | valid |" in md
    assert re.search(r"\| RPO, financial data \| < 300 s \(5.0 min\) \| 1.0\d s window, 10 of 600 acknowledged "
                     r"writes lost \| valid \|", md)
    # issues with evidence and a remediation derived from it
    assert "**rto:critical: recovery objective missed**" in md and "payments 7.90 s" in md
    assert "**lost:financial: 10 acknowledged write(s) lost**" in md and "reduce the replication lag" in md
    assert "payments-1-00000290..00000299" in md
    assert "## Sign-off" in md and "Incident Commander" in md
    # plots: PNG files beside the Markdown, embedded in the single HTML file
    assert (tmp_path / "report" / "timeline-01.png").read_bytes().startswith(PNG)
    assert md.count("![timeline: what users saw](timeline-0") == 2
    assert page.count('src="data:image/png;base64,') == 2
    # nothing in the HTML reaches for another host
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page


def test_rebuilding_from_the_stored_runs_gives_the_same_report(tmp_path):
    runs = [make_run(tmp_path, "one").path, make_run(tmp_path, "two", outage_s=6).path]
    first = build_report(runs, tmp_path / "a")
    second = build_report(runs, tmp_path / "b")
    assert first["markdown"].read_text() == second["markdown"].read_text()
    assert first["html"].read_text() == second["html"].read_text()


def test_the_report_command_exits_with_the_overall_verdict(tmp_path, capsys):
    run = make_run(tmp_path, "fine")
    assert main(["report", str(run.path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "DR test report (VALID)" in out and str(tmp_path / "out" / "dr-test-report.html") in out
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 254


def test_the_timeline_shades_the_fault_until_the_rollback(tmp_path):
    ops = fault(T0 + 30) + runbook_step("promote", T0 + 40, 1)
    ops += [{"process": "nemesis", "type": "info", "f": "start:restore", "time_s": T0 + 60,
             "phase": "rollback", "kind": "action"}]
    history = History.from_ops(ops)
    assert fault_window_s(history) == (T0 + 30, T0 + 60)
    run = make_run(tmp_path, "plotted")
    path = plot_timeline(run.history(), run.config(), None, tmp_path / "t.png", title="x")
    assert path.read_bytes().startswith(PNG) and path.stat().st_size > 10_000


def test_a_failed_rollback_is_an_issue_of_the_report(tmp_path):
    import json

    run = make_run(tmp_path, "rollback broke")
    run.journal_path.write_text(json.dumps({"status": "completed", "rollbacks": [
        {"status": "succeeded", "activity": {"name": "undo-faults"}},
        {"status": "failed", "activity": {"name": "restore-mirror"},
         "exception": ["Traceback ...\n", "drdrill.errors.TargetError: Patroni answered 503\n"]},
    ]}))
    assert run.failed_rollbacks() == ["restore-mirror: drdrill.errors.TargetError: Patroni answered 503"]
    md = build_report([run.path], tmp_path / "report")["markdown"].read_text()
    assert "**a rollback failed**" in md and "Patroni answered 503" in md


def test_drdrill_report_on_runs_without_allure_results_builds_the_dr_report_and_says_why_no_allure(tmp_path, capsys):
    run = make_run(tmp_path, "old run")
    assert main(["report", str(run.path), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert (tmp_path / "out" / "dr-test-report.html").is_file()
    assert "keep no Allure results" in captured.err and not (tmp_path / "out" / "allure-report.html").exists()
    assert main(["report", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 254


def failover_with_samples(tmp_path, name, replayed_before_fault_s, lose=True):
    """make_run's lossy run (payments every 0.1 s, the last 1 s before the fault lost) with replication
    samples: the DR replayed commits up to ``replayed_before_fault_s`` before the fault, promoted 8 s after;
    and a measured WAN RTT in drill.json."""
    from drdrill.history import HistoryWriter
    from tests.histories import replication

    run = make_run(tmp_path, name, lose=lose)
    fault_at = T0 + 30
    with HistoryWriter(run.history_path) as writer:
        for op in replication(T0, T0 + 45, [T0 + i * 0.1 for i in range(600)], fault_at - replayed_before_fault_s,
                              promoted_s=fault_at + 8, primary_until_s=fault_at):
            writer.append(op)
    run.update_meta(network={"rtt_ms": {"wan": 70.3}})
    return run


def png_height(path) -> int:
    return int.from_bytes(path.read_bytes()[20:24], "big")


def test_a_lossy_failover_gets_a_data_loss_section_with_both_measurements(tmp_path):
    import json

    from drdrill.checkers import CheckResult
    from drdrill.config import default_config
    from drdrill.report.allure_results import evidence_tables

    run = failover_with_samples(tmp_path, "region failover at rate", replayed_before_fault_s=1.05)
    paths = build_report([run.path], tmp_path / "report")
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "#### Data loss: financial data" in md and "<h4>Data loss: financial data</h4>" in page
    assert "10 of 600 acknowledged financial writes were lost; verdict VALID" in md
    assert re.search(r"\| lost writes, by key range \| \S+-payments-1-00000290\.\.00000299 \|", md)
    assert "| loss window, from what users were told (moment of loss − first lost acknowledgement) | 1.00 s |" in md
    assert "| loss window, from the database (moment of loss − the DR's last replayed commit) | 1.10 s |" in md
    assert "| the two measurements agree | yes: +0.103 s apart, tolerance 0.203 s" in md
    assert "| WAN round trip (measured) | 70.3 ms |" in md and "| objective (< 300 s (5.0 min)) | met |" in md
    assert "Where the window comes from: at the fault the DR replica was" in md and "70.3 ms" in md
    assert "Finding" not in md
    # the timeline gets the DR lag panel below what users saw
    assert png_height(tmp_path / "report" / "timeline-01.png") > png_height(
        plot_timeline(History.from_ops([]), run.config(), None, tmp_path / "plain.png"))
    # re-judging offline gives the same figures (drdrill check)
    assert main(["check", str(run.path)]) == 0
    rpo = CheckResult.from_dict(json.loads(run.results_path.read_text())).find("rpo:financial")
    assert rpo.metrics["db_loss_window_s"] == pytest.approx(1.1) and rpo.metrics["wan_rtt_ms"] == 70.3
    table = evidence_tables(rpo, default_config())["loss, two measurements"]
    assert "financial,1.00,1.10,0.10,0.20,yes," in table


def test_a_disagreement_is_a_finding_in_the_report_and_its_issues(tmp_path):
    from drdrill.config import default_config
    from drdrill.report.allure_results import evidence_tables

    run = failover_with_samples(tmp_path, "lying", replayed_before_fault_s=5.05)
    md = build_report([run.path], tmp_path / "report")["markdown"].read_text()
    assert "| the two measurements agree | NO: +4.103 s apart" in md
    assert "**Finding:** The two loss measurements disagree" in md
    assert "**rpo:financial: the two loss measurements disagree** (finding)" in md
    assert "harness" in md and "lying" in md
    table = evidence_tables(run.check().find("rpo:financial"), default_config())["loss, two measurements"]
    assert ",NO," in table and "disagree" in table


def test_a_failover_without_loss_shows_the_database_confirming_it(tmp_path):
    run = failover_with_samples(tmp_path, "clean failover", replayed_before_fault_s=-0.5, lose=False)
    md = build_report([run.path], tmp_path / "report")["markdown"].read_text()
    assert "0 of 600 acknowledged financial writes were lost; verdict VALID" in md
    assert "| lost writes, by key range | none |" in md
    assert ("| loss window, from the database (moment of loss − the DR's last replayed commit) | 0.50 s after the "
            "fault began (while it took effect) |") in md
    assert "| the two measurements agree | yes: +0.000 s apart" in md
    assert "replayed commits made up to 0.500 s after the fault began" in md


def test_many_lost_key_ranges_are_shortened_in_the_table_cell():
    from drdrill.report.dr_report import SHOWN_RANGES, _ranges_text

    ranges = [f"run-payments-{i}-00000053" for i in range(40)]
    text = _ranges_text(ranges)
    assert text.startswith("run-payments-0-00000053; run-payments-1-00000053")
    assert f"run-payments-{SHOWN_RANGES}-00000053" not in text
    assert f"… and {40 - SHOWN_RANGES} more ranges (40 in all" in text
    assert _ranges_text(ranges[:2]) == "run-payments-0-00000053; run-payments-1-00000053"
    assert _ranges_text([]) == "none"
