"""Steps that inject faults: run a Chaos Toolkit experiment, then wait for the platform to recover."""

from __future__ import annotations

from pytest_bdd import parsers, when

from drdrill.pytest_plugin import EXPERIMENT_STEP


@when(parsers.parse(EXPERIMENT_STEP))
def _(drill, name: str):
    """Run the experiment ``name`` (a file in the experiment directories) with rollbacks always."""
    drill.run_experiment(name)


@when("the platform has recovered")
def _(drill):
    """Traffic keeps flowing until the target is healthy plus one recovery window; then the final read."""
    drill.wait_recovered()
    drill.finish()
