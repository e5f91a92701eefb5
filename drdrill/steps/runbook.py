"""Steps that judge the DR runbook: its steps, their timing, and which region serves the users."""

from __future__ import annotations

from pytest_bdd import parsers, then

from drdrill.pytest_plugin import require
from drdrill.runbook import STEPS

STEP = "(?P<step>" + "|".join(STEPS) + ")"


@then("every runbook step succeeded")
def _(drill):
    """Every runbook step that ran succeeded (the RTO breakdown is attached either way).

    Example: ``Then every runbook step succeeded``
    """
    require(drill.judge("runbook", "all", 0, "every runbook step succeeded"))


@then(parsers.re(f'the runbook step "{STEP}" was done within ' + r"(?P<seconds>\d+(?:\.\d+)?) seconds of the fault"))
def _(drill, step: str, seconds: str):
    """The runbook step finished within this many seconds of the fault (operator time included).

    Example: ``Then the runbook step "detect" was done within 30 seconds of the fault``
    """
    require(drill.judge("step", step, float(seconds),
                        f'the runbook step "{step}" was done within {seconds} seconds of the fault'))


@then(parsers.parse('users were served by the "{region}" region after the fault'))
def _(drill, region: str):
    """Every critical service answered users from this region at some point after the fault.

    Example: ``Then users were served by the "dr" region after the fault``
    """
    require(drill.judge("served-by", region, 0, f'users were served by the "{region}" region after the fault'))


@then(parsers.parse('users are served by the "{region}" region at the end'))
def _(drill, region: str):
    """Every critical service's last successful request was answered by this region.

    Example: ``Then users are served by the "primary" region at the end``
    """
    require(drill.judge("serving-at-end", region, 0, f'users are served by the "{region}" region at the end'))
