"""What a drill adds to Allure: severity, epics, evidence tables, excluded measurements, environment,
the copy kept in the run directory, and the exception that sorts a verdict into its category."""

from __future__ import annotations

import csv
import io
import json

import pytest

from drdrill.checkers import CheckResult, Validity
from drdrill.config import default_config
from drdrill.pytest_plugin import DataLost, Indeterminate, ObjectiveMissed, require
from drdrill.report.allure_html import external_urls
from drdrill.report.allure_results import (
    CATEGORIES,
    collect_results,
    epic,
    evidence_tables,
    measured_parameters,
    severity,
    store_results,
    write_environment,
)
from tests.unit.test_cli import make_run


def test_severity_follows_the_tiers_a_scenario_judges():
    config = default_config()
    assert severity(config, [{"kind": "rto", "subject": "critical"}]) == "critical"
    assert severity(config, [{"kind": "rto", "subject": "storefront"}]) == "normal"
    assert severity(config, [{"kind": "rto", "subject": "payments"}]) == "critical"
    assert severity(config, [{"kind": "rto", "subject": "non-critical"}]) == "normal"
    assert severity(config, [{"kind": "lost", "subject": "financial"}]) == "critical"  # payments
    assert severity(config, [{"kind": "runbook", "subject": ""}]) == "critical"
    assert severity(config, []) == "minor"


def test_the_epic_is_the_fault_class_of_the_feature():
    assert epic(["nightly", "region", "mirror"]) == "Region failure"
    assert epic(["database"]) == "Database failure"
    assert epic(["mirror"]) == "Other drills"


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_evidence_tables_of_a_lossy_slow_run(tmp_path):
    run = make_run(tmp_path, "slow and lossy", outage_s=8, lose=True)
    result = run.check()
    tables = evidence_tables(result, run.config())
    rto = _rows(tables["RTO"])
    assert rto[0] == ["service", "tier", "measured RTO (s)", "objective (s)", "verdict"]
    payments = next(r for r in rto if r[0] == "payments")
    assert payments[1] == "critical" and 7.5 < float(payments[2]) < 8.5 and payments[3] == "3600.00"
    assert ["critical tier", "critical"] == next(r for r in rto if r[0] == "critical tier")[:2]
    rpo = _rows(tables["RPO"])
    financial = next(r for r in rpo if r[0] == "financial")
    assert financial[1:3] == ["600", "10"] and financial[5] == "valid"  # 10 lost, within 300 s
    assert "payments-1-00000290..00000299" in tables["lost keys"]
    assert "runbook steps" not in tables  # this run had no runbook
    params = measured_parameters(result)
    assert params["lost writes, financial"] == 10 and 7.5 < params["measured RTO, critical (s)"] < 8.5


def test_a_run_without_loss_has_no_lost_keys_table(tmp_path):
    run = make_run(tmp_path, "clean")
    tables = evidence_tables(run.check(), run.config())
    assert set(tables) == {"RTO", "RPO"}


def test_require_raises_the_exception_its_allure_category_matches():
    lost = CheckResult("lost:financial", Validity.INVALID, {}, {}, ["10 writes lost"])
    slow = CheckResult("rto:critical", Validity.INVALID, {}, {}, ["too slow"])
    thin = CheckResult("rpo:financial", Validity.UNKNOWN, {}, {}, ["too thin"])
    with pytest.raises(DataLost, match="10 writes lost"):
        require(lost)
    with pytest.raises(ObjectiveMissed, match="too slow"):
        require(slow)
    with pytest.raises(Indeterminate):
        require(thin)
    assert issubclass(DataLost, AssertionError) and issubclass(ObjectiveMissed, AssertionError)
    regexes = {c["name"]: c.get("messageRegex", "") for c in CATEGORIES}
    assert "DataLost" in regexes["Data lost"] and "Indeterminate" in regexes[
        "Indeterminate (not enough evidence)"]


def test_environment_properties_escape_what_java_properties_would_misread(tmp_path):
    path = write_environment(tmp_path, {"target.entry": "http://127.0.0.1:8080", "region primary": "a=b"})
    assert path.read_text() == "target.entry=http\\://127.0.0.1\\:8080\nregion_primary=a\\=b\n"


def test_each_result_is_kept_in_its_run_directory_and_collected_back(tmp_path):
    run = make_run(tmp_path, "kept")
    alluredir = tmp_path / "allure"
    alluredir.mkdir()
    result = {"uuid": "u1", "name": "kept", "status": "passed",
              "parameters": [{"name": "run directory", "value": f"'{run.path}'", "excluded": True}],
              "attachments": [{"name": "RTO", "source": "a1-attachment.csv"}],
              "steps": [{"name": "Then", "attachments": [{"name": "verdict", "source": "a2-attachment.txt"}]}]}
    (alluredir / "u1-result.json").write_text(json.dumps(result))
    (alluredir / "a1-attachment.csv").write_text("service\n")
    (alluredir / "a2-attachment.txt").write_text("VALID\n")
    (alluredir / "stray-result.json").write_text(json.dumps({"uuid": "x", "parameters": []}))
    write_environment(alluredir, {"target": "groundtruth"})
    assert store_results(alluredir) == [run.path]
    kept = sorted(p.name for p in (run.path / "allure").iterdir())
    assert kept == ["a1-attachment.csv", "a2-attachment.txt", "environment.properties", "u1-result.json"]
    into = tmp_path / "collected"
    assert collect_results([run.path, tmp_path / "runs" / "missing"], into) == 1
    assert (into / "a2-attachment.txt").read_text() == "VALID\n"


def test_external_urls_look_at_markup_and_embedded_data_not_at_loopback():
    data = "aHR0cHM6Ly9leGFtcGxlLmNvbS94"  # base64 of https://example.com/x
    loopback = "aHR0cDovLzEyNy4wLjAuMTo4MDgwL3BheW1lbnRz"  # http://127.0.0.1:8080/payments
    page = ('<html><script src="data:text/javascript;base64,aHR0cDovL3d3dy53My5vcmc="></script>'
            f'<script>d("data/attachments/1.txt","{data}"),d("data/attachments/2.txt","{loopback}")</script>')
    assert external_urls(page) == ["https://example.com/x"]
    assert external_urls('<img src="https://cdn.example.org/a.png">') == ["https://cdn.example.org/a.png"]
    assert external_urls("<p>nothing</p>") == []
