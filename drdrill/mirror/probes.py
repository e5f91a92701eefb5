"""Probes of the local mirror (nouns, chaostoolkit-aws style): what is true of it right now.

``service_health(state, region=None)``  per region and service: replicas the state expects, how many
                                        the regional ALB sees UP, and whether at least one is
``serving_region(state)``               the region whose ALB answers through the global entry

What a user of the global entry sees per service is :mod:`drdrill.chaos.http`'s (``user_view``). The
Patroni cluster is :mod:`drdrill.mirror.patroni`'s, SQL (writable, replication lag)
:mod:`drdrill.mirror.sql`'s, and "is the mirror healthy" :mod:`drdrill.mirror.health`'s.
Every probe only reads (HTTP on 127.0.0.1).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from drdrill.mirror.state import MirrorState, load_state

__all__ = ["service_health", "serving_region"]


def service_health(
    state: MirrorState | None = None, region: str | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """region -> service -> {"replicas", "up", "healthy"} from the regional ALB's checks (/readyz)."""
    state = state or load_state()
    regions = list(state.regions) if region is None else [region]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in regions:
        state.check_region(name)
        services = state.regions[name]["services"]
        try:
            rows = state.admin(name).show_stat()
        except OSError:
            rows = []
        out[name] = {}
        for svc, info in services.items():
            backend = f"svc_{svc.replace('-', '_')}"
            up = sum(
                1
                for r in rows
                if r["pxname"] == backend
                and r["svname"] not in ("FRONTEND", "BACKEND")
                and r["status"] == "UP"
            )
            out[name][svc] = {"replicas": info["replicas"], "up": up, "healthy": up > 0}
    return out


def serving_region(state: MirrorState | None = None, tries: int = 3) -> str | None:
    """The region whose ALB answers through the global entry (its ``X-Drdrill-Region``); None if none."""
    state = state or load_state()
    seen: list[str] = []
    for _ in range(tries):
        try:
            with urllib.request.urlopen(state.global_http + "/", timeout=3.0) as response:
                header = response.headers.get("X-Drdrill-Region")
        except urllib.error.HTTPError as exc:  # the ALB's 404 for "/" still names its region
            header = exc.headers.get("X-Drdrill-Region")
        except OSError:
            header = None
        if header:
            seen.append(header)
    return max(set(seen), key=seen.count) if seen else None


