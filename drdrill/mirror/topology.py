"""The local mirror's topology: regions, AZs, replicas, component versions and Patroni timings.

A YAML file (default: ``topology.yaml`` beside this module, the DR plan's platform) is read by
:func:`load_topology`, checked against the schema at the end of this module (pydantic, through
:mod:`drdrill.validation`) and built into a frozen :class:`Topology`. Every problem raises
:class:`~drdrill.errors.ConfigError` naming the file and the dotted field, e.g.
``topology.yaml: regions.dr.database[0]: AZ 'd' is not one of the region's azs [a, b, c]``.

Shape (every field but ``regions`` has a default, a field given as nothing counts as absent;
unknown fields are errors; ``services.catalog`` defaults to :mod:`drdrill.catalog`'s services)::

    name: creator-platform
    versions: {postgresql: "15", patroni: "4.1.5", etcd: "3.4", haproxy: "2.6", redis: "7"}
    patroni: {ttl: 10, loop_wait: 2, retry_timeout: 4, synchronous_mode: true,
              use_pg_rewind: true, maximum_lag_on_failover: 1048576}
    network:
      pool: 172.30.0.0/16
      links:   # shaped in the containers' network namespaces (drdrill.mirror.links)
        wan: {delay_ms: 35, jitter_ms: 1, loss_pct: 0, bandwidth: 5gbit}   # between regions
        az:  {delay_ms: 0.5, jitter_ms: 0.1, loss_pct: 0, bandwidth: null} # between a region's AZs
    services:
      command: auto | platform | stub | none
      port: 8080
      health_path: /readyz
      catalog: {payments: {tier: critical, paths: [/payments, /_lookup]}, ...}
    regions:
      primary: {role: primary, weight: 100, azs: [a, b, c], etcd: [a, b, c], database: [a, b],
                redis: regional, replicas: {payments: 2, ...}}
      dr:      {role: dr, weight: 0, azs: [a, b, c], etcd: [a], database: [a], ...}

A link's ``delay_ms`` is one way (a round trip is twice it: both sides are shaped), ``jitter_ms``
spreads it, ``loss_pct`` drops packets (0..100), ``bandwidth`` is a rate with a unit (``5gbit``,
``100mbit``, ``512kbit``; tc's units, :data:`BANDWIDTH_UNITS`) or null for unlimited. A link left
out of ``links`` keeps its default; ``links: {}`` keeps both defaults, a link given as nothing is
unshaped (0 ms, no loss, unlimited).

Exactly one region has role ``primary``; at most one has role ``dr`` (a Patroni standby cluster
replicating from the primary). Region names and AZ names are short lowercase identifiers (they end up
in container names, labels and DNS aliases).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import (
    BeforeValidator,
    Field,
    PlainValidator,
    create_model,
    model_validator,
)

from drdrill.catalog import CATALOG, TIERS
from drdrill.config import read_yaml
from drdrill.errors import ConfigError
from drdrill.validation import (
    Problem,
    Schema,
    boolean,
    choice,
    given,
    integer,
    kind,
    mapping,
    non_empty,
    seconds,
    text,
    validate,
)

__all__ = [
    "BANDWIDTH_UNITS",
    "DEFAULT_LINKS",
    "DEFAULT_TOPOLOGY",
    "LINKS",
    "LinkSpec",
    "SERVICE_COMMANDS",
    "PatroniTimings",
    "Region",
    "ServiceSpec",
    "Topology",
    "bandwidth_bits",
    "load_topology",
    "parse_topology",
]

DEFAULT_TOPOLOGY = Path(__file__).with_name("topology.yaml")
SERVICE_COMMANDS = ("auto", "platform", "stub", "none")
ROLES = ("primary", "dr")
REGIONAL = "regional"
DEFAULT_VERSIONS = {
    "postgresql": "15",
    "patroni": "4.1.5",
    "etcd": "3.4",
    "haproxy": "2.6",
    "redis": "7",
}
DEFAULT_CATALOG = {s.name: {"tier": s.tier, "paths": list(s.paths)} for s in CATALOG}
_NAME = re.compile(r"[a-z][a-z0-9]{0,11}")
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,23}")
_PATH = re.compile(r"/[A-Za-z0-9_./-]*")


# tc's rate units (tc(8) "RATES"): bits or bytes per second, decimal (k = 1000) or IEC (ki = 1024)
BANDWIDTH_UNITS = {
    "bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12,
    "kibit": 2**10, "mibit": 2**20, "gibit": 2**30, "tibit": 2**40,
    "bps": 8, "kbps": 8 * 10**3, "mbps": 8 * 10**6, "gbps": 8 * 10**9, "tbps": 8 * 10**12,
}  # fmt: skip
_BANDWIDTH = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
LINKS = ("wan", "az")


def bandwidth_bits(value: Any) -> int:
    """Bits per second of a tc rate string (``5gbit``, ``100mbit``, ``512kbit``); ValueError naming the
    accepted units when it has none or an unknown one."""
    units = ", ".join(BANDWIDTH_UNITS)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a rate with a unit ({units}), e.g. 5gbit; got {kind(value)}")
    match = _BANDWIDTH.fullmatch(str(value).strip().lower())
    if not match or match.group(2) not in BANDWIDTH_UNITS:
        raise ValueError(f"{value!r} is not a rate with a unit; use one of {units}, e.g. 5gbit or 100mbit")
    bits = float(match.group(1)) * BANDWIDTH_UNITS[match.group(2)]
    if bits < 8:
        raise ValueError(f"{value!r} is too small: at least 8bit")
    return int(bits)


@dataclass(frozen=True)
class LinkSpec:
    """How a link is shaped: one-way delay and jitter (ms), loss (%), bandwidth (tc rate or None)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    bandwidth: str | None = None  # e.g. "5gbit"; None: unlimited

    @property
    def rtt_ms(self) -> float:
        """The round trip it makes (both sides are shaped)."""
        return 2 * self.delay_ms

    @property
    def delays(self) -> bool:
        """Whether packets on it are held back or dropped (else at most its bandwidth is limited)."""
        return self.delay_ms > 0 or self.jitter_ms > 0 or self.loss_pct > 0

    def describe(self) -> str:
        parts = [f"{self.delay_ms:g} ms"]
        if self.jitter_ms:
            parts.append(f"±{self.jitter_ms:g} ms")
        if self.loss_pct:
            parts.append(f"{self.loss_pct:g} % loss")
        parts.append(self.bandwidth or "unlimited")
        return " ".join(parts)


# Two AWS regions on one continent: ~70 ms RTT (us-east-1 <-> us-west-2 ~65-70 ms in AWS's own
# inter-region latency dashboard, the Network Manager "Infrastructure Performance" page, and
# cloudping.co); 5 Gbit/s is EC2's per-flow limit outside a cluster placement group and its
# inter-region limit for instances under 32 vCPUs ("Amazon EC2 instance network bandwidth").
# Between AZs of one region: under 1 ms RTT (AWS: "single-digit millisecond", typically ~0.5-1 ms).
DEFAULT_LINKS = {
    "wan": LinkSpec(delay_ms=35.0, jitter_ms=1.0, loss_pct=0.0, bandwidth="5gbit"),
    "az": LinkSpec(delay_ms=0.5, jitter_ms=0.1, loss_pct=0.0, bandwidth=None),
}


@dataclass(frozen=True)
class PatroniTimings:
    """Patroni's DCS timings (seconds) and replication mode, for every cluster of the mirror."""

    ttl: int = 10
    loop_wait: int = 2
    retry_timeout: int = 4
    synchronous_mode: bool = True
    use_pg_rewind: bool = True
    maximum_lag_on_failover: int = 1048576

    # Patroni 4 raises ttl < 20 to 20 and retry_timeout < 3 to 3 ("can't be smaller than ...").
    PATRONI_MIN_TTL = 20

    @property
    def effective_ttl(self) -> int:
        """The leader key TTL Patroni really uses: a crashed leader is replaced after about this."""
        return max(self.ttl, self.PATRONI_MIN_TTL)


@dataclass(frozen=True)
class ServiceSpec:
    """A platform service: its tier and the URL path prefixes the ALB routes to it."""

    name: str
    tier: str
    paths: tuple[str, ...]


@dataclass(frozen=True)
class Region:
    """One region: its AZs and where etcd, the Patroni members, Redis and the replicas run."""

    name: str
    role: str  # primary | dr
    weight: int  # global entry weight, 0..256
    azs: tuple[str, ...]
    etcd: tuple[str, ...]  # one etcd member per entry, by AZ
    database: tuple[
        str, ...
    ]  # one Patroni member per entry, by AZ; the first is the initial leader
    redis: str  # an AZ, or "regional"
    replicas: Mapping[str, int]  # service -> replica count

    def placement(self, service: str, index: int) -> str:
        """The AZ of replica ``index`` (0-based) of ``service``: round robin, offset per service."""
        names = sorted(self.replicas)
        offset = names.index(service) if service in names else 0
        return self.azs[(offset + index) % len(self.azs)]


@dataclass(frozen=True)
class Topology:
    """The whole mirror: regions, services, versions, Patroni timings; where it was read from."""

    name: str
    regions: tuple[Region, ...]
    services: tuple[ServiceSpec, ...]
    service_command: str = "auto"
    service_port: int = 8080
    health_path: str = "/readyz"
    versions: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_VERSIONS))
    patroni: PatroniTimings = PatroniTimings()
    network_pool: str = "172.30.0.0/16"
    links: Mapping[str, LinkSpec] = field(default_factory=lambda: dict(DEFAULT_LINKS))
    source: str = "<memory>"

    @property
    def primary(self) -> Region:
        return next(r for r in self.regions if r.role == "primary")

    @property
    def dr(self) -> Region | None:
        return next((r for r in self.regions if r.role == "dr"), None)

    def region(self, name: str) -> Region:
        for region in self.regions:
            if region.name == name:
                return region
        raise ConfigError(
            f"{self.source}: no region {name!r}; regions are {[r.name for r in self.regions]}"
        )

    def service(self, name: str) -> ServiceSpec:
        for service in self.services:
            if service.name == name:
                return service
        raise ConfigError(
            f"{self.source}: no service {name!r}; services are {[s.name for s in self.services]}"
        )


def load_topology(path: str | os.PathLike[str] | None = None) -> Topology:
    """Read and validate a topology file (default: the DR plan's, beside this module)."""
    path = Path(path) if path is not None else DEFAULT_TOPOLOGY
    return parse_topology(read_yaml(path, "topology"), source=str(path))


def parse_topology(data: Any, source: str = "<memory>") -> Topology:
    """Validate a topology already parsed from YAML (a mapping); ConfigError naming source and field."""
    schema = validate(_TopologySchema, data, source)
    services = tuple(
        ServiceSpec(name=name, tier=entry.tier, paths=entry.paths or (f"/{name}",))
        for name, entry in schema.services.catalog.items()
    )
    return Topology(
        name=schema.name,
        regions=tuple(_region(name, body, services) for name, body in schema.regions.items()),
        services=services,
        service_command=schema.services.command,
        service_port=schema.services.port,
        health_path=schema.services.health_path,
        versions=schema.versions.model_dump(),
        patroni=PatroniTimings(**schema.patroni.model_dump()),
        network_pool=schema.network.pool,
        links=MappingProxyType({
            name: LinkSpec(**link.model_dump()) if link is not None else LinkSpec()
            for name, link in schema.network.links.items()
        }),
        source=source,
    )


def _region(name: str, body: _RegionSchema, services: tuple[ServiceSpec, ...]) -> Region:
    """A validated region with the defaults that depend on its name, role, AZs and the services."""
    role = _role(name, body)
    return Region(
        name=name,
        role=role,
        weight=body.weight if body.weight is not None else (100 if role == "primary" else 0),
        azs=body.azs,
        etcd=body.etcd or body.azs,
        database=body.database or body.azs[:2],
        redis=body.redis,
        replicas={
            s.name: body.replicas.get(s.name, 1 if role == "primary" else 0) for s in services
        },
    )


def _role(name: str, body: _RegionSchema) -> str:
    return body.role or ("primary" if name == "primary" else "dr")


# ------------------------------------------------------------------------------------ the schema


def _region_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value in ("global", "wan"):
        raise Problem("region names are 1-12 lowercase letters/digits, not 'global' or 'wan'")
    return value


def _az_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise Problem("expected a non-empty list of AZ names")
    azs = tuple(_item(text(_NAME), az, i) for i, az in enumerate(value))
    if len(set(azs)) != len(azs) or REGIONAL in azs:
        raise Problem(f"AZ names must be unique and not {REGIONAL!r}")
    return azs


def _az_list(value: Any) -> tuple[str, ...]:
    """AZs by name, one entry per member (``a`` alone counts as ``[a]``)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise Problem(f"expected a list of AZs, got {kind(value)}")
    if not value:
        raise Problem("needs at least 1 entry")
    return tuple(_item(text(), az, i) for i, az in enumerate(value))


def _paths(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise Problem("expected a non-empty list of URL path prefixes")
    return tuple(_item(text(_PATH), path, i) for i, path in enumerate(value))


def _item(check: PlainValidator, value: Any, index: int) -> Any:
    try:
        return check.func(value)  # type: ignore[call-arg]
    except Problem as problem:
        raise Problem(str(problem), index, *problem.at) from None


def _network_pool(value: Any) -> str:
    pool = text().func(value)  # type: ignore[call-arg]
    try:
        net = ipaddress.IPv4Network(pool)
    except ValueError as exc:
        raise Problem(f"not an IPv4 network: {exc}") from exc
    if net.prefixlen > 22:
        raise Problem(f"{pool} is too small: needs room for several /24s")
    if not net.is_private:
        raise Problem(f"{pool} is not a private range")
    return str(net)


_VersionsSchema = create_model(
    "VersionsSchema",
    __base__=Schema,
    **{key: (Annotated[str, text()], default) for key, default in DEFAULT_VERSIONS.items()},
)


class _PatroniSchema(Schema):
    ttl: Annotated[int, integer(2, 3600)] = PatroniTimings.ttl
    loop_wait: Annotated[int, integer(1, 600)] = PatroniTimings.loop_wait
    retry_timeout: Annotated[int, integer(1, 600)] = PatroniTimings.retry_timeout
    synchronous_mode: Annotated[bool, boolean()] = PatroniTimings.synchronous_mode
    use_pg_rewind: Annotated[bool, boolean()] = PatroniTimings.use_pg_rewind
    maximum_lag_on_failover: Annotated[int, integer(0)] = PatroniTimings.maximum_lag_on_failover

    @model_validator(mode="after")
    def _patroni_timing_rule(self) -> _PatroniSchema:
        needed = self.loop_wait + 2 * self.retry_timeout
        if needed > self.ttl:
            raise Problem(
                f"Patroni needs loop_wait + 2 * retry_timeout <= ttl; "
                f"{self.loop_wait} + 2 * {self.retry_timeout} = {needed} > {self.ttl}",
                "ttl",
            )
        return self


def _bandwidth(value: Any) -> str | None:
    if value is None:
        return None
    try:
        bandwidth_bits(value)
    except ValueError as exc:
        raise Problem(str(exc)) from None
    return str(value).strip().lower().replace(" ", "")


class _LinkSchema(Schema):
    delay_ms: Annotated[float, seconds(lambda v: v >= 0, "expected a one-way delay in ms >= 0")] = 0.0
    jitter_ms: Annotated[float, seconds(lambda v: v >= 0, "expected a jitter in ms >= 0")] = 0.0
    loss_pct: Annotated[float, seconds(lambda v: 0 <= v <= 100, "expected a loss % in 0..100")] = 0.0
    bandwidth: Annotated[str | None, PlainValidator(_bandwidth)] = None


def _links(value: Any) -> Any:
    value = mapping(value)
    if not isinstance(value, dict):
        raise Problem(f"expected a mapping of links ({', '.join(LINKS)}), got {kind(value)}")
    for name in value:
        if name not in LINKS:
            raise Problem(f"unknown link; links are {', '.join(LINKS)}", name)
    return {**{k: asdict(v) for k, v in DEFAULT_LINKS.items()}, **value}


class _NetworkSchema(Schema):
    pool: Annotated[str, PlainValidator(_network_pool)] = "172.30.0.0/16"
    links: Annotated[dict[str, _LinkSchema | None], BeforeValidator(_links)] = Field(
        None, validate_default=True)


class _CatalogEntrySchema(Schema):
    tier: Annotated[str, choice(TIERS)] = "non-critical"
    paths: Annotated[tuple[str, ...], PlainValidator(_paths)] | None = None  # None: [/<name>]


class _ServicesSchema(Schema):
    command: Annotated[str, choice(SERVICE_COMMANDS)] = "auto"
    port: Annotated[int, integer(1, 65535)] = 8080
    health_path: Annotated[str, text(_PATH)] = "/readyz"
    catalog: Annotated[
        dict[Annotated[str, text(_SERVICE_NAME)], _CatalogEntrySchema],
        BeforeValidator(mapping),
        non_empty("needs at least one service"),
    ] = Field(DEFAULT_CATALOG, validate_default=True)

    @model_validator(mode="after")
    def _each_path_routed_once(self) -> _ServicesSchema:
        seen: dict[str, str] = {}
        for name, entry in self.catalog.items():
            for i, path in enumerate(entry.paths or (f"/{name}",)):
                if path in seen:
                    raise Problem(f"{path} is already routed to {seen[path]}",
                                  "catalog", name, "paths", i)  # fmt: skip
                seen[path] = name
        return self


class _RegionSchema(Schema):
    role: Annotated[str, choice(ROLES)] | None = None  # None: the region's name if primary, else dr
    weight: Annotated[int, integer(0, 256)] | None = None  # None: 100 for the primary, else 0
    azs: Annotated[tuple[str, ...], PlainValidator(_az_names)] = ("a", "b", "c")
    etcd: Annotated[tuple[str, ...], PlainValidator(_az_list)] | None = None  # None: one per AZ
    database: Annotated[tuple[str, ...], PlainValidator(_az_list)] | None = None  # None: 2 AZs
    redis: Annotated[str, text()] = REGIONAL
    replicas: Annotated[dict[str, Annotated[int, integer(0, 9)]], BeforeValidator(mapping)] = {}

    @model_validator(mode="after")
    def _placement(self) -> _RegionSchema:
        for part, members, kind_of in (("etcd", self.etcd or self.azs, "etcd"),
                                       ("database", self.database or self.azs[:2], "Patroni")):
            for i, az in enumerate(members):
                if az not in self.azs:
                    raise Problem(f"AZ {az!r} is not one of the region's azs [{', '.join(self.azs)}]",
                                  part, i)  # fmt: skip
            if kind_of == "etcd" and len(members) % 2 == 0:
                raise Problem(f"an etcd cluster needs an odd member count, got {len(members)}", part)
            if len(members) > 9:
                raise Problem(f"at most 9 {kind_of} members", part)
        if self.redis != REGIONAL and self.redis not in self.azs:
            raise Problem(f"{self.redis!r} is neither {REGIONAL!r} nor one of [{', '.join(self.azs)}]",
                          "redis")  # fmt: skip
        return self


class _TopologySchema(Schema):
    name: Annotated[str, text()] = "mirror"
    versions: _VersionsSchema = _VersionsSchema()  # type: ignore[valid-type]
    patroni: _PatroniSchema = _PatroniSchema()
    network: _NetworkSchema = _NetworkSchema()
    services: _ServicesSchema = _ServicesSchema()
    regions: Annotated[
        dict[Annotated[str, PlainValidator(_region_name)], _RegionSchema],
        BeforeValidator(mapping),
        given("missing; a topology needs at least the primary region"),  # before validators: last first
        non_empty("needs at least the primary region"),
    ] = Field(None, validate_default=True)

    @model_validator(mode="after")
    def _regions_fit_together(self) -> _TopologySchema:
        known = list(self.services.catalog)
        for name, region in self.regions.items():
            for service in region.replicas:
                if service not in known:
                    raise Problem(f"unknown service; services.catalog has {', '.join(known)}",
                                  "regions", name, "replicas", service)  # fmt: skip
        roles = [_role(name, region) for name, region in self.regions.items()]
        if roles.count("primary") != 1:
            raise Problem(f"exactly one region must have role primary, found {roles.count('primary')}",
                          "regions")  # fmt: skip
        if roles.count("dr") > 1:
            raise Problem(f"at most one region may have role dr, found {roles.count('dr')}", "regions")
        return self
