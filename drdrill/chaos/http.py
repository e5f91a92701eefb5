"""What the platform's users see over HTTP, for every target: the user view and the steps built on it.

Both chaos providers (:mod:`drdrill.chaos.local` through the local mirror's global entry,
:mod:`drdrill.chaos.aws` through the AWS mirror's public endpoint) and the targets' health checks
ask the same question the same way — "is a user of ``base_url`` served by each service now?" —
so it is answered once, here, with nothing but HTTP (no Docker, no AWS):

``user_view(base_url)``              per service: ``served`` (the service itself answered, below
                                     500, with ``X-Served-By``), ``status``, ``region``
``every_service_served(base_url)``   all of them served now
``wait_until_served(base_url)``      every service served for ``stable_s`` in a row; not by
                                     ``timeout_s``: ``served`` false (never raises: the steady-state
                                     check after the method then deviates, and the report names the
                                     services still down from the returned ``view``)
``detect_outage(base_url)``          the runbook's monitoring: a service failing ``consecutive``
                                     checks in a row; none by ``timeout_s``: TargetError
``services_down(base_url)``          the services not served now

The providers' actions of the same names are thin wrappers that find their ``base_url``.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from drdrill import catalog
from drdrill.errors import TargetError, WaitTimeout
from drdrill.waiting import wait_until

__all__ = [
    "CRITICAL",
    "HEALTH_PATHS",
    "detect_outage",
    "every_service_served",
    "services_down",
    "user_view",
    "wait_until_served",
]

log = logging.getLogger("drdrill")

# A GET per service that its replicas answer: any status below 500 carrying X-Served-By means the
# service itself answered (a load balancer's or the global entry's own 503s carry no X-Served-By).
# (drdrill.catalog.PlatformService.health_path).
HEALTH_PATHS = catalog.HEALTH_PATHS
CRITICAL = list(catalog.CRITICAL_SERVICES)


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


def every_service_served(base_url: str, services: list[str] | None = None) -> bool:
    """Whether a user of ``base_url`` is served by every service in ``services`` (default: all) now."""
    return all(v["served"] for v in user_view(base_url, services).values())


def services_down(base_url: str, services: list[str] | None = None) -> list[str]:
    """The services in ``services`` (default: all) a user of ``base_url`` is not served by now."""
    return [s for s, v in user_view(base_url, services).items() if not v["served"]]


def wait_until_served(base_url: str, services: list[str] | None = None, stable_s: float = 10.0,
                      timeout_s: float = 300.0, interval_s: float = 0.5) -> dict[str, Any]:  # fmt: skip
    """Wait until every service (default: all) has been served through ``base_url`` for ``stable_s``.

    ``{"served": True, "served_after_s": S, "view": ...}``; not served by ``timeout_s``: ``served``
    false and ``served_after_s`` None (the steady-state check then deviates).
    """
    t0 = time.monotonic()
    seen: dict[str, Any] = {"since": None, "view": {}}

    def stable() -> bool:
        seen["view"] = view = user_view(base_url, services)
        now = time.monotonic()
        if not all(v["served"] for v in view.values()):
            seen["since"] = None
            return False
        seen["since"] = seen["since"] if seen["since"] is not None else now
        return now - seen["since"] >= stable_s

    try:
        wait_until(stable, timeout_s=timeout_s, interval_s=interval_s,
                   what=f"every service served through {base_url} for {stable_s:g} s")  # fmt: skip
    except WaitTimeout:
        log.warning("[wait] not every service served after %.0f s: %s", timeout_s, seen["view"])
        return {"served": False, "served_after_s": None, "view": seen["view"]}
    since = seen["since"]
    log.info("[wait] every service served for %g s (%.1f s after the wait began)", stable_s, since - t0)
    return {"served": True, "served_after_s": round(since - t0, 3), "view": seen["view"]}


def detect_outage(base_url: str, services: list[str] | None = None, consecutive: int = 3,
                  interval_s: float = 1.0, timeout_s: float = 120.0,
                  check_timeout_s: float = 3.0) -> dict[str, Any]:  # fmt: skip
    """Monitoring: wait until a service (default: the critical ones) fails ``consecutive`` checks in a
    row through ``base_url``; ``{"detected_after_s", "down"}``. None by ``timeout_s``: TargetError."""
    services = services or CRITICAL
    failing = dict.fromkeys(services, 0)
    t0 = time.monotonic()

    def down() -> list[str]:
        for svc, seen in user_view(base_url, services, timeout_s=check_timeout_s).items():
            failing[svc] = 0 if seen["served"] else failing[svc] + 1
        return [s for s, n in failing.items() if n >= consecutive]

    try:
        found = wait_until(down, timeout_s=timeout_s, interval_s=interval_s,
                           what=f"an outage of {', '.join(services)}")  # fmt: skip
    except WaitTimeout as exc:
        raise TargetError(f"no outage of {', '.join(services)} detected through {base_url} within "
                          f"{timeout_s:.0f} s; not declaring a disaster") from exc  # fmt: skip
    log.info("[runbook] outage detected: %s failed %d checks in a row", ", ".join(found), consecutive)
    return {"detected_after_s": round(time.monotonic() - t0, 3), "down": found}
