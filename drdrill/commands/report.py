"""``drdrill report [RUN_DIR...]``: the DR test report and the Allure HTML, rebuilt from stored runs."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from drdrill.errors import DrdrillError
from drdrill.exitcodes import for_validity

__all__ = ["add_parser", "run"]


def add_parser(subcommands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    report = subcommands.add_parser(
        "report", help="rebuild the DR test report and the Allure HTML from stored run directories",
        description="Re-judge the run directories (nothing is re-run) and write the stakeholders' DR "
                    "test report (dr-test-report.html and .md: overall verdict, objectives against "
                    "measured values per scenario, runbook step timings, timeline plots, issues found "
                    "with suggested remediation, sign-off) and the Allure report (allure-report.html: "
                    "every scenario with its evidence, and the trend of the runs before them). Each "
                    "HTML is one self-contained file that opens without a network.")  # fmt: skip
    report.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", type=Path,
                        help="default: every run directory under reports/runs")
    report.add_argument("--out", type=Path, help="output directory (default: reports/dr-report)")
    report.add_argument("--title", default="Disaster-recovery test report")
    report.add_argument("--history", type=Path, metavar="JSONL",
                        help="the Allure history the trend is drawn from, read only (default: "
                             "OUT/allure-history.jsonl, which every drdrill drill extends)")
    report.set_defaults(run=run)
    return report


def run(args: argparse.Namespace) -> int:
    from drdrill.report.allure_results import collect_results
    from drdrill.report.dr_report import build_report
    from drdrill.run import RunDir
    from drdrill.settings import settings

    where = settings()
    out = args.out or where.report_dir
    runs = list(args.run_dirs)
    if not runs:
        base = where.runs
        runs = sorted(p for p in base.glob("*") if (p / "drill.json").is_file()) if base.is_dir() else []
        if not runs:
            raise DrdrillError(f"no run directory under {base}; run a drill first or name RUN_DIRs")
    run_dirs = [RunDir.open(path).path for path in runs]  # every bad path fails before any work
    print(f"drdrill: building the reports from {len(run_dirs)} run(s)", flush=True)
    paths = build_report(run_dirs, out, title=args.title)
    verdict = paths["validity"]
    print(f"DR test report ({verdict.value.upper()}): {paths['html']}\n  Markdown: {paths['markdown']}",
          flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="drdrill-allure-results-") as tmp:
        stored = collect_results(run_dirs, Path(tmp))
        if not stored:
            print("drdrill: these runs keep no Allure results (run before drdrill stored them); "
                  "no Allure HTML", file=sys.stderr)  # fmt: skip
        else:
            from drdrill.report.allure_html import build_allure_html

            history = args.history or out / "allure-history.jsonl"
            html = build_allure_html([Path(tmp)], out, name=args.title, append_history=False,
                                     history_path=history, progress=lambda line: print(line, flush=True))
            print(f"Allure report ({stored} scenario(s); the trend of the runs before them in {history}): "
                  f"{html}")  # fmt: skip
    return for_validity(verdict)
