"""The local mirror's topology: regions, AZs, replicas, component versions and Patroni timings.

A YAML file (default: ``topology.yaml`` beside this module, the DR plan's platform) is read by
:func:`load_topology` into a frozen :class:`Topology`. Every problem raises
:class:`~drdrill.errors.ConfigError` naming the file and the dotted field, e.g.
``topology.yaml: regions.dr.database[0]: AZ 'd' is not one of the region's azs [a, b, c]``.

Shape (every field but ``regions`` has a default; unknown fields are errors)::

    name: creator-platform
    versions: {postgresql: "15", patroni: "4.1.5", etcd: "3.4", haproxy: "2.6", redis: "7"}
    patroni: {ttl: 10, loop_wait: 2, retry_timeout: 4, synchronous_mode: true,
              use_pg_rewind: true, maximum_lag_on_failover: 1048576}
    network: {pool: 172.30.0.0/16}
    services:
      command: auto | platform | stub | none
      port: 8080
      health_path: /readyz
      catalog: {payments: {tier: critical, paths: [/payments, /_lookup]}, ...}
    regions:
      primary: {role: primary, weight: 100, azs: [a, b, c], etcd: [a, b, c], database: [a, b],
                redis: regional, replicas: {payments: 2, ...}}
      dr:      {role: dr, weight: 0, azs: [a, b, c], etcd: [a], database: [a], ...}

Exactly one region has role ``primary``; at most one has role ``dr`` (a Patroni standby cluster
replicating from the primary). Region names and AZ names are short lowercase identifiers (they end up
in container names, labels and DNS aliases).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from drdrill.catalog import CATALOG, TIERS
from drdrill.errors import ConfigError

__all__ = [
    "DEFAULT_TOPOLOGY",
    "SERVICE_COMMANDS",
    "PatroniTimings",
    "Region",
    "ServiceSpec",
    "Topology",
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
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read topology {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_topology(data, source=str(path))


def parse_topology(data: Any, source: str = "<memory>") -> Topology:
    """Validate a topology already parsed from YAML (a mapping); ConfigError naming source and field."""
    return _Reader(source).topology(data)


class _Reader:
    """Walks the parsed YAML, raising ConfigError("<source>: <field>: <problem>")."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where or '(top level)'}: {problem}")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...] | None = None) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(where, f"keys must be strings, got {key!r}")
            if allowed is not None and key not in allowed:
                raise self.fail(
                    _join(where, key), f"unknown field; expected one of {', '.join(allowed)}"
                )
        return dict(value)

    def integer(self, value: Any, where: str, low: int, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"expected an integer, got {_kind(value)}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self.fail(where, f"must be {bound}, got {value}")
        return value

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"expected true or false, got {_kind(value)}")
        return value

    def string(self, value: Any, where: str, pattern: re.Pattern[str] | None = None) -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # versions written without quotes: 15, 3.4
        if not isinstance(value, str) or not value:
            raise self.fail(where, f"expected a non-empty string, got {_kind(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(where, f"{value!r} is not valid (expected {pattern.pattern})")
        return value

    def choice(self, value: Any, where: str, choices: tuple[str, ...]) -> str:
        value = self.string(value, where)
        if value not in choices:
            raise self.fail(where, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def az_list(
        self, value: Any, where: str, azs: tuple[str, ...], minimum: int
    ) -> tuple[str, ...]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.fail(where, f"expected a list of AZs, got {_kind(value)}")
        if len(value) < minimum:
            raise self.fail(where, f"needs at least {minimum} entr{'y' if minimum == 1 else 'ies'}")
        out = []
        for i, item in enumerate(value):
            az = self.string(item, f"{where}[{i}]")
            if az not in azs:
                raise self.fail(
                    f"{where}[{i}]", f"AZ {az!r} is not one of the region's azs [{', '.join(azs)}]"
                )
            out.append(az)
        return tuple(out)

    # ------------------------------------------------------------------------------------ parts

    def topology(self, data: Any) -> Topology:
        top = self.mapping(
            data,
            "",
            ("name", "versions", "patroni", "network", "services", "regions"),
        )
        name = self.string(top.get("name", "mirror"), "name")
        versions = dict(DEFAULT_VERSIONS)
        for key, value in self.mapping(
            top.get("versions"), "versions", tuple(DEFAULT_VERSIONS)
        ).items():
            versions[key] = self.string(value, f"versions.{key}")
        patroni = self.patroni(top.get("patroni"))
        pool = self.network(top.get("network"))
        services, command, port, health = self.services(top.get("services"))
        if "regions" not in top:
            raise self.fail("regions", "missing; a topology needs at least the primary region")
        regions = self.regions(top["regions"], services)
        return Topology(
            name=name,
            regions=regions,
            services=services,
            service_command=command,
            service_port=port,
            health_path=health,
            versions=versions,
            patroni=patroni,
            network_pool=pool,
            source=self.source,
        )

    def patroni(self, value: Any) -> PatroniTimings:
        defaults = PatroniTimings()
        fields = tuple(defaults.__dataclass_fields__)
        raw = self.mapping(value, "patroni", fields)
        ttl = self.integer(raw.get("ttl", defaults.ttl), "patroni.ttl", 2, 3600)
        loop_wait = self.integer(
            raw.get("loop_wait", defaults.loop_wait), "patroni.loop_wait", 1, 600
        )
        retry = self.integer(
            raw.get("retry_timeout", defaults.retry_timeout), "patroni.retry_timeout", 1, 600
        )
        if loop_wait + 2 * retry > ttl:
            raise self.fail(
                "patroni.ttl",
                f"Patroni needs loop_wait + 2 * retry_timeout <= ttl; "
                f"{loop_wait} + 2 * {retry} = {loop_wait + 2 * retry} > {ttl}",
            )
        return PatroniTimings(
            ttl=ttl,
            loop_wait=loop_wait,
            retry_timeout=retry,
            synchronous_mode=self.boolean(
                raw.get("synchronous_mode", defaults.synchronous_mode), "patroni.synchronous_mode"
            ),
            use_pg_rewind=self.boolean(
                raw.get("use_pg_rewind", defaults.use_pg_rewind), "patroni.use_pg_rewind"
            ),
            maximum_lag_on_failover=self.integer(
                raw.get("maximum_lag_on_failover", defaults.maximum_lag_on_failover),
                "patroni.maximum_lag_on_failover",
                0,
            ),
        )

    def network(self, value: Any) -> str:
        raw = self.mapping(value, "network", ("pool",))
        pool = self.string(raw.get("pool", "172.30.0.0/16"), "network.pool")
        try:
            net = ipaddress.IPv4Network(pool)
        except ValueError as exc:
            raise self.fail("network.pool", f"not an IPv4 network: {exc}") from exc
        if net.prefixlen > 22:
            raise self.fail("network.pool", f"{pool} is too small: needs room for several /24s")
        if not net.is_private:
            raise self.fail("network.pool", f"{pool} is not a private range")
        return str(net)

    def services(self, value: Any) -> tuple[tuple[ServiceSpec, ...], str, int, str]:
        raw = self.mapping(value, "services", ("command", "port", "health_path", "catalog"))
        command = self.choice(raw.get("command", "auto"), "services.command", SERVICE_COMMANDS)
        port = self.integer(raw.get("port", 8080), "services.port", 1, 65535)
        health = self.string(raw.get("health_path", "/readyz"), "services.health_path", _PATH)
        catalog = self.mapping(raw.get("catalog", DEFAULT_CATALOG), "services.catalog")
        if not catalog:
            raise self.fail("services.catalog", "needs at least one service")
        specs = []
        seen_paths: dict[str, str] = {}
        for name, body in catalog.items():
            where = f"services.catalog.{name}"
            self.string(name, where, _SERVICE_NAME)
            body = self.mapping(body, where, ("tier", "paths"))
            tier = self.choice(body.get("tier", "non-critical"), f"{where}.tier", TIERS)
            paths_raw = body.get("paths", [f"/{name}"])
            if not isinstance(paths_raw, list) or not paths_raw:
                raise self.fail(f"{where}.paths", "expected a non-empty list of URL path prefixes")
            paths = []
            for i, path in enumerate(paths_raw):
                path = self.string(path, f"{where}.paths[{i}]", _PATH)
                if path in seen_paths:
                    raise self.fail(
                        f"{where}.paths[{i}]", f"{path} is already routed to {seen_paths[path]}"
                    )
                seen_paths[path] = name
                paths.append(path)
            specs.append(ServiceSpec(name=name, tier=tier, paths=tuple(paths)))
        return tuple(specs), command, port, health

    def regions(self, value: Any, services: tuple[ServiceSpec, ...]) -> tuple[Region, ...]:
        raw = self.mapping(value, "regions")
        if not raw:
            raise self.fail("regions", "needs at least the primary region")
        regions = tuple(self.region(name, body, services) for name, body in raw.items())
        roles = [r.role for r in regions]
        if roles.count("primary") != 1:
            raise self.fail(
                "regions",
                f"exactly one region must have role primary, found {roles.count('primary')}",
            )
        if roles.count("dr") > 1:
            raise self.fail(
                "regions", f"at most one region may have role dr, found {roles.count('dr')}"
            )
        return regions

    def region(self, name: str, value: Any, services: tuple[ServiceSpec, ...]) -> Region:
        where = f"regions.{name}"
        if not _NAME.fullmatch(name) or name in ("global", "wan"):
            raise self.fail(
                where, "region names are 1-12 lowercase letters/digits, not 'global' or 'wan'"
            )
        body = self.mapping(
            value, where, ("role", "weight", "azs", "etcd", "database", "redis", "replicas")
        )
        role = self.choice(
            body.get("role", "primary" if name == "primary" else "dr"), f"{where}.role", ROLES
        )
        weight = self.integer(
            body.get("weight", 100 if role == "primary" else 0), f"{where}.weight", 0, 256
        )
        azs_raw = body.get("azs", ["a", "b", "c"])
        if not isinstance(azs_raw, list) or not azs_raw:
            raise self.fail(f"{where}.azs", "expected a non-empty list of AZ names")
        azs = tuple(self.string(az, f"{where}.azs[{i}]", _NAME) for i, az in enumerate(azs_raw))
        if len(set(azs)) != len(azs) or REGIONAL in azs:
            raise self.fail(f"{where}.azs", f"AZ names must be unique and not {REGIONAL!r}")
        etcd = self.az_list(body.get("etcd", list(azs)), f"{where}.etcd", azs, 1)
        if len(etcd) % 2 == 0:
            raise self.fail(
                f"{where}.etcd", f"an etcd cluster needs an odd member count, got {len(etcd)}"
            )
        if len(etcd) > 9:
            raise self.fail(f"{where}.etcd", "at most 9 etcd members")
        database = self.az_list(body.get("database", list(azs[:2])), f"{where}.database", azs, 1)
        if len(database) > 9:
            raise self.fail(f"{where}.database", "at most 9 Patroni members")
        redis = self.string(body.get("redis", REGIONAL), f"{where}.redis")
        if redis != REGIONAL and redis not in azs:
            raise self.fail(
                f"{where}.redis", f"{redis!r} is neither {REGIONAL!r} nor one of [{', '.join(azs)}]"
            )
        known = [s.name for s in services]
        replicas_raw = self.mapping(body.get("replicas"), f"{where}.replicas")
        replicas = {}
        for service in known:
            count = replicas_raw.get(service, 1 if role == "primary" else 0)
            replicas[service] = self.integer(count, f"{where}.replicas.{service}", 0, 9)
        for service in replicas_raw:
            if service not in known:
                raise self.fail(
                    f"{where}.replicas.{service}",
                    f"unknown service; services.catalog has {', '.join(known)}",
                )
        return Region(
            name=name,
            role=role,
            weight=weight,
            azs=azs,
            etcd=etcd,
            database=database,
            redis=redis,
            replicas=replicas,
        )


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, (int, float, str)):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__
