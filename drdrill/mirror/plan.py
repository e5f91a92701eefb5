"""What the mirror is made of: networks and containers computed from a topology (pure, no Docker).

:func:`plan_mirror` turns a :class:`~drdrill.mirror.topology.Topology`, a mirror id, the subnets
chosen for it and the node image into a :class:`Plan`: the networks and the containers, each with its
command, environment, user, network attachments (static IPs, DNS aliases), ports to publish on
127.0.0.1 and labels. :mod:`drdrill.mirror.lifecycle` creates them; tests inspect them without Docker.

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
import json
import re
from dataclasses import dataclass, field

import yaml

from drdrill.mirror.topology import REGIONAL, Region, Topology

__all__ = [
    "ADMIN_PORT",
    "ETCD_PORT",
    "HTTP_PORT",
    "LABEL",
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

SQL_PORT = 5432
HTTP_PORT = 8080
ADMIN_PORT = 9999  # HAProxy runtime API (stats socket on TCP), published on 127.0.0.1 only
PATRONI_PORT = 8008
ETCD_PORT = 2379
ETCD_PEER_PORT = 2380
REDIS_PORT = 6379
SUPERUSER = ("postgres", "postgres")
REPLICATION_USER = ("replicator", "replicator")
DR_SLOT = "dr"
DATA_DIR = "/var/lib/postgresql/data"
BIN_DIR = "/usr/lib/postgresql/15/bin"
MAX_REPLICAS = 9  # server-template slots per service backend in an ALB

_MIRROR_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,19}")

# Writes $CONFIG to a file and execs the program on it (tini, the image's entry point, is PID 1).
_HAPROXY_CMD = (
    'printf "%s\\n" "$HAPROXY_CONFIG" > /tmp/haproxy.cfg && exec haproxy -W -db -f /tmp/haproxy.cfg'
)

# Stand-in for drdrill-platform when the node image lacks it: answers every path with 200 and
# a JSON body naming service, region and replica (so routing and the serving region are visible).
STUB_SERVICE = r"""
import http.server, json, os
NAME = dict(service=os.environ["DRDRILL_SERVICE"], region=os.environ["DRDRILL_REGION"],
            replica=os.environ["DRDRILL_REPLICA"], stub=True)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        body = json.dumps(dict(NAME, path=self.path)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = do_PUT = do_DELETE = answer
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["DRDRILL_PORT"])), H).serve_forever()
"""


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
    gate: str = ""  # start only once this holds: "etcd:<region>" (its etcd is ready) or
    # "leader:<region>" (its Patroni cluster has a leader), "" = at once
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
        )  # fmt: skip
    entry = ContainerSpec(
        key="global/entry",
        name=f"{prefix}-global-entry",
        region=GLOBAL,
        az=GLOBAL,
        role="dns",
        command=["sh", "-c", _HAPROXY_CMD],
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
                # the first member bootstraps (the leader in AZ a); the others clone from it
                gate=f"etcd:{region.name}" if i == 0 else f"leader:{region.name}",
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
            command=["sh", "-c", _HAPROXY_CMD],
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


def patroni_config(
    topology: Topology,
    region: Region,
    member: str,
    ip: str,
    etcd_hosts: list[str],
    upstream: str | None,
) -> str:
    """Patroni's YAML for ``member``; a standby cluster replicating from ``upstream`` when given."""
    t = topology.patroni
    dcs: dict = {
        "ttl": t.ttl,
        "loop_wait": t.loop_wait,
        "retry_timeout": t.retry_timeout,
        "maximum_lag_on_failover": t.maximum_lag_on_failover,
        "synchronous_mode": t.synchronous_mode,
        "postgresql": {
            "use_pg_rewind": t.use_pg_rewind,
            "use_slots": True,
            "parameters": {
                "wal_level": "replica",
                "hot_standby": "on",
                "wal_log_hints": "on",
                "max_wal_senders": 10,
                "max_replication_slots": 10,
                "wal_keep_size": "128MB",
                "max_connections": 100,
                "shared_buffers": "32MB",
                "hot_standby_feedback": "on",
            },
        },
    }
    if region.role == "primary" and topology.dr is not None:
        # the cross-region replica's permanent slot: kept on the leader, copied to its replicas
        dcs["slots"] = {DR_SLOT: {"type": "physical"}}
    if upstream is not None:
        dcs["standby_cluster"] = {
            "host": upstream,
            "port": SQL_PORT,
            "primary_slot_name": DR_SLOT,
            "create_replica_methods": ["basebackup"],
        }
    config = {
        "scope": f"{region.name}",
        "namespace": "/drdrill/",
        "name": member,
        "restapi": {"listen": f"0.0.0.0:{PATRONI_PORT}", "connect_address": f"{ip}:{PATRONI_PORT}"},
        "etcd3": {"hosts": etcd_hosts, "protocol": "http"},
        "bootstrap": {
            "dcs": dcs,
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": {
            "listen": f"0.0.0.0:{SQL_PORT}",
            "connect_address": f"{ip}:{SQL_PORT}",
            "data_dir": DATA_DIR,
            "bin_dir": BIN_DIR,
            "pgpass": "/tmp/pgpass",
            "basebackup": [{"checkpoint": "fast"}],
            "authentication": {
                "superuser": {"username": SUPERUSER[0], "password": SUPERUSER[1]},
                "replication": {"username": REPLICATION_USER[0], "password": REPLICATION_USER[1]},
                "rewind": {"username": SUPERUSER[0], "password": SUPERUSER[1]},
            },
            "pg_hba": [
                "local all all trust",
                "host all all 127.0.0.1/32 trust",
                f"host replication {REPLICATION_USER[0]} 0.0.0.0/0 scram-sha-256",
                "host all all 0.0.0.0/0 scram-sha-256",
            ],
            "parameters": {"unix_socket_directories": "/var/run/postgresql"},
        },
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
    }
    return yaml.safe_dump(config, sort_keys=False)


def alb_config(topology: Topology, region: Region, members: list[tuple[str, str]]) -> str:
    """The regional ALB's haproxy.cfg: SQL :5432 to the Patroni leader, HTTP :8080 by path prefix.

    The SQL check is Patroni's ``/primary`` in the primary region and ``/leader`` in the DR region
    (its standby leader is not writable until promoted, yet it is the member to read from).
    """
    check = "/primary" if region.role == "primary" else "/leader"
    lines = [
        "global",
        "    maxconn 4000",
        f"    stats socket ipv4@0.0.0.0:{ADMIN_PORT} level admin",
        "    stats timeout 10s",
        "    log stdout format raw local0 notice",
        "",
        "resolvers docker",
        "    nameserver dns 127.0.0.11:53",
        "    accepted_payload_size 8192",
        "    resolve_retries 2",
        "    timeout resolve 1s",
        "    timeout retry 1s",
        "    hold valid 1s",
        "    hold obsolete 1s",
        "    hold nx 1s",
        "    hold other 1s",
        "    hold refused 1s",
        "    hold timeout 1s",
        "",
        "defaults",
        "    log global",
        "    timeout connect 2s",
        "    timeout check 1s",
        "    default-server init-addr last,libc,none resolvers docker",
        "",
        "listen sql",
        f"    bind :{SQL_PORT}",
        "    mode tcp",
        "    timeout client 1h",
        "    timeout server 1h",
        "    option httpchk",
        f"    http-check send meth GET uri {check}",
        "    http-check expect status 200",
        f"    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 1 check port {PATRONI_PORT} on-marked-down shutdown-sessions",
    ]
    lines += [f"    server {name} {ip}:{SQL_PORT}" for name, ip in members]
    lines += [
        "",
        "frontend http",
        f"    bind :{HTTP_PORT}",
        "    mode http",
        "    timeout client 30s",
        f"    http-after-response set-header X-Drdrill-Region {region.name}",
    ]
    for service in topology.services:
        lines.append(
            f"    use_backend svc_{_ident(service.name)} if {{ path_beg {' '.join(service.paths)} }}"
        )
    lines += [
        "    default_backend no_route",
        "",
        "backend no_route",
        "    mode http",
        '    http-request return status 404 content-type text/plain string "no route\\n"',
    ]
    for service in topology.services:
        lines += [
            "",
            f"backend svc_{_ident(service.name)}",
            "    mode http",
            "    timeout server 30s",
            "    option redispatch",
            "    option httpchk",
            f"    http-check send meth GET uri {topology.health_path}",
            "    http-check expect status 200",
            "    default-server inter 1s fastinter 500ms downinter 1s fall 2 rise 1 check",
            f"    server-template {_ident(service.name)}- 1-{MAX_REPLICAS} {service.name}:{topology.service_port} resolvers docker init-addr none",
        ]
    return "\n".join(lines) + "\n"


def global_config(topology: Topology, wan_alb_ip: dict[str, str]) -> str:
    """The global entry's haproxy.cfg: one weighted server per region (Route 53 weighted records)."""
    lines = [
        "global",
        "    maxconn 4000",
        f"    stats socket ipv4@0.0.0.0:{ADMIN_PORT} level admin",
        "    stats timeout 10s",
        "    log stdout format raw local0 notice",
        "",
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 30s",
        "    timeout server 30s",
        "",
        "frontend entry",
        f"    bind :{HTTP_PORT}",
        "    default_backend regions",
        "",
        "backend regions",
        "    balance roundrobin",
    ]
    lines += [
        f"    server {r.name} {wan_alb_ip[r.name]}:{HTTP_PORT} weight {r.weight}"
        for r in topology.regions
    ]
    return "\n".join(lines) + "\n"


def describe(plan: Plan) -> str:
    """A JSON dump of a plan (for debugging: ``python -m drdrill.mirror.plan``)."""
    return json.dumps(
        {
            "networks": [n.__dict__ for n in plan.networks],
            "containers": [
                {k: v for k, v in c.__dict__.items() if k != "env"} for c in plan.containers
            ],
        },
        indent=2,
        default=str,
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


def _ident(name: str) -> str:
    return name.replace("-", "_")
