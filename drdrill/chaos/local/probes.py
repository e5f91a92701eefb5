"""Chaos Toolkit probes of the local mirror (nouns): what is true of it now, for steady-state hypotheses.

The mirror is found as the actions find it (the ``mirror_state`` configuration, else
``$DRDRILL_MIRROR_STATE`` or ``reports/mirror/state.json``). Probes only read.
"""

from __future__ import annotations

from chaoslib.types import Configuration, Secrets

from drdrill.chaos import http
from drdrill.mirror import probes, sql
from drdrill.mirror.state import MirrorState, load_state

__all__ = ["every_service_served", "serving_database_writable"]


def _state(configuration: Configuration) -> MirrorState:
    return load_state((configuration or {}).get("mirror_state") or None)


def every_service_served(services: list[str] | None = None, configuration: Configuration = None,
                         secrets: Secrets = None) -> bool:  # fmt: skip
    """Whether a user reaching the global entry is served by every service (default: all) now."""
    return http.every_service_served(_state(configuration).global_http, services)


def serving_database_writable(configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """Whether the database of the region serving users is writable."""
    state = _state(configuration)
    region = probes.serving_region(state)
    return region is not None and sql.writable(state, region)
