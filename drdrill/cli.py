"""The ``drdrill`` command: run drills, re-judge stored runs.

Exit codes (every subcommand):

    0    valid: every objective met, and the history proves it
    1    invalid: an objective was missed (a product defect)
    2    unknown: the evidence cannot tell (too little traffic, no final read, ...)
    3    the drill could not run (pre-flight failed: undefined step, unknown experiment, ...)
    130  interrupted (Ctrl-C or SIGTERM; rollbacks and teardown ran first)
    254  bad arguments
    255  internal error in drdrill
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from drdrill import __version__
from drdrill.checkers import CheckResult, Validity
from drdrill.errors import DrdrillError

__all__ = ["main"]

EXIT = {Validity.VALID: 0, Validity.INVALID: 1, Validity.UNKNOWN: 2}
EXIT_NOT_RUN = 3
EXIT_BAD_ARGS = 254
EXIT_INTERNAL = 255
SUITES = {"nightly": "nightly", "annual": "annual"}  # suite -> the Gherkin tag that selects it
PROJECT_ROOT = Path(__file__).resolve().parents[1]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2, which means "unknown" here
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_ARGS, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="drdrill", description=(
        "Chaos and disaster-recovery drills with recovery time (RTO) and data loss (RPO) measured "
        "from what synthetic users saw."),
        epilog="exit codes: 0 valid, 1 invalid (objective missed), 2 unknown (not enough evidence), "
               "3 drill could not run, 130 interrupted, 254 bad arguments, 255 internal error")
    parser.add_argument("--version", action="version", version=f"drdrill {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = commands.add_parser("check", help="re-judge stored run directories offline",
                                description="Judge run directories from their files alone "
                                            "(history.jsonl, final-read.json, drill.json); rewrites results.json.")
    check.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", type=Path)
    check.add_argument("--json", action="store_true", help="print the full results as JSON")
    check.add_argument("-v", "--verbose", action="store_true", help="print every result, not only the summary")

    drill = commands.add_parser("drill", help="run Gherkin drills and print their verdicts",
                                description="Run the Gherkin scenarios under features/ with pytest-bdd "
                                            "against a target, write a run directory per scenario and Allure "
                                            "results, print a verdict table, and build the DR test "
                                            "report and the single-file Allure HTML report.")
    drill.add_argument("--suite", choices=list(SUITES),
                       help="nightly: the reduced chaos run for CI (service, database, AZ, a region "
                            "failover); annual: the full DR test (every variant, failover and failback). "
                            "Implies --target local")
    drill.add_argument("--target", default=None, choices=["groundtruth", "local", "aws"],
                       help="platform to drill: groundtruth (the exact-truth test service; the default "
                            "without --suite), local (the Docker mirror; brought up unless one is up, "
                            "taken down after; the default with --suite) or aws (the AWS mirror of "
                            "--aws-config, behind its guardrails)")
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
    drill.add_argument("--runs-dir", type=Path, default=PROJECT_ROOT / "reports" / "runs",
                       help="where run directories go (default: reports/runs)")
    drill.add_argument("--alluredir", type=Path, default=PROJECT_ROOT / "reports" / "allure-results",
                       help="where Allure results go, emptied first (each run directory keeps its own "
                            "copy in allure/) (default: reports/allure-results)")
    drill.add_argument("--report-dir", type=Path, default=PROJECT_ROOT / "reports" / "dr-report",
                       help="where the drill's reports go: the DR test report (dr-test-report.html, "
                            ".md) and the Allure report (allure-report.html, with its trend in "
                            "allure-history.jsonl) (default: reports/dr-report)")
    validate = commands.add_parser(
        "validate", help="check features without running them (steps defined, experiments valid)",
        description="Collect the scenarios of the given feature files or directories (default: "
                    "features/) and check every step has a definition and every experiment exists, "
                    "validates and names only what the mirror has. Nothing runs, no fault is "
                    "injected, no Docker needed.")  # fmt: skip
    validate.add_argument("paths", nargs="*", metavar="FEATURE", type=Path)
    report = commands.add_parser(
        "report", help="rebuild the DR test report and the Allure HTML from stored run directories",
        description="Re-judge the run directories (nothing is re-run) and write the stakeholders' DR "
                    "test report (dr-test-report.html and .md: overall verdict, objectives against "
                    "measured values per scenario, runbook step timings, timeline plots, issues found "
                    "with suggested remediation, sign-off) and the Allure report (allure-report.html: "
                    "every scenario with its evidence, and the trend of the runs before them). Each "
                    "HTML is one self-contained file that opens without a network.")  # fmt: skip
    report.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", type=Path,
                        help="default: every run directory under reports/runs")
    report.add_argument("--out", type=Path, default=PROJECT_ROOT / "reports" / "dr-report",
                        help="output directory (default: reports/dr-report)")
    report.add_argument("--title", default="Disaster-recovery test report")
    report.add_argument("--history", type=Path, metavar="JSONL",
                        help="the Allure history the trend is drawn from, read only (default: "
                             "OUT/allure-history.jsonl, which every drdrill drill extends)")
    commands.add_parser("steps", help="print the reference of every Gherkin step, with examples",
                        description="The step library for drill authors (docs/steps.md is this output).")

    from drdrill.mirror import cli as mirror_cli

    mirror_cli.add_parser(commands)

    book = commands.add_parser(
        "runbook", help="confirm the manual runbook steps of a running drill",
        description="A drill whose runbook has manual steps (runbook_manual in the experiment "
                    "configuration, or $DRDRILL_RUNBOOK_MANUAL, e.g. declare,dns) announces each "
                    "one and waits for its operator; confirm it from another terminal.")  # fmt: skip
    book_actions = book.add_subparsers(dest="runbook_action", metavar="ACTION", required=True,
                                       parser_class=_Parser)  # fmt: skip
    done = book_actions.add_parser("done", help="confirm that manual step STEP is done")
    done.add_argument("step", metavar="STEP")
    status = book_actions.add_parser("status", help="show which step waits for its operator")
    book_steps = book_actions.add_parser("steps", help="list the runbook's steps")
    book_steps.add_argument("--markdown", action="store_true",
                            help="print the runbook reference in Markdown (docs/runbook.md)")
    for sub in (done, status):
        sub.add_argument("--dir", type=Path, metavar="DIR",
                         help="the runbook directory (default: runbook/ beside the mirror state "
                              "file, $DRDRILL_MIRROR_STATE or reports/mirror/state.json)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":
            return cmd_check(args)
        if args.command == "mirror":
            from drdrill.mirror import cli as mirror_cli

            return mirror_cli.run(args)
        if args.command == "runbook":
            return cmd_runbook(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "steps":
            from drdrill.stepdocs import step_reference

            sys.path.insert(0, str(PROJECT_ROOT))
            print(step_reference(), end="")
            return 0
        return cmd_drill(args)
    except DrdrillError as exc:
        print(f"drdrill: {exc}", file=sys.stderr)
        return EXIT_BAD_ARGS
    except KeyboardInterrupt:
        print("drdrill: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the documented exit code for our own bugs
        import traceback

        traceback.print_exc()
        print(f"drdrill: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INTERNAL


def cmd_runbook(args: argparse.Namespace) -> int:
    from drdrill import runbook

    if args.runbook_action == "steps":
        if args.markdown:
            print(runbook.reference(), end="")
            return 0
        for step in runbook.STEPS.values():
            print(f"{step.name:12} {step.phase:14} {step.title}")
        return 0
    from drdrill.mirror.state import state_path

    directory = args.dir or state_path().with_name("runbook")
    if args.runbook_action == "status":
        waiting = runbook.pending(directory)
        if waiting is None:
            print(f"no runbook step is waiting for an operator ({directory})")
            return 0
        since = time.time() - float(waiting.get("since_s", time.time()))
        print(f"waiting for {waiting['step']!r} ({waiting.get('title')}) for {since:.0f} s:\n"
              f"  {waiting.get('instructions')}\n"
              f"  confirm with: drdrill runbook done {waiting['step']}")  # fmt: skip
        return 0
    waiting = runbook.confirm(args.step, directory)
    print(f"confirmed {args.step!r}; the drill goes on "
          f"(it waited {time.time() - float(waiting.get('since_s', time.time())):.0f} s)")  # fmt: skip
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from drdrill.checkers import merge_validity
    from drdrill.run import RunDir

    runs = [RunDir.open(path) for path in args.run_dirs]  # all bad paths fail before any work
    validities = []
    for run in runs:
        result = run.check()
        validities.append(result.validity)
        if args.json:
            print(json.dumps(result.to_dict(), indent=2, default=str))
            continue
        print(f"{run.path}: {result.validity.value.upper()}")
        for line in _tree(result, verbose=args.verbose):
            print("  " + line)
    return EXIT[merge_validity(validities)]


def _tree(result: CheckResult, verbose: bool, depth: int = 0) -> list[str]:
    """Groups and their direct results; deeper results only when not valid (or with --verbose)."""
    lines = []
    for child in result.children:
        label = child.name
        step = child.evidence.get("step")
        if step:
            label = f'"{step}" [{child.name}]'
        text = f"{label}: {child.validity.value.upper()}"
        if child.explanation and (depth > 0 or not child.children):
            text += f" — {child.explanation[0]}"
        lines.append("  " * depth + text)
        if verbose or depth == 0 or child.validity is not Validity.VALID:
            lines += _tree(child, verbose, depth + 1)
    return lines


def cmd_drill(args: argparse.Namespace) -> int:
    target = args.target or ("local" if args.suite else "groundtruth")
    if args.aws_config is not None and target != "aws":
        raise DrdrillError("--aws-config is for --target aws")
    runs_dir = args.runs_dir.resolve()
    before = set(runs_dir.glob("*")) if runs_dir.is_dir() else set()
    command = [
        sys.executable, "-m", "pytest", str(PROJECT_ROOT / "features" / "test_drills.py"),
        "-p", "no:cacheprovider", "-v", "--log-cli-level=INFO", "--log-cli-format=%(asctime)s %(message)s",
        "--log-cli-date-format=%H:%M:%S",
        f"--drdrill-target={target}", f"--drdrill-runs-dir={runs_dir}",
        f"--alluredir={args.alluredir.resolve()}", "--clean-alluredir",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.keep_mirror:
        command.append("--drdrill-keep-mirror")
    if args.config is not None:
        from drdrill.config import load_config

        load_config(args.config)  # a malformed config is refused here, before anything starts
        command.append(f"--drdrill-config={args.config.resolve()}")
    if target == "aws":
        from drdrill.aws.config import load_aws_config

        mirror = load_aws_config(args.aws_config)  # a malformed or missing config is refused here
        command.append(f"--drdrill-aws-config={Path(mirror.source).resolve()}")
    if args.manual:
        from drdrill import runbook

        runbook.manual_steps({"runbook_manual": args.manual})  # unknown steps refused here
        env[runbook.MANUAL_ENV] = args.manual
    if args.keyword:
        command += ["-k", args.keyword]
    markers = [f"({m})" for m in (SUITES.get(args.suite or ""), args.markers) if m]
    if markers:
        command += ["-m", " and ".join(markers)]
    what = f"the {args.suite} suite" if args.suite else "the scenarios"
    print(f"drdrill: drilling {what} under {PROJECT_ROOT / 'features'} against the {target} target",
          flush=True)
    started = time.monotonic()
    preflight = _preflight(command, env)
    if preflight is not None:
        return preflight
    if args.dry_run:
        return _dry_run(command, env, target)
    mirrors_before: set[str] = set()
    if target == "local":
        from drdrill.mirror.engine import ensure_docker
        from drdrill.mirror.images import build_images
        from drdrill.mirror.lifecycle import leftovers

        print("drdrill: the local target needs a Docker engine and the mirror's images", flush=True)
        ensure_docker(progress=lambda line: print(line, flush=True))
        build_images(progress=lambda line: print(line, flush=True))
        mirrors_before = set(leftovers())
    allure_ready = _ensure_allure()
    code = _run_forwarding_sigterm(command, env)
    pytest_interrupted = 2
    after = sorted(set(runs_dir.glob("*")) - before) if runs_dir.is_dir() else []
    print()
    if code in (3, 4) or (code == 5 and not after):
        print("drdrill: the drill did not run (see the message above); no fault was injected"
              if code != 5 else "drdrill: no scenario matched the selection", file=sys.stderr)
        return EXIT_NOT_RUN
    verdict = _verdict_table(after, time.monotonic() - started, args.alluredir)
    if target == "local" and not args.keep_mirror:
        _warn_leftovers(mirrors_before)
    ran = [p for p in after if (p / "drill.json").is_file()]
    if ran:
        from drdrill.report.allure_results import store_results, write_executor

        name = f"drdrill — {args.suite or target} drills"
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        with contextlib.suppress(OSError):  # names this run's point of the trend
            write_executor(args.alluredir, f"{args.suite or target} drill, {when}", name)
            store_results(args.alluredir)
        _build_reports(ran, args.report_dir, args.alluredir if allure_ready else None, name)
    if code == pytest_interrupted:
        print("drdrill: the drill was interrupted; the verdicts above cover what ran", file=sys.stderr)
        return 130
    return verdict


def _warn_leftovers(mirrors_before: set[str]) -> None:
    """Say so when the mirror this drill brought up left containers or networks behind."""
    from drdrill.mirror.lifecycle import leftovers

    try:
        left = {m: n for m, n in leftovers().items() if m not in mirrors_before}
    except Exception as exc:  # noqa: BLE001 - a check, never a reason to lose the verdicts
        print(f"drdrill: could not check for leftover mirror resources: {exc}", file=sys.stderr)
        return
    for mirror, counts in left.items():
        print(f"drdrill: WARNING: mirror {mirror} left {counts['containers']} container(s) and "
              f"{counts['networks']} network(s) behind (see the teardown error above); remove them with "
              "`drdrill mirror down --all` (a network Docker refuses to remove needs a Docker engine "
              "restart first, moby#42119). The verdicts above stand.", file=sys.stderr)  # fmt: skip


def _dry_run(command: list[str], env: dict[str, str], target: str) -> int:
    """Print the plan of every selected scenario (``--drdrill-plan``); 0, or 3 when a guardrail refuses."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="drdrill-plan-") as tmp:
        plan_path = Path(tmp) / "plan.json"
        result = subprocess.run([*command, "--collect-only", "-q", f"--drdrill-plan={plan_path}"],
                                cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)  # fmt: skip
        if not plan_path.is_file():
            print(result.stdout[-4000:] + result.stderr[-4000:], file=sys.stderr)
            print("drdrill: the dry run could not plan the drill", file=sys.stderr)
            return EXIT_NOT_RUN
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
        return EXIT_NOT_RUN
    print(f"drdrill: {len(plan['scenarios'])} scenario(s) planned; every guardrail holds. Run without "
          "--dry-run to drill.")  # fmt: skip
    return 0


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


def _run_forwarding_sigterm(command: list[str], env: dict[str, str]) -> int:
    """Run the drill session; a SIGTERM to us is passed on, so its rollbacks and teardown run."""
    import signal

    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env)

    def forward(signum: int, frame: object) -> None:
        print("drdrill: SIGTERM: stopping the drill (rollbacks and teardown run first)",
              file=sys.stderr, flush=True)
        process.send_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                return process.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the session too: let it clean up
                print("drdrill: interrupted: waiting for the rollbacks and teardown", file=sys.stderr,
                      flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _preflight(command: list[str], env: dict[str, str]) -> int | None:
    """Collect only (steps, experiments) before anything starts; an exit code when it fails."""
    result = subprocess.run([*command, "--collect-only", "-q"], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True)  # fmt: skip
    if result.returncode == 0:
        selected = [line for line in result.stdout.splitlines() if line.strip().startswith("<Function ")]
        print(f"drdrill: pre-flight passed: {len(selected)} scenario(s), every step defined, every "
              "experiment valid", flush=True)  # fmt: skip
        return None
    print(result.stdout[-4000:] + result.stderr[-4000:], file=sys.stderr)
    if result.returncode == 5:
        print("drdrill: no scenario matched the selection", file=sys.stderr)
    else:
        print("drdrill: pre-flight failed; nothing was run and no fault injected", file=sys.stderr)
    return EXIT_NOT_RUN


def cmd_report(args: argparse.Namespace) -> int:
    import tempfile

    from drdrill.report.allure_results import collect_results
    from drdrill.run import RunDir

    runs = list(args.run_dirs)
    if not runs:
        base = PROJECT_ROOT / "reports" / "runs"
        runs = sorted(p for p in base.glob("*") if (p / "drill.json").is_file()) if base.is_dir() else []
        if not runs:
            raise DrdrillError(f"no run directory under {base}; run a drill first or name RUN_DIRs")
    run_dirs = [RunDir.open(path).path for path in runs]  # every bad path fails before any work
    print(f"drdrill: building the reports from {len(run_dirs)} run(s)", flush=True)
    from drdrill.report.dr_report import build_report

    paths = build_report(run_dirs, args.out, title=args.title)
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

            history = args.history or args.out / "allure-history.jsonl"
            html = build_allure_html([Path(tmp)], args.out, name=args.title, append_history=False,
                                     history_path=history, progress=lambda line: print(line, flush=True))
            print(f"Allure report ({stored} scenario(s); the trend of the runs before them in {history}): "
                  f"{html}")  # fmt: skip
    return EXIT[verdict]


def cmd_validate(args: argparse.Namespace) -> int:
    paths = [p.resolve() for p in args.paths] or [PROJECT_ROOT / "features"]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise DrdrillError(f"no such feature file or directory: {', '.join(missing)}")
    features = sorted({f for p in paths for f in ([p] if p.is_file() else p.rglob("*.feature"))})
    if not features:
        raise DrdrillError(f"no .feature file under {', '.join(map(str, paths))}")
    bad = [str(f) for f in features if f.suffix != ".feature"]
    if bad:
        raise DrdrillError(f"not a feature file: {', '.join(bad)}")
    # one throw-away test module binding exactly these features (pytest-bdd wants them relative)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="drdrill-validate-", dir=PROJECT_ROOT / "features") as tmp:
        module = Path(tmp) / "test_validate.py"
        module.write_text("from pytest_bdd import scenarios\n\n" + "".join(
            f"scenarios({str(f)!r})\n" for f in features))
        failures = []
        for target in ("groundtruth", "local"):  # every scenario is checked under its own target
            result = subprocess.run(
                [sys.executable, "-m", "pytest", str(module), "--collect-only", "-q",
                 "-p", "no:cacheprovider", f"--drdrill-target={target}"],
                cwd=PROJECT_ROOT, capture_output=True, text=True)  # fmt: skip
            if result.returncode not in (0, 5):
                failures.append(result.stdout + result.stderr)
    if failures:
        lines = [line.strip() for text in failures for line in text.splitlines()
                 if line.startswith("  ") or "error" in line.lower()]
        seen = list(dict.fromkeys(line for line in lines if line))
        print("\n".join(seen) or "\n".join(failures), file=sys.stderr)
        print(f"drdrill: {len(features)} feature file(s) checked: problems above", file=sys.stderr)
        return EXIT_NOT_RUN
    print(f"drdrill: {len(features)} feature file(s) valid: every step defined, every experiment valid")
    return 0


def _verdict_table(run_dirs: list[Path], elapsed_s: float, alluredir: Path) -> int:
    from drdrill.checkers import merge_validity

    rows = []
    validities = []
    for path in run_dirs:
        scenario = path.name
        with contextlib.suppress(OSError, ValueError, KeyError):
            scenario = json.loads((path / "drill.json").read_text())["scenario"]
        results = path / "results.json"
        if not results.is_file():
            rows.append((scenario, "-", "-", "-", "-", "NO RESULT (harness error)"))
            validities.append(Validity.UNKNOWN)
            continue
        result = CheckResult.from_dict(json.loads(results.read_text()))
        validities.append(result.validity)
        rto = _metric(result, "rto-tier:critical", "measured_rto_s", "objective_s")
        failback = _metric(result, "rto-failback-tier:critical", "measured_rto_s", "objective_s")
        rpo = _metric(result, "rpo:financial", "data_loss_window_s", "objective_s")
        lost = _find(result, "rpo:financial")
        lost_text = f"{lost.metrics.get('lost_count', '-')}" if lost else "-"
        rows.append((scenario[:70], rto, failback, rpo, lost_text, result.validity.value.upper()))
    header = ("scenario", "critical RTO (objective)", "failback RTO", "financial RPO (objective)",
              "lost payments", "verdict")
    if all(row[2] == "-" for row in rows):  # no failback ran: no column for it
        header = header[:2] + header[3:]
        rows = [row[:2] + row[3:] for row in rows]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    overall = merge_validity(validities) if validities else Validity.UNKNOWN
    print(f"\n{len(rows)} scenario(s) in {elapsed_s:.0f} s: {overall.value.upper()}.")
    for path in run_dirs:
        print(f"  {path}")
    print(f"Allure results in {alluredir}. Re-judge a run with: drdrill check <run-dir>")
    return EXIT[overall]


def _find(result: CheckResult, name: str) -> CheckResult | None:
    try:
        return result.find(name)
    except KeyError:
        return None


def _metric(result: CheckResult, name: str, value_key: str, objective_key: str) -> str:
    found = _find(result, name)
    if found is None:
        return "-"
    value = found.metrics.get(value_key)
    objective = found.metrics.get(objective_key)
    value_text = f"{value:.2f} s" if isinstance(value, int | float) else "not measured"
    return f"{value_text} (< {objective:g} s)" if objective else value_text


if __name__ == "__main__":
    sys.exit(main())
