"""Steps about the platform under test and how the drill treats it: health, manual steps, outage, WAN."""

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


@given(parsers.parse("the WAN between the regions is degraded to {delay_ms:g} ms"))
def _(drill, delay_ms: float):
    """A condition of the whole drill: the WAN's one-way delay (a round trip costs twice it) is
    ``delay_ms`` from now until the drill ends (undone then, also on a failure or Ctrl-C); recorded in
    the history as a steady-state action, so it is not the fault. Local target only.

    Example: ``Given the WAN between the regions is degraded to 150 ms``
    """
    drill.degrade_link("wan", delay_ms=delay_ms)


@given(parsers.parse("the WAN between the regions is degraded to {delay_ms:g} ms with {loss_pct:g} % loss"))
def _(drill, delay_ms: float, loss_pct: float):
    """As above, and ``loss_pct`` % of the packets on the WAN are dropped.

    Example: ``Given the WAN between the regions is degraded to 150 ms with 1 % loss``
    """
    drill.degrade_link("wan", delay_ms=delay_ms, loss_pct=loss_pct)
