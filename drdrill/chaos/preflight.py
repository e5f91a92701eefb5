"""What every target's experiment pre-flight shares: an experiment's activities and configuration.

The local and the AWS pre-flight controls (:mod:`drdrill.chaos.local.control`,
:mod:`drdrill.chaos.aws.control`) read an experiment the same way: its activities by phase
(:func:`activities`), its configuration with drdrill's on top and ``{"type": "env"}`` values read
(:func:`resolved_configuration`), an argument that is a whole ``${key}`` replaced by its literal
value (:func:`literal`); and under a plain ``chaos run`` both join its console and its SIGTERM
handling first (:func:`join_chaostoolkit_run`). Nothing here knows a target.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

__all__ = ["REGION_ARGUMENTS", "activities", "join_chaostoolkit_run", "literal", "resolved_configuration"]

# the provider arguments that name a region of the mirror (checked against the target's regions)
REGION_ARGUMENTS = ("region", "to_region", "upstream", "like", "expect_region")


def literal(value: Any, configuration: Mapping[str, Any]) -> Any:
    """``value`` with a whole ``${key}`` replaced by a literal configuration value (else as is)."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        configured = configuration.get(value[2:-1])
        if configured is not None and not isinstance(configured, Mapping):
            return configured
    return value


def resolved_configuration(experiment: Mapping[str, Any],
                           configuration: Mapping[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The experiment's configuration with ``configuration`` on top and ``{"type": "env"}`` values read."""
    return {
        key: (os.environ.get(value["key"], value.get("default"))
              if isinstance(value, Mapping) and value.get("type") == "env" else value)
        for key, value in {**(experiment.get("configuration") or {}), **(configuration or {})}.items()
    }  # fmt: skip


def join_chaostoolkit_run() -> None:
    """Under a plain ``chaos run``: drdrill's progress lines go to chaostoolkit's console and log, and
    SIGTERM stops the method and rolls back as Ctrl-C does (what every drdrill control does first)."""
    from drdrill.chaos.runner import interrupt_on_sigterm

    interrupt_on_sigterm()
    ours = logging.getLogger("drdrill")
    if not ours.handlers:
        for handler in logging.getLogger("chaostoolkit").handlers:
            ours.addHandler(handler)
        ours.setLevel(logging.INFO)


def activities(experiment: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    return [
        *(("steady-state hypothesis", a) for a in hypothesis.get("probes") or []),
        *(("method", a) for a in experiment.get("method") or []),
        *(("rollbacks", a) for a in experiment.get("rollbacks") or []),
    ]
