"""Steps about the platform under test and how the drill treats it: health, manual steps, outage length."""

from __future__ import annotations

from pytest_bdd import given, parsers

from drdrill import runbook
from drdrill.pytest_plugin import MANUAL_STEP


@given("the platform under test is healthy")
def _(drill):
    """The target answers its health check (waits up to 60 s).

    Example: ``Given the platform under test is healthy``
    """
    drill.wait_healthy()


@given(parsers.parse(MANUAL_STEP))
def _(drill, steps: str):
    """These runbook steps wait for an operator (``drdrill runbook done STEP``); comma-separated.

    Example: ``Given the runbook steps "declare, dns" are manual``
    """
    runbook.manual_steps({"runbook_manual": steps})  # an unknown step fails here, before any fault
    drill.experiment_overrides["runbook_manual"] = steps


@given(parsers.parse("the outage lasts {seconds:g} seconds"))
def _(drill, seconds: float):
    """How long a fault nobody repairs stays in place before the rollback (``outage_s``).

    Example: ``Given the outage lasts 20 seconds``
    """
    drill.experiment_overrides["outage_s"] = seconds
