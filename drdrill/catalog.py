"""The platform's service catalogue: its five services, their tiers, data classes, routes and probes.

The one place the reference creator platform is written out. Everything else that names a service
derives from :data:`CATALOG`: the drill config's defaults (:mod:`drdrill.config`, which
``drdrill.yaml`` can override), the mirror topology's default routes (:mod:`drdrill.mirror.topology`),
the platform services in the node image (:mod:`drdrill.mirror.platform`), the ground-truth service
(:mod:`drdrill.testing.groundtruth`), the synthetic traffic, the mirror's probes and the chaos
actions' default "critical services".

Terms: ``tier`` (``critical`` | ``non-critical``) picks a service's RTO objective; ``data class``
(``financial`` | ``other``) picks the RPO objective of its writes (see :mod:`drdrill.config`).

Pure Python with no dependency beyond the standard library: the node image build copies this file
beside the platform package (``drdrill/mirror/images.py``, ``_platform_files``), where it runs under
the image's own Python.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CATALOG",
    "CRITICAL_SERVICES",
    "DATA_CLASSES",
    "HEALTH_PATHS",
    "LOOKUP_PATH",
    "SERVICES",
    "TIERS",
    "WRITE_SERVICES",
    "PlatformService",
    "platform_service",
]

TIERS = ("critical", "non-critical")
DATA_CLASSES = ("financial", "other")
# Every service answers it; routed to payments by the mirror's ALB (see the payments entry).
LOOKUP_PATH = "/_lookup"


@dataclass(frozen=True)
class PlatformService:
    """One service of the reference platform."""

    name: str
    tier: str  # one of TIERS: which RTO objective it is judged against
    data_class: str  # one of DATA_CLASSES: which RPO objective its writes are judged against
    paths: tuple[str, ...]  # URL path prefixes the ALB routes to it
    # A GET its replicas answer: any status below 500 carrying X-Served-By means the service itself
    # answered (the ALB's and the global entry's own 503s carry no X-Served-By).
    health_path: str
    writes: bool  # stores client-keyed writes (returned by GET /_lookup, checked for loss)


CATALOG: tuple[PlatformService, ...] = (
    PlatformService("payments", "critical", "financial", ("/payments", LOOKUP_PATH),
                    "/payments/_pending", writes=True),
    PlatformService("auth", "critical", "other", ("/auth",), "/auth/sessions/health-check", writes=False),
    PlatformService("users", "critical", "other", ("/users",), "/users/1", writes=True),
    PlatformService("storefront", "non-critical", "other", ("/storefront",), "/storefront", writes=False),
    PlatformService("analytics", "non-critical", "other", ("/analytics",), "/analytics/events", writes=True),
)  # fmt: skip

SERVICES = tuple(s.name for s in CATALOG)
WRITE_SERVICES = tuple(s.name for s in CATALOG if s.writes)
CRITICAL_SERVICES = tuple(s.name for s in CATALOG if s.tier == "critical")
HEALTH_PATHS = {s.name: s.health_path for s in CATALOG}


def platform_service(name: str) -> PlatformService:
    """The catalogue entry of service ``name``; ValueError naming the known ones otherwise."""
    for service in CATALOG:
        if service.name == name:
            return service
    raise ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
