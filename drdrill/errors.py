"""drdrill's exceptions: one tree, so callers can catch exactly what they mean.

    DrdrillError                 anything drdrill raises on purpose
    ├── ConfigError              a drill config or objective is malformed (names file and field)
    ├── HistoryError             a history file or run directory cannot be read (names file and line)
    ├── TrafficError             the synthetic traffic could not start, flow or stop
    ├── ExperimentError          an experiment is unknown, malformed or invalid (names the file)
    ├── TargetError              the platform under test cannot be reached or refuses an operation
    │   ├── GuardrailError       the aws target refused to act: account, region, tag or blast radius
    │   └── WaitTimeout          a condition did not hold within its time bound (``.last``: last seen)
    └── RunbookError             a runbook step is unknown, or its operator did not confirm it in time

A drill's verdicts, raised by :func:`drdrill.pytest_plugin.require` in the Then steps. They are not
DrdrillErrors on purpose: they are the platform's results, not drdrill failing, and pytest and
Allure tell them apart by their base (an AssertionError is *failed*, anything else *broken*):

    AssertionError
    ├── ObjectiveMissed          a recovery objective was missed (RTO, a runbook step, the serving
    │                            region, the saga): a product defect
    └── DataLost                 acknowledged writes were lost, or the loss reached past the RPO
    Exception
    └── Indeterminate            the history cannot tell whether the objective was met (UNKNOWN)

Messages say what happened and what to do next.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataLost",
    "DrdrillError",
    "ExperimentError",
    "GuardrailError",
    "HistoryError",
    "Indeterminate",
    "ObjectiveMissed",
    "RunbookError",
    "TargetError",
    "TrafficError",
    "WaitTimeout",
]


class DrdrillError(Exception):
    """Anything drdrill raises on purpose."""


class ConfigError(DrdrillError):
    """A drill config or objective is malformed."""


class HistoryError(DrdrillError):
    """A history file or run directory cannot be read."""


class TrafficError(DrdrillError):
    """The synthetic traffic could not start, flow or stop."""


class ExperimentError(DrdrillError):
    """An experiment is unknown, malformed or invalid."""


class TargetError(DrdrillError):
    """The platform under test cannot be reached or refuses an operation."""


class RunbookError(DrdrillError):
    """A runbook step is unknown, or its operator did not confirm it in time."""


class GuardrailError(TargetError):
    """The aws target refused to act outside its allow-lists, untagged resources or blast radius."""


class WaitTimeout(TargetError):
    """A condition did not hold within its time bound; ``last`` is what its check gave last."""

    def __init__(self, message: str, last: object = None) -> None:
        super().__init__(message)
        self.last = last


class Indeterminate(Exception):
    """The history cannot tell whether the objective was met (a checker said UNKNOWN)."""


class ObjectiveMissed(AssertionError):
    """A recovery objective was missed (RTO, a runbook step, the serving region, the saga)."""


class DataLost(AssertionError):
    """Acknowledged writes were lost, or the loss reached past the RPO objective."""
