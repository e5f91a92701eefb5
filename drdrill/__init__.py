"""drdrill: chaos and disaster-recovery drills whose recovery time and data loss are measured, not estimated."""

from drdrill.errors import (
    ConfigError,
    DataLost,
    DrdrillError,
    ExperimentError,
    GuardrailError,
    HistoryError,
    Indeterminate,
    ObjectiveMissed,
    RunbookError,
    TargetError,
    TrafficError,
    WaitTimeout,
)

__version__ = "0.1.0"

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
    "__version__",
]
