"""drdrill's pytest plugin: drill fixtures, Gherkin pre-flight checks, and verdicts turned into test outcomes.

Options: ``--drdrill-target`` (which platform to drill), ``--drdrill-runs-dir`` (where run directories
go, default ``reports/runs``), ``--drdrill-config`` (a drill YAML; default ``drdrill.yaml`` if present,
else the DR plan's objectives). Ini: ``drdrill_experiment_dirs`` (where ``When the experiment "X"
runs`` looks, default ``experiments``).

Pre-flight: after collection and before any test runs, every step of every selected scenario must
have a definition and every experiment a step names must exist and validate; otherwise the session
stops with one message listing each problem at its file and line — before any fault is injected.

Targets: the target named by ``--drdrill-target`` comes from the registry (:mod:`drdrill.targets`)
with the session's ``--drdrill-aws-config`` / ``--drdrill-keep-mirror``; its pre-flight, dry-run plan,
start and stop are its own. Scenarios tagged for another target (``@groundtruth``, ``@mirror``: see
each target's ``tags``) are deselected.

Verdicts: :func:`require` turns a checker result into the test outcome: INVALID raises
:class:`~drdrill.errors.DataLost` (an RPO or lost-writes objective) or
:class:`~drdrill.errors.ObjectiveMissed` (any other), both AssertionErrors (Allure: failed, a
product defect); UNKNOWN raises :class:`~drdrill.errors.Indeterminate` (Allure: broken, not enough
evidence).

Allure (with ``--alluredir``): each scenario gets an epic (its fault class), story, severity (from
the tiers it judges), a link to the runbook (ini ``drdrill_runbook_url``, default
``docs/runbook.md``), its evidence (verdicts, RTO/RPO/runbook tables, lost keys, timeline plot,
journal, final read) and its measured values as excluded parameters; the session writes
``environment.properties`` and ``categories.json``, and at its end copies each scenario's result
into its run directory (see :mod:`drdrill.report.allure_results`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drdrill.checkers import CheckResult, Validity
from drdrill.config import load_config
from drdrill.errors import DataLost, DrdrillError, Indeterminate, ObjectiveMissed
from drdrill.run import RunDir
from drdrill.targets import (
    DEFAULT_TARGET,
    TARGETS,
    TargetOptions,
    activity_lines,
    create,
    targets_by_tag,
)

log = logging.getLogger("drdrill")

__all__ = ["EXPERIMENT_STEP", "DataLost", "Indeterminate", "ObjectiveMissed", "require"]

EXPERIMENT_STEP = 'the experiment "{name}" runs'
MANUAL_STEP = 'the runbook steps "{steps}" are manual'


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("drdrill", "drdrill drills")
    group.addoption("--drdrill-target", choices=TARGETS, default=DEFAULT_TARGET,
                    help=f"the platform to drill (default: {DEFAULT_TARGET})")
    group.addoption("--drdrill-keep-mirror", action="store_true",
                    help="leave the local mirror up after the session (default: take down what was brought up)")
    group.addoption("--drdrill-runs-dir", default="reports/runs",
                    help="where run directories are written (default: reports/runs)")
    group.addoption("--drdrill-aws-config", default=None,
                    help="with --drdrill-target aws: the AWS mirror's description (default $DRDRILL_AWS_CONFIG)")
    group.addoption("--drdrill-plan", default=None, metavar="FILE",
                    help="dry run: after the pre-flight, write what each selected scenario's experiment "
                         "would do to FILE (JSON) and run nothing")
    group.addoption("--drdrill-config", default=None,
                    help="drill config YAML (default: drdrill.yaml if present, else the DR plan's objectives)")
    parser.addini("drdrill_experiment_dirs", type="paths", default=[],
                  help="directories searched for experiments named in steps (default: experiments)")
    parser.addini("drdrill_runbook_url", default="",
                  help="where Allure's runbook links point; #STEP is appended for a step "
                       "(default: docs/runbook.md under the root, as a file: URL)")


def experiment_dirs(config: pytest.Config) -> list[Path]:
    """Where experiments are looked up: the target's own subdirectory first (``experiments/aws``)."""
    dirs = list(config.getini("drdrill_experiment_dirs")) or [config.rootpath / "experiments"]
    target = config.getoption("--drdrill-target")
    return [*(d / target for d in dirs if (d / target).is_dir()), *dirs]


def session_target(config: pytest.Config) -> Any:
    """The session's :class:`~drdrill.targets.Target` (one per session, from its ``--drdrill-*``
    options): checked at pre-flight and planned by a dry run before :func:`drdrill_target` starts it."""
    target = config.stash.get(_TARGET, None)
    if target is None:
        target = create(config.getoption("--drdrill-target"), TargetOptions.from_pytest(config))
        config.stash[_TARGET] = target
    return target


_TARGET = pytest.StashKey[Any]()


def pytest_configure(config: pytest.Config) -> None:
    """drdrill's own Gherkin tags become markers (:mod:`drdrill.tags`); SIGTERM ends a drill session
    as Ctrl-C does: rollbacks, traffic stopped, mirror taken down."""
    from drdrill import tags
    from drdrill.chaos.runner import interrupt_on_sigterm

    for name, meaning in tags.markers().items():
        config.addinivalue_line("markers", f"{name}: {meaning}")
    interrupt_on_sigterm()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scenarios tagged for another target (``@groundtruth``, ``@mirror``) are deselected."""
    target = config.getoption("--drdrill-target")
    tagged = targets_by_tag()
    keep, dropped = [], []
    for item in items:
        wanted = {t for m in item.iter_markers() if m.name in tagged for t in tagged[m.name]}
        (dropped if wanted and target not in wanted else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# ---------------------------------------------------------------------- pre-flight


def pytest_collection_finish(session: pytest.Session) -> None:
    problems = preflight(session)
    if problems:
        raise pytest.UsageError(
            "drdrill pre-flight failed; nothing was run and no fault injected:\n  " + "\n  ".join(problems))
    plan_file = session.config.getoption("--drdrill-plan")
    if plan_file:
        refused = write_plan(session, Path(plan_file))
        pytest.exit(f"dry run: plan written to {plan_file}; nothing was run",
                    returncode=pytest.ExitCode.USAGE_ERROR if refused else pytest.ExitCode.OK)


def _scenarios(session: pytest.Session) -> Iterator[tuple[pytest.Item, Any]]:
    """(item, rendered pytest-bdd scenario) of every selected scenario (outline examples filled in)."""
    from pytest_bdd.scenario import scenario_wrapper_template_registry

    for item in session.items:
        template = scenario_wrapper_template_registry.get(getattr(item, "obj", None))
        if template is None:
            continue
        example = item.callspec.params.get("_pytest_bdd_example", {}) if hasattr(item, "callspec") else {}
        yield item, template.render(example)


def _scenario_experiments(session: pytest.Session) -> list[tuple[str, str, str]]:
    """(scenario name, feature file:line, experiment name) of every selected scenario that runs one."""
    import parse

    pattern = parse.compile(EXPERIMENT_STEP)
    found = []
    for _, scenario in _scenarios(session):
        for step in scenario.steps:
            match = pattern.search(step.name)
            if match:
                found.append((scenario.name, f"{scenario.feature.filename}:{step.line_number}", match["name"]))
    return found


def write_plan(session: pytest.Session, path: Path) -> bool:
    """The dry run: what every selected scenario's experiment would do on the target (its
    :meth:`~drdrill.targets.Target.plan`), as JSON in ``path``; True if the target refused something."""
    from drdrill.chaos.runner import find_experiment, load_experiment

    config = session.config
    target = session_target(config)
    plans = []
    refused_all = target.session_problems()
    if refused_all:
        plans.append({"scenario": "(every scenario)", "where": "", "experiment": "", "lines": [],
                      "problems": refused_all})  # fmt: skip
    refused = bool(refused_all)
    for scenario, where, name in _scenario_experiments(session):
        experiment_path = find_experiment(name, experiment_dirs(config))
        experiment = load_experiment(experiment_path)
        entry = {"scenario": scenario, "where": where, "experiment": str(experiment_path)}
        if refused_all:  # nothing is planned against a target that refuses every scenario
            entry["lines"], entry["problems"] = activity_lines(experiment), []
        else:
            entry["lines"], entry["problems"] = target.plan(experiment)
        refused = refused or bool(entry["problems"])
        plans.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"target": target.name, "refused": refused, "scenarios": plans}, indent=2))
    return refused


def preflight(session: pytest.Session) -> list[str]:
    """Undefined steps and unknown or invalid experiments among the selected scenarios."""
    import parse
    from pytest_bdd.compat import getfixturedefs
    from pytest_bdd.scenario import inject_fixturedefs_for_step
    from pytest_bdd.steps import get_step_fixture_name

    from drdrill import runbook
    from drdrill.chaos.runner import find_experiment, load_experiment

    problems: list[str] = []
    try:
        experiment_problems = session_target(session.config).static_problems
    except DrdrillError as exc:
        return [str(exc)]
    seen: set[str] = set()
    experiment_pattern = parse.compile(EXPERIMENT_STEP)
    manual_pattern = parse.compile(MANUAL_STEP)
    dirs = experiment_dirs(session.config)
    manager = session._fixturemanager
    for item, scenario in _scenarios(session):
        feature_path = scenario.feature.filename
        for step in scenario.steps:
            where = f"{feature_path}:{step.line_number}"
            with inject_fixturedefs_for_step(step=step, fixturemanager=manager, node=item):
                defined = getfixturedefs(manager, get_step_fixture_name(step=step), item)
            if not defined and where not in seen:
                seen.add(where)
                problems.append(f"{where}: undefined step: {step.keyword} {step.name}")
            manual = manual_pattern.search(step.name)
            if manual and where not in seen:
                try:
                    runbook.manual_steps({"runbook_manual": manual["steps"]})
                except DrdrillError as exc:
                    seen.add(where)
                    problems.append(f"{where}: {exc}")
            match = experiment_pattern.search(step.name)
            if match and where not in seen:
                seen.add(where)
                try:
                    path = find_experiment(match["name"], dirs)
                    experiment = load_experiment(path)
                except DrdrillError as exc:
                    problems.append(f"{where}: {exc}")
                    continue
                problems += [f"{where}: {path}: {p}" for p in experiment_problems(experiment)]
    return problems


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def drdrill_config(pytestconfig: pytest.Config):
    """The drill config (services, objectives, recovery window)."""
    return load_config(pytestconfig.getoption("--drdrill-config"))


@pytest.fixture(scope="session")
def drdrill_target(pytestconfig: pytest.Config):
    """The platform under test, started for the session and stopped after it."""
    target = session_target(pytestconfig).start()
    try:
        yield target
    finally:
        target.stop()


def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature: Any, scenario: Any) -> None:
    request.node.stash[_SCENARIO] = scenario.name


_SCENARIO = pytest.StashKey[str]()


def _alluredir(config: pytest.Config) -> Path | None:
    value = getattr(config.option, "allure_report_dir", None)
    return Path(value) if value else None


@pytest.fixture(scope="session")
def _allure_environment(pytestconfig: pytest.Config, drdrill_target) -> None:
    """Allure's environment (target, topology, versions, git revision) and categories, once a session."""
    alluredir = _alluredir(pytestconfig)
    if alluredir is None:
        return
    from drdrill.report.allure_results import environment, write_categories, write_environment

    package = Path(__file__).resolve().parent  # drdrill's own revision, wherever the features are
    write_environment(alluredir, environment(drdrill_target, package))
    write_categories(alluredir)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Each scenario's Allure result is copied into its run directory (``drdrill report`` rebuilds from it)."""
    alluredir = _alluredir(session.config)
    if alluredir is not None and alluredir.is_dir():
        from drdrill.report.allure_results import store_results

        try:
            store_results(alluredir)
        except OSError as exc:  # the drill's verdicts stand without the copy
            log.warning("could not store the Allure results in the run directories: %s", exc)


def runbook_url(config: pytest.Config, step: str = "") -> str:
    """The runbook's address for Allure links (ini ``drdrill_runbook_url``), at ``step`` if given."""
    base = config.getini("drdrill_runbook_url") or (config.rootpath / "docs" / "runbook.md").as_uri()
    return f"{base}#{step}" if step else base


@pytest.fixture
def drill(request: pytest.FixtureRequest, drdrill_target, drdrill_config, _allure_environment):
    """One drill per scenario, with its own run directory; always closed (traffic stopped, results written)."""
    from drdrill.drill import Drill

    scenario = request.node.stash.get(_SCENARIO, request.node.name)
    runs_dir = Path(request.config.getoption("--drdrill-runs-dir"))
    if not runs_dir.is_absolute():
        runs_dir = request.config.rootpath / runs_dir
    run = RunDir.create(runs_dir, scenario, drdrill_config, target=drdrill_target.name,
                        nodeid=request.node.nodeid)
    current = Drill(drdrill_target, drdrill_config, run, experiment_dirs(request.config))
    _allure_parameter("run directory", str(run.path))
    _label_scenario(request, scenario)
    try:
        yield current
    finally:
        result = current.close()
        _attach_run(run, result, current, request.config)
    failed = run.failed_rollbacks()
    if failed:  # the verdicts stand; the platform may not be restored for the next scenario
        from drdrill.errors import TargetError

        raise TargetError(f"rollback failed in {run.path}: {'; '.join(failed)}; the platform may "
                          "not be restored: check it (drdrill mirror status) before the next drill")


# ---------------------------------------------------------------------- verdicts


def require(result: CheckResult) -> CheckResult:
    """Attach ``result`` and turn it into the step's outcome (see the module docstring)."""
    _attach_text(f"verdict {result.name}", _render(result))
    if result.validity is Validity.INVALID:
        kind = DataLost if result.name.startswith(("rpo", "lost")) else ObjectiveMissed
        raise kind(" ".join(result.explanation) or f"{result.name} is invalid")
    if result.validity is Validity.UNKNOWN:
        raise Indeterminate(" ".join(result.explanation) or f"{result.name} is unknown")
    return result


def _render(result: CheckResult) -> str:
    lines = [f"{result.name}: {result.validity.value.upper()}", *result.explanation, "",
             "metrics: " + json.dumps(result.metrics, indent=2, default=str)]
    if result.evidence:
        lines += ["evidence: " + json.dumps(result.evidence, indent=2, default=str)]
    return "\n".join(lines)


def _allure() -> Any:
    try:
        import allure
    except ImportError:  # pragma: no cover - allure-pytest-bdd is a dependency
        return None
    return allure


def _allure_parameter(name: str, value: Any) -> None:
    allure = _allure()
    if allure is not None:
        allure.dynamic.parameter(name, value, excluded=True)


def _attach_text(name: str, body: str) -> None:
    allure = _allure()
    if allure is not None:
        allure.attach(body, name=name, attachment_type=allure.attachment_type.TEXT)


def _label_scenario(request: pytest.FixtureRequest, scenario: str) -> None:
    allure = _allure()
    if allure is None:
        return
    from drdrill.report.allure_results import epic

    allure.dynamic.epic(epic(m.name for m in request.node.iter_markers()))
    allure.dynamic.story(scenario)
    allure.dynamic.link(runbook_url(request.config), name="DR runbook")


def _attach_run(run: RunDir, result: CheckResult | None, drill: Any, config: pytest.Config) -> None:
    allure = _allure()
    if allure is None:
        return
    from drdrill.report.allure_results import evidence_tables, measured_parameters, severity

    drill_config = run.config()
    allure.dynamic.label("severity", severity(drill_config, run.meta().get("judgements", [])))
    for path, kind in ((run.results_path, allure.attachment_type.JSON),
                       (run.journal_path, allure.attachment_type.JSON),
                       (run.final_read_path, allure.attachment_type.JSON)):
        if path.is_file() and path.stat().st_size < 20 << 20:
            allure.attach.file(str(path), name=path.name, attachment_type=kind)
    if result is not None:
        summary = "\n".join(_summary_lines(result))
        allure.attach(summary, name="verdicts", attachment_type=allure.attachment_type.TEXT)
        for name, table in evidence_tables(result, drill_config).items():
            kind = allure.attachment_type.TEXT if name == "lost keys" else allure.attachment_type.CSV
            allure.attach(table, name=name, attachment_type=kind)
        for name, value in measured_parameters(result).items():
            _allure_parameter(name, value)
        runbook = _find_result(result, "runbook")
        for row in runbook.evidence.get("steps", []) if runbook is not None else []:
            if row.get("status") != "ok":
                allure.dynamic.link(runbook_url(config, row["step"]), name=f"runbook step {row['step']}")
        try:
            from drdrill.report.timeline import plot_timeline

            history = drill.history()  # the one the verdicts were computed from
            if history.n:
                plot = plot_timeline(history, run.config(), result, run.path / "timeline.png",
                                     title=run.meta().get("scenario", ""))
                allure.attach.file(str(plot), name="timeline", attachment_type=allure.attachment_type.PNG)
        except Exception as exc:  # noqa: BLE001 - a plot must never hide the scenario's verdict
            log.warning("no timeline plot for %s: %s", run.path, exc)


def _find_result(result: CheckResult, name: str) -> CheckResult | None:
    try:
        return result.find(name)
    except KeyError:
        return None


def _summary_lines(result: CheckResult, depth: int = 0) -> list[str]:
    lines = ["  " * depth + result.summary()]
    for child in result.children:
        lines += _summary_lines(child, depth + 1)
    return lines
