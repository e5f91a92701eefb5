"""The reports stakeholders read, from a real drill: Allure (labels, evidence, environment, categories,
trend) as one offline HTML file, and the DR test report — both rendered in headless Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from drdrill.report.allure_html import build_allure_html, embedded_files, external_urls
from drdrill.report.allure_results import CATEGORIES, write_categories
from tests.browser import chromium_page, is_blank

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "A lossy failover is measured to the tenth of a second"


@pytest.fixture(scope="module")
def drilled(tmp_path_factory):
    """One ground-truth drill through the CLI: its run directory, Allure results and reports."""
    base = tmp_path_factory.mktemp("drilled")
    result = subprocess.run(
        [sys.executable, "-m", "drdrill.cli", "drill", "--features", str(ROOT / "features"),
         "--experiments", str(ROOT / "experiments"), "--runs-dir", str(base / "runs"),
         "--alluredir", str(base / "allure"), "-m", "groundtruth", "--report-dir", str(base / "report")],
        capture_output=True, text=True, timeout=600, cwd=base)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = (base / "runs").iterdir()
    return {"base": base, "run": run_dir, "report": base / "report", "out": result.stdout}


def _test_case(page: str) -> dict:
    cases = [json.loads(v) for k, v in embedded_files(page).items() if k.startswith("data/test-cases/")]
    assert len(cases) == 1, [c.get("name") for c in cases]
    return cases[0]


def test_the_drill_prints_where_both_reports_are_and_keeps_its_allure_result_with_the_run(drilled):
    report = drilled["report"]
    assert f"DR test report: {report / 'dr-test-report.html'}" in drilled["out"]
    assert f"Allure report: {report / 'allure-report.html'}" in drilled["out"]
    stored = drilled["run"] / "allure"
    (result_file,) = stored.glob("*-result.json")
    result = json.loads(result_file.read_text())
    sources = [a["source"] for a in result["attachments"]]
    assert sources and all((stored / s).is_file() for s in sources)
    assert (stored / "environment.properties").is_file() and (stored / "categories.json").is_file()


def test_the_allure_html_is_one_offline_file_with_labels_links_evidence_and_environment(drilled):
    page = (drilled["report"] / "allure-report.html").read_text()
    assert not list(drilled["report"].glob("*.js")) and not (drilled["report"] / "data").exists()
    assert external_urls(page) == []
    assert "googletagmanager" not in page and "gtag(" not in page
    case = _test_case(page)
    assert case["name"] == SCENARIO and case["status"] == "passed"
    labels = {(label["name"], label["value"]) for label in case["labels"]}
    assert {("epic", "Measurement accuracy"), ("story", SCENARIO), ("severity", "critical"),
            ("tag", "groundtruth")} <= labels
    assert any(label == "feature" for label, _ in labels)
    assert [link["name"] for link in case["links"]] == ["DR runbook"]
    assert case["links"][0]["url"].startswith("file://") and case["links"][0]["url"].endswith("docs/runbook.md")
    params = {p["name"]: p for p in case["parameters"]}
    # per-run values are shown but excluded, so the scenario's history id stays the same run to run
    assert params["run directory"]["excluded"] and params["measured RTO, critical (s)"]["excluded"]
    truth = json.loads((drilled["run"] / "results.json").read_text())
    assert float(params["measured RTO, critical (s)"]["value"]) > 0
    assert int(params["lost writes, financial"]["value"]) > 0  # the lossy failover loses writes
    attachments = {a["name"]: a for a in case["testStage"]["attachments"]}
    assert {"timeline", "RTO", "RPO", "lost keys", "journal.json", "results.json", "verdicts"} <= set(attachments)
    files = embedded_files(page)
    assert files["data/attachments/" + attachments["timeline"]["source"]].startswith(b"\x89PNG")
    rto_table = files["data/attachments/" + attachments["RTO"]["source"]].decode()
    assert rto_table.startswith("service,tier,measured RTO (s),objective (s),verdict")
    assert "payments,critical," in rto_table
    assert "financial" in files["data/attachments/" + attachments["lost keys"]["source"]].decode()
    environment = {e["name"]: e["values"][0] for e in json.loads(files["widgets/environment.json"])}
    assert environment["target"] == "groundtruth" and environment["python"].startswith("3.")
    git = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent).stdout.strip()  # fmt: skip
    assert environment["drdrill.git_revision"].startswith(git)
    assert json.loads(files["widgets/summary.json"])["reportName"] == "drdrill — groundtruth drills"
    (executor,) = json.loads(files["widgets/executors.json"])
    assert executor["name"] == "drdrill" and executor["buildName"].startswith("groundtruth drill, 20")
    assert truth["validity"] == "valid"


@pytest.mark.browser
def test_the_allure_html_renders_the_scenario_page_in_chromium_without_asking_any_host(drilled, tmp_path):
    path = drilled["report"] / "allure-report.html"
    case = _test_case(path.read_text())
    with chromium_page() as opened:
        opened.page.goto(f"{path.as_uri()}#testresult/{case['uid']}")
        opened.page.wait_for_selector(f"text={SCENARIO}", timeout=30_000)
        opened.page.wait_for_selector("text=Then every service recovers within 30 seconds")
        text = opened.page.inner_text("body")
        shot = opened.page.screenshot(path=str(tmp_path / "allure-scenario.png"), full_page=True)
        opened.page.goto(f"{path.as_uri()}#categories")
        opened.page.wait_for_selector("text=Categories", timeout=30_000)
        opened.page.goto(f"{path.as_uri()}#")
        opened.page.wait_for_selector("text=Trend", timeout=30_000)
        assert opened.outside_requests() == []
        assert opened.errors == []
    assert "Severity: critical" in text and "DR runbook" in text and "RTO" in text and "timeline" in text
    assert not is_blank(shot)


@pytest.mark.browser
def test_the_dr_report_renders_in_chromium_with_its_plots_and_verdict(drilled, tmp_path):
    path = drilled["report"] / "dr-test-report.html"
    with chromium_page() as opened:
        opened.page.goto(path.as_uri())
        opened.page.wait_for_selector("text=Sign-off")
        text = opened.page.inner_text("body")
        widths = opened.page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
        shot = opened.page.screenshot(path=str(tmp_path / "dr-report.png"), full_page=True)
        assert opened.outside_requests() == []
    assert "VALID" in text and SCENARIO in text and "RTO, critical services" in text
    assert widths and all(w > 100 for w in widths)  # every plot decoded and drawn
    assert not is_blank(shot)


def test_drdrill_report_rebuilds_both_reports_from_the_run_directory(drilled, tmp_path):
    history = drilled["report"] / "allure-history.jsonl"
    history_before = history.read_text()
    out = tmp_path / "rebuilt"
    result = subprocess.run(
        [sys.executable, "-m", "drdrill.cli", "report", str(drilled["run"]), "--out", str(out),
         "--history", str(history)],
        capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "dr-test-report.md").read_text() == (drilled["report"] / "dr-test-report.md").read_text()
    original = _test_case((drilled["report"] / "allure-report.html").read_text())
    rebuilt = _test_case((out / "allure-report.html").read_text())
    for key in ("name", "status", "historyId", "labels", "links", "parameters"):
        assert rebuilt[key] == original[key], key
    assert history.read_text() == history_before  # a rebuild adds nothing to the trend


def test_every_build_after_a_drill_extends_the_trend(drilled, tmp_path):
    history = tmp_path / "history.jsonl"
    for _ in range(3):
        page = build_allure_html([drilled["base"] / "allure"], tmp_path, history_path=history).read_text()
    assert len(history.read_text().splitlines()) == 3
    trend = json.loads(embedded_files(page)["widgets/history-trend.json"])
    assert len(trend) == 3 and all(point["data"]["passed"] == 1 for point in trend)
    history_items = _test_case(page)["extra"]["history"]["items"]
    assert len(history_items) == 2  # the scenario's two earlier runs, matched by its history id


def _result(name: str, status: str, message: str) -> dict:
    return {"uuid": name, "name": name, "fullName": f"f:{name}", "historyId": name, "testCaseId": name,
            "status": status, "statusDetails": {"message": message, "trace": ""},
            "start": 1_700_000_000_000, "stop": 1_700_000_001_000, "labels": []}


def test_categories_sort_every_failure_the_way_stakeholders_read_it(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    cases = {
        "lossy": ("failed", "drdrill.errors.DataLost: 10 of 600 acknowledged writes lost"),
        "slow": ("failed", "drdrill.errors.ObjectiveMissed: critical RTO 4000 s > 3600 s"),
        "thin": ("broken", "drdrill.errors.Indeterminate: too few requests after the fault"),
        "sick": ("broken", "drdrill.errors.TargetError: the local target was not healthy within 60 s"),
        "bug": ("broken", "RuntimeError: boom"),
        "fine": ("passed", ""),
    }
    for name, (status, message) in cases.items():
        (results / f"{name}-result.json").write_text(json.dumps(_result(name, status, message)))
    write_categories(results)
    page = build_allure_html([results], tmp_path / "out", history_path=tmp_path / "h.jsonl").read_text()
    tree = json.loads(embedded_files(page)["data/categories.json"])

    def leaves(node: dict) -> list[str]:  # category -> message -> scenario
        return [node["name"]] if not node.get("children") else [n for c in node["children"] for n in leaves(c)]

    found = {node["name"]: sorted(leaves(node)) for node in tree["children"]}
    assert found == {
        "Data lost": ["lossy"],
        "Objective missed": ["slow"],
        "Indeterminate (not enough evidence)": ["thin"],
        "Environment unhealthy": ["sick"],
        "Harness error": ["bug"],
    }
    assert {c["name"] for c in CATEGORIES} == set(found)  # every category is reachable


ROLLBACK_FEATURE = """\
@groundtruth
Feature: A drill whose rollback breaks
  Scenario: the rollback fails
    Given the platform under test is healthy
    When the experiment "broken-rollback" runs
"""

BROKEN_ROLLBACK = {
    "title": "A harmless method, then a rollback that raises",
    "description": "For the test of failed rollbacks.",
    "method": [{"type": "action", "name": "nothing",
                "provider": {"type": "python", "module": "json", "func": "loads", "arguments": {"s": "{}"}}}],
    "rollbacks": [{"type": "action", "name": "restore-the-platform",
                   "provider": {"type": "python", "module": "json", "func": "loads",
                                "arguments": {"s": "not json"}}}],
}


def test_a_failed_rollback_ends_the_scenario_as_environment_unhealthy(pytester, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))  # the step library
    pytester.makeconftest('pytest_plugins = ["drdrill.pytest_plugin", "drdrill.steps.environment", '
                          '"drdrill.steps.traffic", "drdrill.steps.faults", "drdrill.steps.objectives"]\n')
    pytester.makeini("[pytest]\ndrdrill_experiment_dirs = experiments\nmarkers =\n    groundtruth: g\n")
    pytester.mkdir("experiments").joinpath("broken-rollback.json").write_text(json.dumps(BROKEN_ROLLBACK))
    pytester.mkdir("features").joinpath("rollback.feature").write_text(ROLLBACK_FEATURE)
    pytester.path.joinpath("features", "test_bind.py").write_text(
        "from pytest_bdd import scenarios\nscenarios('.')\n")
    alluredir = tmp_path / "allure"
    result = pytester.runpytest_subprocess("features", "--drdrill-runs-dir=runs", f"--alluredir={alluredir}",
                                           timeout=300)  # fmt: skip
    result.assert_outcomes(passed=1, errors=1)
    assert "rollback failed" in result.stdout.str() and "restore-the-platform" in result.stdout.str()
    (case,) = [json.loads(p.read_text()) for p in alluredir.glob("*-result.json")]
    assert case["status"] == "broken"
    assert case["statusDetails"]["message"].startswith("drdrill.errors.TargetError: rollback failed")
    page = build_allure_html([alluredir], tmp_path / "out", history_path=tmp_path / "h.jsonl").read_text()
    tree = json.loads(embedded_files(page)["data/categories.json"])
    assert [node["name"] for node in tree["children"]] == ["Environment unhealthy"]
