"""The DR test report and the timeline plot, built from hand-written run directories."""

from __future__ import annotations

import re

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
