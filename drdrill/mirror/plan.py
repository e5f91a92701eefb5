"""What the mirror is made of: networks and containers computed from a topology (pure, no Docker).

:func:`plan_mirror` turns a :class:`~drdrill.mirror.topology.Topology`, a mirror id, the subnets
chosen for it and the node image into a :class:`Plan`: the networks and the containers, each with its
command, environment, user, network attachments (static IPs, DNS aliases), ports to publish on
127.0.0.1 and labels. :mod:`drdrill.mirror.lifecycle` creates them; tests inspect them without Docker.
The files the containers are configured with (Patroni's YAML, the HAProxy configs, the stub
service) and the fixed ports and credentials come from :mod:`drdrill.mirror.configs`.

Networks (all bridge networks, no masquerading: containers cannot reach beyond the mirror)::

    drdrill-<id>-wan        links the regions: global entry, every regional ALB, DR Patroni members
    drdrill-<id>-<region>   one per region: etcd, Patroni, ALB, Redis, services

Addresses inside each /24: .1 gateway, .2-.127 static (ALB .2, Redis .3, etcd .10+, Patroni .20+;
on the wan: global entry .2, the regions' ALBs .10+, DR Patroni members .20+), .128-.254 dynamic
(service replicas, found by the ALB through Docker's DNS under their service name).

Labels on everything: ``drdrill.mirror`` (the mirror id), ``drdrill.region`` (a region, or
``global`` for the wan and the global entry), ``drdrill.az`` (an AZ, or ``regional`` for what spans
the region's AZs: the ALB, a regional Redis, the region's network; ``global`` for the wan and global
entry), ``drdrill.role`` (``etcd``, ``postgres``, ``alb``, ``redis``, ``service``, ``dns``,
``network``). Services also carry ``drdrill.service`` and ``drdrill.replica``; Patroni members
``drdrill.member``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from drdrill.mirror.configs import (  # the ports and credentials are re-exported: used mirror-wide
    ADMIN_PORT,
    BIN_DIR,
    DATA_DIR,
    DR_SLOT,
    ETCD_PEER_PORT,
    ETCD_PORT,
    HAPROXY_CMD,
    HTTP_PORT,
    MAX_REPLICAS,
    PATRONI_PORT,
    REDIS_PORT,
    REPLICATION_USER,
    SQL_PORT,
    STUB_SERVICE,
    SUPERUSER,
    alb_config,
    global_config,
    patroni_config,
)
from drdrill.mirror.topology import REGIONAL, Region, Topology

__all__ = [
    "ADMIN_PORT",
    "BIN_DIR",
    "DATA_DIR",
    "DR_SLOT",
    "ETCD_PORT",
    "HTTP_PORT",
    "LABEL",
    "MAX_REPLICAS",
    "PATRONI_PORT",
    "REDIS_PORT",
    "REPLICATION_USER",
    "SQL_PORT",
    "SUPERUSER",
    "Attachment",
    "ContainerSpec",
    "NetworkSpec",
    "Plan",
    "alb_config",
    "global_config",
    "mirror_id_ok",
    "patroni_config",
    "plan_mirror",
]

LABEL = "drdrill.mirror"
LABEL_REGION = "drdrill.region"
LABEL_AZ = "drdrill.az"
LABEL_ROLE = "drdrill.role"
GLOBAL = "global"
WAN = "wan"

_MIRROR_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,19}")


def mirror_id_ok(mirror_id: str) -> bool:
    """Whether ``mirror_id`` can name a mirror (1-20 of a-z, 0-9, '-'; it is in every name)."""
    return bool(_MIRROR_ID.fullmatch(mirror_id))


@dataclass(frozen=True)
class NetworkSpec:
    key: str  # "wan" or a region name
    name: str
    subnet: str
    gateway: str
    ip_range: str  # dynamic addresses
    labels: dict[str, str]


@dataclass(frozen=True)
class Attachment:
    network: str  # a NetworkSpec key
    ip: str | None = None  # static address, or dynamic
    aliases: tuple[str, ...] = ()


@dataclass
class ContainerSpec:
    key: str  # unique in the mirror: "<region>/<short name>" or "global/entry"
    name: str  # the Docker container name
    region: str
    az: str
    role: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    networks: list[Attachment] = field(default_factory=list)
    ports: tuple[int, ...] = ()  # container ports published on 127.0.0.1 (random host port)
    labels: dict[str, str] = field(default_factory=dict)
    stage: int = 0  # creation order: 0 etcd/redis, 1 Patroni, 2 the rest
    gates: tuple[str, ...] = ()  # start only once all of these hold: "etcd:<region>" (its etcd is
    # ready), "leader:<region>" (its Patroni cluster has a leader); () = at once
    extra: dict[str, str] = field(default_factory=dict)  # service, replica, member
    restart: str = ""  # Docker restart policy: "on-failure" for services (the orchestrator's
    # self-healing: a crashed process is restarted, as Kubernetes restarts a pod); "" = none

    @property
    def short(self) -> str:
        return self.key.split("/", 1)[1]


@dataclass
class Plan:
    mirror_id: str
    image: str
    networks: list[NetworkSpec]
    containers: list[ContainerSpec]
    service_mode: str  # platform | stub | none

    def container(self, key: str) -> ContainerSpec:
        for spec in self.containers:
            if spec.key == key:
                return spec
        raise KeyError(key)

    def by_role(self, role: str, region: str | None = None) -> list[ContainerSpec]:
        return [
            c for c in self.containers if c.role == role and (region is None or c.region == region)
        ]


def labels(mirror_id: str, region: str, az: str, role: str, **extra: str) -> dict[str, str]:
    out = {LABEL: mirror_id, LABEL_REGION: region, LABEL_AZ: az, LABEL_ROLE: role}
    out.update({f"drdrill.{k}": v for k, v in extra.items()})
    return out


def plan_mirror(
    topology: Topology,
    mirror_id: str,
    subnets: dict[str, str],
    image: str,
    service_mode: str,
) -> Plan:
    """The networks and containers of a mirror; ``subnets`` maps "wan" and each region to a /24."""
    if not mirror_id_ok(mirror_id):
        raise ValueError(f"bad mirror id {mirror_id!r}")
    if service_mode not in ("platform", "stub", "none"):
        raise ValueError(f"bad service mode {service_mode!r}")
    prefix = f"drdrill-{mirror_id}"
    nets = {key: _Subnet(subnets[key]) for key in (WAN, *(r.name for r in topology.regions))}
    networks = [
        NetworkSpec(
            key=WAN,
            name=f"{prefix}-{WAN}",
            subnet=nets[WAN].cidr,
            gateway=nets[WAN].host(1),
            ip_range=nets[WAN].dynamic,
            labels=labels(mirror_id, GLOBAL, GLOBAL, "network"),
        )
    ]
    for region in topology.regions:
        net = nets[region.name]
        networks.append(
            NetworkSpec(
                key=region.name,
                name=f"{prefix}-{region.name}",
                subnet=net.cidr,
                gateway=net.host(1),
                ip_range=net.dynamic,
                labels=labels(mirror_id, region.name, REGIONAL, "network"),
            )
        )
    containers: list[ContainerSpec] = []
    wan_alb_ip = {r.name: nets[WAN].host(10 + i) for i, r in enumerate(topology.regions)}
    primary = topology.primary
    for region in topology.regions:
        containers += _region_containers(
            topology, region, mirror_id, prefix, nets, wan_alb_ip, service_mode,
            upstream=wan_alb_ip[primary.name] if region.role == "dr" else None,
            upstream_region=primary.name if region.role == "dr" else None,
        )  # fmt: skip
    entry = ContainerSpec(
        key="global/entry",
        name=f"{prefix}-global-entry",
        region=GLOBAL,
        az=GLOBAL,
        role="dns",
        command=["sh", "-c", HAPROXY_CMD],
        env={"HAPROXY_CONFIG": global_config(topology, wan_alb_ip)},
        user="haproxy",
        networks=[Attachment(WAN, nets[WAN].host(2), ("entry",))],
        ports=(HTTP_PORT, ADMIN_PORT),
        labels=labels(mirror_id, GLOBAL, GLOBAL, "dns"),
        stage=2,
    )
    containers.append(entry)
    return Plan(mirror_id, image, networks, containers, service_mode)


def _region_containers(
    topology: Topology,
    region: Region,
    mirror_id: str,
    prefix: str,
    nets: dict[str, _Subnet],
    wan_alb_ip: dict[str, str],
    service_mode: str,
    upstream: str | None,
    upstream_region: str | None = None,
) -> list[ContainerSpec]:
    net = nets[region.name]
    out: list[ContainerSpec] = []

    def spec(short: str, az: str, role: str, **kw) -> ContainerSpec:
        extra = kw.pop("extra", {})
        return ContainerSpec(
            key=f"{region.name}/{short}",
            name=f"{prefix}-{region.name}-{short}",
            region=region.name,
            az=az,
            role=role,
            labels=labels(mirror_id, region.name, az, role, **extra),
            extra=extra,
            **kw,
        )

    # etcd: one member per entry, static IPs (a DNS lookup stalls ~10 s in a cut-off container)
    etcd_members = [
        (f"etcd-{az}{_suffix(region.etcd, i)}", az, net.host(10 + i))
        for i, az in enumerate(region.etcd)
    ]
    initial = ",".join(f"{n}=http://{ip}:{ETCD_PEER_PORT}" for n, _, ip in etcd_members)
    for name, az, ip in etcd_members:
        out.append(
            spec(
                name,
                az,
                "etcd",
                command=[
                    "etcd",
                    "--name",
                    name,
                    "--data-dir",
                    "/tmp/etcd",
                    "--listen-client-urls",
                    f"http://0.0.0.0:{ETCD_PORT}",
                    "--advertise-client-urls",
                    f"http://{ip}:{ETCD_PORT}",
                    "--listen-peer-urls",
                    f"http://0.0.0.0:{ETCD_PEER_PORT}",
                    "--initial-advertise-peer-urls",
                    f"http://{ip}:{ETCD_PEER_PORT}",
                    "--initial-cluster",
                    initial,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    f"{mirror_id}-{region.name}",
                    "--heartbeat-interval",
                    "100",
                    "--election-timeout",
                    "1000",
                    "--logger",
                    "zap",
                    "--log-level",
                    "info",
                ],
                user="etcd",
                networks=[Attachment(region.name, ip, (name,))],
                stage=0,
            )  # fmt: skip
        )
    etcd_hosts = [f"{ip}:{ETCD_PORT}" for _, _, ip in etcd_members]
    first_gates = (f"etcd:{region.name}",) + ((f"leader:{upstream_region}",) if upstream_region else ())

    # Patroni members; names unique in the mirror (a member's name is its application_name, and the
    # DR standby leader shows up in the primary leader's pg_stat_replication too)
    for i, az in enumerate(region.database):
        short = f"pg-{az}{_suffix(region.database, i)}"
        member = f"{region.name}-{short}"
        ip = net.host(20 + i)
        attachments = [Attachment(region.name, ip, (member,))]
        if region.role == "dr":
            attachments.append(
                Attachment(WAN, nets[WAN].host(20 + i), (f"{region.name}-{member}",))
            )
        config = patroni_config(topology, region, member, ip, etcd_hosts, upstream)
        out.append(
            spec(
                short,
                az,
                "postgres",
                command=["patroni"],
                env={"PATRONI_CONFIGURATION": config, "PGPASSFILE": "/tmp/pgpass"},
                user="postgres",
                networks=attachments,
                ports=(PATRONI_PORT, SQL_PORT),
                stage=1,
                # the first member bootstraps (the leader in AZ a); the others clone from it. A
                # standby cluster's first member clones from the primary region: only once that
                # has a leader (a basebackup from a primary still electing one fails the bootstrap)
                gates=first_gates if i == 0 else (f"leader:{region.name}",),
                extra={"member": member},
            )  # fmt: skip
        )
    members = [(c.extra["member"], c.networks[0].ip) for c in out if c.role == "postgres"]

    # the regional ALB: SQL to the Patroni leader, HTTP to the services by path prefix
    out.append(
        spec(
            "alb",
            REGIONAL,
            "alb",
            command=["sh", "-c", HAPROXY_CMD],
            env={"HAPROXY_CONFIG": alb_config(topology, region, members)},
            user="haproxy",
            networks=[
                Attachment(region.name, net.host(2), ("alb",)),
                Attachment(WAN, wan_alb_ip[region.name], (f"alb-{region.name}",)),
            ],
            ports=(SQL_PORT, HTTP_PORT, ADMIN_PORT),
            stage=2,
        )  # fmt: skip
    )
    # Redis (ElastiCache analog): no persistence
    out.append(
        spec(
            "redis",
            region.redis,
            "redis",
            command=[
                "redis-server",
                "--port",
                str(REDIS_PORT),
                "--bind",
                "0.0.0.0",
                "--protected-mode",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            user="redis",
            networks=[Attachment(region.name, net.host(3), ("redis",))],
            ports=(REDIS_PORT,),
            stage=0,
        )  # fmt: skip
    )
    # service replicas, spread over the AZs
    if service_mode != "none":
        for service in topology.services:
            for index in range(region.replicas.get(service.name, 0)):
                out.append(
                    service_spec(
                        topology, region, service.name, index, mirror_id, prefix, service_mode
                    )
                )
    return out


def service_spec(
    topology: Topology,
    region: Region,
    service: str,
    index: int,
    mirror_id: str,
    prefix: str,
    service_mode: str,
) -> ContainerSpec:
    """Replica ``index`` (0-based) of ``service`` in ``region`` (also used to scale up later)."""
    replica = f"{service}-{index + 1}"
    az = region.placement(service, index)
    port = topology.service_port
    env = {
        "DRDRILL_PG_DSN": (
            f"host=alb port={SQL_PORT} user={SUPERUSER[0]} password={SUPERUSER[1]} "
            "dbname=postgres connect_timeout=2"
        ),
        "DRDRILL_REDIS_URL": f"redis://redis:{REDIS_PORT}/0",
        "DRDRILL_REPLICA": replica,
        "DRDRILL_SERVICE": service,
        "DRDRILL_REGION": region.name,
        "DRDRILL_AZ": az,
        "DRDRILL_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }
    if service_mode == "platform":
        command = ["drdrill-platform", "--service", service, "--region", region.name,
                   "--port", str(port)]  # fmt: skip
    else:
        command = ["python3", "-c", STUB_SERVICE]
    extra = {"service": service, "replica": replica}
    return ContainerSpec(
        key=f"{region.name}/{replica}",
        name=f"{prefix}-{region.name}-{replica}",
        region=region.name,
        az=az,
        role="service",
        command=command,
        env=env,
        user="nobody",
        networks=[Attachment(region.name, None, (service, replica))],
        labels=labels(mirror_id, region.name, az, "service", **extra),
        stage=2,
        extra=extra,
        restart="on-failure",
    )


class _Subnet:
    def __init__(self, cidr: str) -> None:
        self.net = ipaddress.IPv4Network(cidr)
        if self.net.prefixlen > 24:
            raise ValueError(f"subnet {cidr} is smaller than a /24")
        self.cidr = str(self.net)
        half = list(self.net.subnets(new_prefix=self.net.prefixlen + 1))[1]
        self.dynamic = str(half)

    def host(self, n: int) -> str:
        return str(self.net.network_address + n)


def _suffix(azs: tuple[str, ...], index: int) -> str:
    """'' when the AZ occurs once in ``azs``, else its ordinal among the same AZ ('2', '3', ...)."""
    az = azs[index]
    if azs.count(az) == 1:
        return ""
    return str(azs[: index + 1].count(az))
