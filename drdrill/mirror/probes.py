"""Probes of the local mirror (nouns, chaostoolkit-aws style): what is true of it right now.

``service_health(state, region=None)``  per region and service: replicas the state expects, how many
                                        the regional ALB sees UP, and whether at least one is
``serving_region(state)``               the region whose ALB answers through the global entry
``user_view(state)``                    per service: whether a user reaching the global entry is
                                        served now (a GET of :data:`HEALTH_PATHS`), by which region

The Patroni cluster is :mod:`drdrill.mirror.patroni`'s, SQL (writable, replication lag)
:mod:`drdrill.mirror.sql`'s, and "is the mirror healthy" :mod:`drdrill.mirror.health`'s.
Every probe only reads (HTTP on 127.0.0.1).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from drdrill.errors import TargetError
from drdrill.mirror.state import MirrorState, load_state

__all__ = ["HEALTH_PATHS", "service_health", "serving_region", "user_view"]


# A GET per service that its replicas answer: any status below 500 carrying X-Served-By means the
# service itself answered (the ALB's and the global entry's own 503s carry no X-Served-By).
HEALTH_PATHS = {
    "payments": "/payments/_pending",
    "auth": "/auth/sessions/health-check",
    "users": "/users/1",
    "storefront": "/storefront",
    "analytics": "/analytics/events",
}


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


def user_view(
    base_url: str, services: list[str] | None = None, timeout_s: float = 3.0
) -> dict[str, dict[str, Any]]:
    """service -> {"served", "status", "region"}: what a user of ``base_url`` (the global entry) gets now."""
    names = list(services or HEALTH_PATHS)
    unknown = [s for s in names if s not in HEALTH_PATHS]
    if unknown:
        raise TargetError(f"no service {unknown[0]!r}; services are {', '.join(HEALTH_PATHS)}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def look(svc: str) -> tuple[str, dict[str, Any]]:
        status: int | None
        try:
            with opener.open(base_url + HEALTH_PATHS[svc], timeout=timeout_s) as response:
                status, headers = response.status, response.headers
        except urllib.error.HTTPError as exc:
            status, headers = exc.code, exc.headers
        except OSError:
            status, headers = None, None
        served = bool(status is not None and status < 500 and headers
                      and headers.get("X-Served-By"))  # fmt: skip
        region = headers.get("X-Drdrill-Region") if headers else None
        return svc, {"served": served, "status": status, "region": region}

    with ThreadPoolExecutor(max_workers=len(names)) as pool:  # a hung region costs one timeout
        return dict(pool.map(look, names))
