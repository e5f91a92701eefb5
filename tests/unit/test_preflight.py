"""Pre-flight: undefined steps and unknown or invalid experiments stop the drill before any fault."""

from __future__ import annotations

import json
import textwrap

import pytest

FEATURE = """\
Feature: A drill an engineer is writing
  Scenario: database failure
    Given the platform under test is healthy
    And synthetic traffic of 5 users is running
    When the experiment "{experiment}" runs
    And the platform has recovered
    Then the critical services recover within their RTO objective
    And the moon is made of cheese
"""


@pytest.fixture
def drill_project(pytester: pytest.Pytester):
    pytester.makeconftest(textwrap.dedent("""
        pytest_plugins = ["drdrill.pytest_plugin", "drdrill.steps.environment", "drdrill.steps.traffic",
                          "drdrill.steps.faults", "drdrill.steps.objectives"]
    """))
    pytester.makeini(textwrap.dedent("""
        [pytest]
        drdrill_experiment_dirs = experiments
    """))
    pytester.mkdir("experiments")
    pytester.mkdir("features")
    pytester.path.joinpath("features", "test_bind.py").write_text(
        "from pytest_bdd import scenarios\nscenarios('.')\n")
    return pytester


def write_feature(pytester: pytest.Pytester, experiment: str) -> None:
    pytester.path.joinpath("features", "draft.feature").write_text(FEATURE.format(experiment=experiment))


def test_undefined_step_and_unknown_experiment_are_named_before_anything_runs(drill_project):
    write_feature(drill_project, "kill-the-databse")
    drill_project.path.joinpath("experiments", "kill-the-database.json").write_text("{}")
    result = drill_project.runpytest("features", "--drdrill-runs-dir=runs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "drdrill pre-flight failed; nothing was run and no fault injected" in err
    assert "draft.feature:8: undefined step: And the moon is made of cheese" in err
    assert "draft.feature:5: unknown experiment 'kill-the-databse'" in err
    assert "known experiments: kill-the-database" in err
    assert not drill_project.path.joinpath("runs").exists()  # no drill started, no target touched


def test_malformed_experiment_is_named_with_its_line(drill_project):
    write_feature(drill_project, "broken")
    drill_project.path.joinpath("experiments", "broken.json").write_text('{\n  "title": "x",\n  oops\n}\n')
    result = drill_project.runpytest("features", "--drdrill-runs-dir=runs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "broken.json:3:3: not valid JSON" in result.stderr.str()


def test_invalid_experiment_is_named(drill_project):
    write_feature(drill_project, "no-method")
    drill_project.path.joinpath("experiments", "no-method.json").write_text(json.dumps({"title": "t"}))
    result = drill_project.runpytest("features", "--drdrill-runs-dir=runs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "no-method.json: invalid experiment" in result.stderr.str()


def test_unregistered_tag_is_refused_under_strict_markers(drill_project):
    drill_project.path.joinpath("features", "tagged.feature").write_text(
        "Feature: tagged\n  @nightlyy\n  Scenario: s\n    Given the platform under test is healthy\n")
    result = drill_project.runpytest("features", "--strict-markers")
    assert result.ret != pytest.ExitCode.OK
    assert "'nightlyy' not found in `markers` configuration option" in result.stdout.str()


def test_scenarios_tagged_for_another_target_are_deselected(drill_project):
    drill_project.makeini(textwrap.dedent("""
        [pytest]
        drdrill_experiment_dirs = experiments
        markers =
            groundtruth: ground truth only
            mirror: local mirror only
    """))
    drill_project.path.joinpath("features", "targets.feature").write_text(textwrap.dedent("""\
        Feature: targets
          @groundtruth
          Scenario: truth only
            Given the platform under test is healthy
          @mirror
          Scenario: mirror only
            Given the platform under test is healthy
        """))
    result = drill_project.runpytest("features", "--collect-only", "-q", "--drdrill-target=local")
    assert "test_mirror_only" in result.stdout.str() and "test_truth_only" not in result.stdout.str()
    assert "1 deselected" in result.stdout.str()


RUNBOOK_FEATURE = """\
Feature: The annual drill with people in the loop
  Scenario: failover with a manual declaration
    Given the runbook steps "{steps}" are manual
    And the outage lasts 20 seconds
    Then the experiment configuration is {expected}
    And every runbook step succeeded
"""


def test_runbook_steps_reach_the_experiment_configuration(drill_project):
    drill_project.makeconftest(textwrap.dedent("""
        import json
        from pytest_bdd import then, parsers
        pytest_plugins = ["drdrill.pytest_plugin", "drdrill.steps.environment", "drdrill.steps.traffic",
                          "drdrill.steps.faults", "drdrill.steps.objectives", "drdrill.steps.runbook"]

        @then(parsers.parse("the experiment configuration is {expected}"))
        def _(drill, expected):
            assert drill.experiment_overrides == json.loads(expected)
    """))
    drill_project.path.joinpath("features", "draft.feature").write_text(RUNBOOK_FEATURE.format(
        steps="declare, dns", expected=json.dumps({"runbook_manual": "declare, dns", "outage_s": 20})))
    result = drill_project.runpytest("features", "--drdrill-runs-dir=runs", "-p", "no:randomly")
    # the Given steps set the configuration; the runbook judgement has no runbook to judge: broken
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "Indeterminate" in out and "No runbook step ran in this drill" in out
    assert "E       AssertionError" not in out  # the configuration check passed


def test_an_unknown_manual_step_is_refused_before_anything_runs(drill_project):
    drill_project.makeconftest(textwrap.dedent("""
        pytest_plugins = ["drdrill.pytest_plugin", "drdrill.steps.environment", "drdrill.steps.traffic",
                          "drdrill.steps.faults", "drdrill.steps.objectives", "drdrill.steps.runbook"]
    """))
    drill_project.path.joinpath("features", "draft.feature").write_text(RUNBOOK_FEATURE.format(
        steps="declare, dnss", expected="{}"))
    result = drill_project.runpytest("features", "--drdrill-runs-dir=runs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "draft.feature:3: unknown runbook step(s) 'dnss'" in err
    assert "draft.feature:5: undefined step: Then the experiment configuration is {}" in err
    assert not drill_project.path.joinpath("runs").exists()
