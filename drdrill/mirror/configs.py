"""The configuration of the mirror's components: fixed ports, credentials and paths, and the files built from them.

:func:`patroni_config` (a Patroni member's YAML), :func:`alb_config` (a regional ALB's haproxy.cfg),
:func:`global_config` (the global entry's haproxy.cfg), :data:`HAPROXY_CMD` (the shell line that
writes an HAProxy config from the environment and runs HAProxy) and :data:`STUB_SERVICE` (the
stand-in service). Pure text, no Docker: :mod:`drdrill.mirror.plan` puts them into the container
specs.
"""

from __future__ import annotations

import yaml

from drdrill.mirror.topology import Region, Topology

__all__ = [
    "ADMIN_PORT",
    "BIN_DIR",
    "DATA_DIR",
    "DR_SLOT",
    "ETCD_PEER_PORT",
    "ETCD_PORT",
    "HAPROXY_CMD",
    "HTTP_PORT",
    "MAX_REPLICAS",
    "PATRONI_PORT",
    "REDIS_PORT",
    "REPLICATION_USER",
    "SQL_PORT",
    "STUB_SERVICE",
    "SUPERUSER",
    "alb_config",
    "global_config",
    "patroni_config",
]

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

# Writes $CONFIG to a file and execs the program on it (tini, the image's entry point, is PID 1).
HAPROXY_CMD = (
    'printf "%s\\n" "$HAPROXY_CONFIG" > /tmp/haproxy.cfg && exec haproxy -W -db -f /tmp/haproxy.cfg'
)

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

# The `global` section of every HAProxy here: the runtime API on ADMIN_PORT, logs to stdout.
_HAPROXY_GLOBAL = (
    "global",
    "    maxconn 4000",
    f"    stats socket ipv4@0.0.0.0:{ADMIN_PORT} level admin",
    "    stats timeout 10s",
    "    log stdout format raw local0 notice",
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
        *_HAPROXY_GLOBAL,
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
        *_HAPROXY_GLOBAL,
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


def _ident(name: str) -> str:
    return name.replace("-", "_")
