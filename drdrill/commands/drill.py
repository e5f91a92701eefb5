"""``drdrill drill``: run Gherkin drills against a target, print their verdicts, build the reports.

In order: the arguments and the target's options are checked (a malformed config is refused
first); the pre-flight collects the selected scenarios (undefined steps, unknown or invalid
experiments: nothing runs); ``--dry-run`` prints the target's plan of each scenario and stops;
the target prepares (:meth:`~drdrill.targets.Target.prepare`: the local target's Docker engine and
images); the session runs (:class:`~drdrill.commands.session.BddSession`); the verdict table, the
target's after-word (:meth:`~drdrill.targets.Target.finish`) and the two reports follow.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from drdrill.commands.session import BddSession
from drdrill.errors import DrdrillError
from drdrill.exitcodes import ExitCode, for_validity
from drdrill.tags import SUITES
from drdrill.targets import DEFAULT_TARGET, SUITE_TARGET, TARGETS, TargetOptions

__all__ = ["add_parser", "run"]

PYTEST_INTERRUPTED = 2  # pytest's exit code for an interrupted session
PYTEST_NOT_RUN = (3, 4)  # internal error, usage error (the pre-flight refused)
PYTEST_NO_TESTS = 5


def add_parser(subcommands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    drill = subcommands.add_parser(
        "drill", help="run Gherkin drills and print their verdicts",
        description="Run the Gherkin scenarios of a features folder with pytest-bdd against a target, "
                    "write a run directory per scenario and Allure results, print a verdict table, "
                    "and build the DR test report and the single-file Allure HTML report. Relative "
                    "defaults are under the project directory: the nearest of the current directory "
                    "and its parents that holds features/, else the current directory.")  # fmt: skip
    drill.add_argument("--suite", choices=list(SUITES),
                       help="nightly: the reduced chaos run for CI (service, database, AZ, a region "
                            "failover); annual: the full DR test (every variant, failover and failback). "
                            f"Implies --target {SUITE_TARGET}")  # fmt: skip
    drill.add_argument("--target", default=None, choices=TARGETS,
                       help="platform to drill: groundtruth (the exact-truth test service; the default "
                            "without --suite), local (the Docker mirror; brought up unless one is up, "
                            "taken down after; the default with --suite) or aws (the AWS mirror of "
                            "--aws-config, behind its guardrails)")
    drill.add_argument("--features", type=Path, metavar="DIR",
                       help="the Gherkin features to drill, a directory (searched recursively) or a "
                            ".feature file (default: features/)")
    drill.add_argument("--experiments", type=Path, metavar="DIR",
                       help="where `When the experiment \"NAME\" runs` finds NAME.json, a target's own "
                            "subdirectory (aws/) first (default: experiments/)")
    drill.add_argument("--aws-config", type=Path, metavar="YAML",
                       help="with --target aws: the AWS mirror's description and guardrails (default "
                            "$DRDRILL_AWS_CONFIG; example: examples/aws-mirror.yaml)")
    drill.add_argument("--dry-run", action="store_true",
                       help="print what each selected scenario's experiment would do (with --target aws: "
                            "every AWS operation, resolved, and the guardrails' verdict) and change nothing")
    drill.add_argument("--manual", metavar="STEPS",
                       help="runbook steps an operator performs and confirms with `drdrill runbook done "
                            "STEP` (comma-separated, or all), e.g. declare,dns")
    drill.add_argument("--keep-mirror", action="store_true",
                       help="with --target local: leave the mirror up afterwards")
    drill.add_argument("-k", dest="keyword", metavar="EXPR", help="only scenarios matching this pytest -k expression")
    drill.add_argument("-m", dest="markers", metavar="TAGS", help="only scenarios with these tags (pytest -m)")
    drill.add_argument("--config", type=Path, metavar="YAML",
                       help="drill config: services, tiers, objectives (default: drdrill.yaml if present, "
                            "else the DR plan's objectives)")
    drill.add_argument("--runs-dir", type=Path, help="where run directories go (default: reports/runs)")
    drill.add_argument("--alluredir", type=Path,
                       help="where Allure results go, emptied first (each run directory keeps its own "
                            "copy in allure/) (default: reports/allure-results)")
    drill.add_argument("--report-dir", type=Path,
                       help="where the drill's reports go: the DR test report (dr-test-report.html, "
                            ".md) and the Allure report (allure-report.html, with its trend in "
                            "allure-history.jsonl) (default: reports/dr-report)")
    drill.set_defaults(run=run)
    return drill


def run(args: argparse.Namespace) -> int:
    from drdrill import targets
    from drdrill.settings import settings

    where = settings()
    features = (args.features or where.features).resolve()
    if not features.exists():
        raise DrdrillError(f"no features at {features}; give the features folder with --features DIR")
    if args.experiments is not None and not args.experiments.is_dir():
        raise DrdrillError(f"no experiments directory at {args.experiments.resolve()}")
    runs_dir = (args.runs_dir or where.runs).resolve()
    alluredir = (args.alluredir or where.alluredir).resolve()
    report_dir = (args.report_dir or where.report_dir).resolve()
    name = args.target or (SUITE_TARGET if args.suite else DEFAULT_TARGET)
    aws_config = str(args.aws_config) if args.aws_config is not None else None
    target = targets.create(name, TargetOptions(aws_config=aws_config, keep_mirror=args.keep_mirror))
    before = set(runs_dir.glob("*")) if runs_dir.is_dir() else set()
    pytest_args = [
        "-v", "--log-cli-level=INFO", "--log-cli-format=%(asctime)s %(message)s",
        "--log-cli-date-format=%H:%M:%S", f"--drdrill-target={name}", f"--drdrill-runs-dir={runs_dir}",
        f"--alluredir={alluredir}", "--clean-alluredir", *target.options.pytest_args(),
    ]
    env: dict[str, str] = {}
    if args.config is not None:
        from drdrill.config import load_config

        load_config(args.config)  # a malformed config is refused here, before anything starts
        pytest_args.append(f"--drdrill-config={args.config.resolve()}")
    if args.manual:
        from drdrill import runbook

        runbook.manual_steps({"runbook_manual": args.manual})  # unknown steps refused here
        env[runbook.MANUAL_ENV] = args.manual
    if args.keyword:
        pytest_args += ["-k", args.keyword]
    markers = [f"({m})" for m in (args.suite, args.markers) if m]
    if markers:
        pytest_args += ["-m", " and ".join(markers)]
    what = f"the {args.suite} suite" if args.suite else "the scenarios"
    print(f"drdrill: drilling {what} under {features} against the {name} target", flush=True)
    started = time.monotonic()
    with BddSession([features], where.project, experiments=args.experiments, args=pytest_args,
                    env=env) as session:  # fmt: skip
        code = _preflight(session)
        if code is not None:
            return code
        if args.dry_run:
            return _dry_run(session, name)
        target.prepare(lambda line: print(line, flush=True))
        allure_ready = _ensure_allure()
        code = session.run()
    after = sorted(set(runs_dir.glob("*")) - before) if runs_dir.is_dir() else []
    print()
    if code in PYTEST_NOT_RUN or (code == PYTEST_NO_TESTS and not after):
        print("drdrill: the drill did not run (see the message above); no fault was injected"
              if code != PYTEST_NO_TESTS else "drdrill: no scenario matched the selection",
              file=sys.stderr)  # fmt: skip
        return ExitCode.NOT_RUN
    verdict = _print_verdicts(after, time.monotonic() - started, alluredir)
    target.finish(lambda line: print(line, file=sys.stderr))
    ran = [p for p in after if (p / "drill.json").is_file()]
    if ran:
        from drdrill.report.allure_results import store_results, write_executor

        title = f"drdrill — {args.suite or name} drills"
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        with contextlib.suppress(OSError):  # names this run's point of the trend
            write_executor(alluredir, f"{args.suite or name} drill, {when}", title)
            store_results(alluredir)
        _build_reports(ran, report_dir, alluredir if allure_ready else None, title)
    if code == PYTEST_INTERRUPTED:
        print("drdrill: the drill was interrupted; the verdicts above cover what ran", file=sys.stderr)
        return ExitCode.INTERRUPTED
    return verdict


def _preflight(session: BddSession) -> int | None:
    """Collect only (steps, experiments) before anything starts; an exit code when it fails."""
    result = session.collect()
    if result.returncode == 0:
        selected = [line for line in result.stdout.splitlines() if line.strip().startswith("<Function ")]
        print(f"drdrill: pre-flight passed: {len(selected)} scenario(s), every step defined, every "
              "experiment valid", flush=True)  # fmt: skip
        return None
    print(result.stdout[-4000:] + result.stderr[-4000:], file=sys.stderr)
    if result.returncode == PYTEST_NO_TESTS:
        print("drdrill: no scenario matched the selection", file=sys.stderr)
    else:
        print("drdrill: pre-flight failed; nothing was run and no fault injected", file=sys.stderr)
    return ExitCode.NOT_RUN


def _dry_run(session: BddSession, target: str) -> int:
    """Print the target's plan of every selected scenario (``--drdrill-plan``); 0, or 3 when refused."""
    with tempfile.TemporaryDirectory(prefix="drdrill-plan-") as tmp:
        plan_path = Path(tmp) / "plan.json"
        result = session.collect(f"--drdrill-plan={plan_path}")
        if not plan_path.is_file():
            print(result.stdout[-4000:] + result.stderr[-4000:], file=sys.stderr)
            print("drdrill: the dry run could not plan the drill", file=sys.stderr)
            return ExitCode.NOT_RUN
        plan = json.loads(plan_path.read_text())
    print(f"drdrill: dry run against the {target} target: what the drill would do; nothing was changed\n")
    for entry in plan["scenarios"]:
        print(f"scenario: {entry['scenario']}")
        if entry.get("experiment"):
            print(f"  ({entry['where']}; {entry['experiment']})")
        for line in entry["lines"]:
            print(f"  {line}")
        for problem in entry["problems"]:
            print(f"  REFUSED: {problem}")
        print()
    if plan["refused"]:
        print("drdrill: the guardrails refuse this drill (see REFUSED above); it would change nothing",
              file=sys.stderr)  # fmt: skip
        return ExitCode.NOT_RUN
    print(f"drdrill: {len(plan['scenarios'])} scenario(s) planned; every guardrail holds. Run without "
          "--dry-run to drill.")  # fmt: skip
    return ExitCode.VALID


def _print_verdicts(run_dirs: list[Path], elapsed_s: float, alluredir: Path) -> int:
    from drdrill.report.verdicts import verdict_table

    text, overall = verdict_table(run_dirs)
    print(text)
    print(f"\n{len(run_dirs)} scenario(s) in {elapsed_s:.0f} s: {overall.value.upper()}.")
    for path in run_dirs:
        print(f"  {path}")
    print(f"Allure results in {alluredir}. Re-judge a run with: drdrill check <run-dir>")
    return for_validity(overall)


def _ensure_allure() -> bool:
    """Allure (npm) installed before the drill, so its HTML can be built after; False if it cannot be."""
    from drdrill.report.allure_html import ensure_allure

    try:
        ensure_allure(progress=lambda line: print(line, flush=True))
        return True
    except Exception as exc:  # noqa: BLE001 - the drill and its verdicts do not need Allure's HTML
        print(f"drdrill: Allure is not available, the drill goes on without its HTML report: {exc}",
              file=sys.stderr, flush=True)  # fmt: skip
        return False


def _build_reports(run_dirs: list[Path], out: Path, alluredir: Path | None, name: str) -> None:
    """After a drill: the DR test report and the Allure HTML (extending its history) into ``out``.

    A report that cannot be built is said on stderr: the verdicts stand without it.
    """
    from drdrill.report.allure_html import build_allure_html
    from drdrill.report.dr_report import build_report

    try:
        paths = build_report(run_dirs, out)
        print(f"DR test report: {paths['html']} (Markdown: {paths['markdown'].name})", flush=True)
    except Exception as exc:  # noqa: BLE001 - the verdicts stand without the report
        print(f"drdrill: could not build the DR test report: {type(exc).__name__}: {exc}", file=sys.stderr)
    if alluredir is not None:
        try:
            html = build_allure_html([alluredir], out, name=name,
                                     progress=lambda line: print(line, flush=True))  # fmt: skip
            print(f"Allure report: {html} (one self-contained file; trend kept in "
                  f"{out / 'allure-history.jsonl'})", flush=True)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - as above
            print(f"drdrill: could not build the Allure HTML report: {type(exc).__name__}: {exc}",
                  file=sys.stderr)  # fmt: skip
