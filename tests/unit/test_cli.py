"""`drdrill check`: re-judging stored runs offline, with the documented exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drdrill.cli import main
from drdrill.config import default_config
from drdrill.history import HistoryWriter
from drdrill.run import RunDir
from tests.histories import T0, fault, reads, write

ROOT = Path(__file__).resolve().parents[2]

SERVICES = [s.name for s in default_config().services]


def make_run(tmp_path, name, outage_s=3.0, lose=False, final_read=True, judgements=()):
    run = RunDir.create(tmp_path / "runs", name, default_config())
    fault_at = T0 + 30
    ops = []
    for service in SERVICES:
        ops += reads(service, T0, T0 + 70, 20, down=[(fault_at, fault_at + outage_s)])
    keys = []
    for i in range(600):
        key = f"{run.run_id}-payments-1-{i:08d}"
        ops += write("payments", key, T0 + i * 0.1)
        keys.append((key, T0 + i * 0.1))
    ops += write("users", f"{run.run_id}-users-2-00000001", T0 + 1)
    with HistoryWriter(run.history_path) as writer:
        for op in ops + fault(fault_at):
            writer.append(op)
    present = [k for k, t in keys if not (lose and fault_at - 1 <= t < fault_at)]
    if final_read:
        run.write_final_read({"payments": present, "users": [f"{run.run_id}-users-2-00000001"]},
                             prefix=run.run_id)
    for kind, subject, limit in judgements:
        run.add_judgement(kind, subject, limit, step=f"{subject} {kind} {limit}")
    return run


def test_valid_run_exits_0_and_writes_results(tmp_path, capsys):
    run = make_run(tmp_path, "healthy failover")
    assert main(["check", str(run.path)]) == 0
    out = capsys.readouterr().out
    assert "VALID" in out and "rto-tier:critical: VALID" in out
    results = json.loads(run.results_path.read_text())
    assert results["validity"] == "valid"


def test_missed_objective_exits_1(tmp_path, capsys):
    run = make_run(tmp_path, "slow", outage_s=8, judgements=[("rto", "critical", 5)])
    assert main(["check", str(run.path)]) == 1
    out = capsys.readouterr().out
    assert '"critical rto 5" [rto:critical]: INVALID' in out
    assert "NOT within the objective of 5 s" in out


def test_lost_writes_judged_by_a_step_exit_1(tmp_path, capsys):
    run = make_run(tmp_path, "lossy", lose=True, judgements=[("lost", "financial", 0)])
    assert main(["check", str(run.path)]) == 1
    assert "10 acknowledged financial write(s) were lost; at most 0 allowed" in capsys.readouterr().out


def test_never_read_exits_2(tmp_path, capsys):
    run = make_run(tmp_path, "no final read", final_read=False)
    assert main(["check", str(run.path)]) == 2
    assert "No final read" in capsys.readouterr().out


def test_json_output_and_several_runs_merge(tmp_path, capsys):
    good = make_run(tmp_path, "good")
    unknown = make_run(tmp_path, "unknown", final_read=False)
    assert main(["check", "--json", str(good.path), str(unknown.path)]) == 2
    documents = capsys.readouterr().out.replace("}\n{", "}\x00{").split("\x00")
    assert [json.loads(d)["validity"] for d in documents] == ["valid", "unknown"]


def test_bad_arguments_exit_254(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing")]) == 254
    assert "no run directory at" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["check", str(tmp_path / "empty")]) == 254
    assert "has no history.jsonl" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        main(["check"])
    assert caught.value.code == 254


def test_corrupt_history_is_a_clear_error_not_a_verdict(tmp_path, capsys):
    run = make_run(tmp_path, "corrupt")
    with run.history_path.open("ab") as handle:
        handle.write(b"garbage\n")
    assert main(["check", str(run.path)]) == 254
    assert "history.jsonl" in capsys.readouterr().err


def test_internal_error_exits_255(tmp_path, monkeypatch, capsys):
    run = make_run(tmp_path, "crash")

    def crash(self, history=None):
        raise RuntimeError("bug")

    monkeypatch.setattr(RunDir, "check", crash)
    assert main(["check", str(run.path)]) == 255
    assert "internal error: RuntimeError: bug" in capsys.readouterr().err


def test_the_step_reference_in_docs_is_the_generated_one():
    from drdrill.stepdocs import step_reference, steps

    assert (ROOT / "docs" / "steps.md").read_text() == step_reference(), \
        "docs/steps.md is stale: regenerate it with `drdrill steps > docs/steps.md`"
    assert all(s["example"] for s in steps()), "every step's docstring needs an Example: line"


def test_the_runbook_reference_in_docs_is_the_generated_one():
    from drdrill import runbook

    text = (ROOT / "docs" / "runbook.md").read_text()
    assert text == runbook.reference(), \
        "docs/runbook.md is stale: regenerate it with `drdrill runbook steps --markdown > docs/runbook.md`"
    for name in runbook.STEPS:  # Allure's runbook links land on an anchor of each step
        assert f'<a id="{name}"></a>' in text
