"""drdrill: chaos and disaster-recovery drills whose recovery time and data loss are measured, not estimated."""

from drdrill.errors import (
    ConfigError,
    DrdrillError,
    ExperimentError,
    HistoryError,
    TargetError,
    TrafficError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DrdrillError",
    "ExperimentError",
    "HistoryError",
    "TargetError",
    "TrafficError",
    "__version__",
]
