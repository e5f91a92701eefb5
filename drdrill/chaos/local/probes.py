"""Chaos Toolkit probes of the local mirror (nouns): what is true of it now, for steady-state hypotheses.

The mirror is found as the actions find it (the ``mirror_state`` configuration, else
``$DRDRILL_MIRROR_STATE`` or ``reports/mirror/state.json``). Probes only read.
"""

from __future__ import annotations

from chaoslib.types import Configuration, Secrets

from drdrill.mirror import health, patroni, probes, sql
from drdrill.mirror.state import MirrorState, load_state

__all__ = [
    "every_service_served",
    "mirror_problems",
    "patroni_leader",
    "replication_lag_bytes",
    "serving_database_writable",
    "serving_region",
]


def _state(configuration: Configuration) -> MirrorState:
    return load_state((configuration or {}).get("mirror_state") or None)


def every_service_served(services: list[str] | None = None, configuration: Configuration = None,
                         secrets: Secrets = None) -> bool:  # fmt: skip
    """Whether a user reaching the global entry is served by every service (default: all) now."""
    view = probes.user_view(_state(configuration).global_http, services)
    return all(v["served"] for v in view.values())


def serving_region(configuration: Configuration = None, secrets: Secrets = None) -> str | None:
    """The region whose ALB answers through the global entry now (None: none does)."""
    return probes.serving_region(_state(configuration))


def serving_database_writable(configuration: Configuration = None, secrets: Secrets = None) -> bool:
    """Whether the database of the region serving users is writable."""
    state = _state(configuration)
    region = probes.serving_region(state)
    return region is not None and sql.writable(state, region)


def mirror_problems(configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Why the mirror is not in its healthy steady state ([] when it is)."""
    return health.problems(_state(configuration))


def patroni_leader(region: str = "primary", configuration: Configuration = None,
                   secrets: Secrets = None) -> str | None:  # fmt: skip
    """The Patroni member holding ``region``'s leader lock (None without one)."""
    return patroni.leader(_state(configuration), region)


def replication_lag_bytes(region: str = "dr", configuration: Configuration = None,
                          secrets: Secrets = None) -> int | None:  # fmt: skip
    """Bytes of WAL ``region``'s standby cluster has not replayed yet (None: not streaming)."""
    lag = sql.replication_lag(_state(configuration)).get(region) or {}
    return lag.get("bytes")
