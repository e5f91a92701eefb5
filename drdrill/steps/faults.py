"""Steps that inject faults: run a Chaos Toolkit experiment, then wait for the platform to recover."""

from __future__ import annotations

from pytest_bdd import parsers, when

from drdrill.pytest_plugin import EXPERIMENT_STEP


@when(parsers.parse(EXPERIMENT_STEP))
def _(drill, name: str):
    """Run the experiment (a file in experiments/) with rollbacks always, also on Ctrl-C.

    Example: ``When the experiment "database-leader-crash" runs``
    """
    drill.run_experiment(name)  # with what the Given steps set (manual steps, outage length)


@when("the platform has recovered")
def _(drill):
    """Traffic keeps flowing until the target is healthy plus one recovery window; then the final read.

    Example: ``When the platform has recovered``
    """
    drill.wait_recovered()
    drill.finish()
