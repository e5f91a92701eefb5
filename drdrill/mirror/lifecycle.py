"""Bring the local mirror up, report on it, take it down.

``up(topology, progress)``
    Builds (or finds) the images, creates the mirror's networks and containers (see
    :mod:`drdrill.mirror.plan`), starts them in order (etcd and Redis, then Patroni, then the rest)
    and waits until the mirror is healthy: the primary region's Patroni leader elected and its
    synchronous standby streaming, the ALB routing SQL to a writable leader, the DR standby leader
    streaming from the primary, the service replicas passing the ALB's health check, the global entry
    answering. It writes the state file and returns a :class:`MirrorState`.
``down(mirror_id=None)``
    Removes every container and network labelled ``drdrill.mirror=<id>`` (the state file's id by
    default) and the state file: a sweep by label, so it also cleans up after a crash.
``scale(region, service, replicas)``
    Starts or removes service replicas (the pilot light's scale-up); the region's ALB finds them
    through Docker's DNS within about a second.
``set_weights({"primary": 0, "dr": 100})``
    The global entry's DNS failover, through its runtime API.
``status()``
    A :class:`MirrorStatus`: per container its region, AZ, role, Docker state and health (Patroni
    role and state, ALB check, Redis ping), each region's Patroni leader and replication lag, the
    global entry's weights (which region serves). ``str()`` of it is the table ``drdrill mirror
    status`` prints.

The state file (JSON; default ``reports/mirror/state.json``, env ``DRDRILL_MIRROR_STATE``) is what
other processes (a chaos run, Locust) read to find the mirror; every address in it is 127.0.0.1::

    {
      "version": 1, "mirror_id": "m3f9a1c", "created_at": "...", "topology": ".../topology.yaml",
      "image": "drdrill/node:...", "service_mode": "platform" | "stub" | "none",
      "global": {"http": "http://127.0.0.1:PORT", "admin": {"host": "127.0.0.1", "port": PORT},
                 "backend": "regions", "weights": {"primary": 100, "dr": 0}},
      "regions": {
        "primary": {
          "role": "primary", "azs": ["a", "b", "c"], "network": "drdrill-m3f9a1c-primary",
          "sql": {"host": "127.0.0.1", "port": PORT},
          "dsn": "host=127.0.0.1 port=PORT user=postgres password=postgres dbname=postgres",
          "http": "http://127.0.0.1:PORT", "admin": {"host": "127.0.0.1", "port": PORT},
          "redis": "redis://127.0.0.1:PORT/0",
          "patroni": {"pg-a": {"az": "a", "container": "...", "rest": "http://127.0.0.1:PORT",
                               "sql": {"host": "127.0.0.1", "port": PORT}}, ...},
          "services": {"payments": {"replicas": 2, "paths": ["/payments", "/_lookup"], "tier": "critical"}, ...}
        },
        "dr": {...}
      },
      "containers": [{"key": "primary/pg-a", "name": "...", "id": "...", "region": "primary",
                      "az": "a", "role": "postgres", "member": "pg-a"}, ...],
      "networks": [{"key": "primary", "name": "...", "id": "...", "subnet": "172.30.1.0/24"}, ...],
      "timings_s": {"images": 0.4, "create": 2.1, "healthy": 21.7}
    }
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.types import IPAMConfig, IPAMPool

from drdrill.errors import ConfigError, TargetError
from drdrill.mirror import pgwire
from drdrill.mirror.haproxy import RuntimeAPI
from drdrill.mirror.plan import (
    ADMIN_PORT,
    HTTP_PORT,
    LABEL,
    MAX_REPLICAS,
    PATRONI_PORT,
    REDIS_PORT,
    SQL_PORT,
    SUPERUSER,
    WAN,
    ContainerSpec,
    Plan,
    labels,
    mirror_id_ok,
    plan_mirror,
    service_spec,
)
from drdrill.mirror.topology import Topology, load_topology

__all__ = [
    "DEFAULT_STATE",
    "MirrorState",
    "PUBLISHED",
    "MirrorStatus",
    "down",
    "load_state",
    "scale",
    "set_endpoints",
    "set_weights",
    "state_path",
    "status",
    "up",
]

Progress = Callable[[str], object]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE = PROJECT_ROOT / "reports" / "mirror" / "state.json"
STATE_ENV = "DRDRILL_MIRROR_STATE"
GLOBAL_BACKEND = "regions"
LOCALHOST = "127.0.0.1"
STATE_VERSION = 1
_VERSION_PROBE = (
    "postgres --version; patroni --version; etcd --version | head -1; haproxy -v | head -1; "
    "redis-server --version; echo platform=$(command -v drdrill-platform || true)"
)


def state_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The state file: ``path``, else $DRDRILL_MIRROR_STATE, else reports/mirror/state.json."""
    if path is not None:
        return Path(path)
    env = os.environ.get(STATE_ENV)
    return Path(env) if env else DEFAULT_STATE


@dataclass
class MirrorState:
    """What ``up`` created and where to reach it (all on 127.0.0.1); the state file's content."""

    data: dict[str, Any]
    path: Path | None = None

    def __repr__(self) -> str:  # short: it is a fixture value in reports
        return f"MirrorState({self.mirror_id}, regions={list(self.regions)})"

    @property
    def mirror_id(self) -> str:
        return self.data["mirror_id"]

    @property
    def regions(self) -> dict[str, dict[str, Any]]:
        return self.data["regions"]

    @property
    def primary_region(self) -> str:
        return next(name for name, r in self.regions.items() if r["role"] == "primary")

    @property
    def dr_region(self) -> str | None:
        return next((name for name, r in self.regions.items() if r["role"] == "dr"), None)

    @property
    def global_http(self) -> str:
        return self.data["global"]["http"]

    def sql(self, region: str) -> tuple[str, int]:
        sql = self.regions[region]["sql"]
        return sql["host"], int(sql["port"])

    def patroni(self, region: str) -> dict[str, dict[str, Any]]:
        return self.regions[region]["patroni"]

    def admin(self, region: str | None = None) -> RuntimeAPI:
        """The runtime API of ``region``'s ALB, or of the global entry when ``region`` is None."""
        where = self.data["global"] if region is None else self.regions[region]
        return RuntimeAPI(where["admin"]["host"], where["admin"]["port"])

    def containers(self, **match: str) -> list[dict[str, str]]:
        """Containers whose fields equal ``match`` (e.g. ``region="primary", role="postgres"``)."""
        return [c for c in self.data["containers"] if all(c.get(k) == v for k, v in match.items())]

    def connect(self, region: str | None = None, **kwargs: Any) -> pgwire.PgConnection:
        """A SQL connection through ``region``'s ALB (default: the primary region)."""
        host, port = self.sql(region or self.primary_region)
        return pgwire.connect(host, port, SUPERUSER[0], SUPERUSER[1], **kwargs)

    def save(self, path: Path | None = None) -> Path:
        target = path or self.path or state_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(target)
        self.path = target
        return target


def load_state(path: str | os.PathLike[str] | None = None) -> MirrorState:
    """The state file of the mirror that is up; TargetError when there is none."""
    target = state_path(path)
    try:
        data = json.loads(target.read_text())
    except FileNotFoundError:
        raise TargetError(
            f"no mirror state at {target}: bring one up with `drdrill mirror up`"
        ) from None
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read mirror state {target}: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise TargetError(f"{target}: not a drdrill mirror state file (version {STATE_VERSION})")
    return MirrorState(data, target)


# ------------------------------------------------------------------------------------------- up


def up(
    topology: Topology | str | os.PathLike[str] | None = None,
    progress: Progress = print,
    *,
    mirror_id: str | None = None,
    state_file: str | os.PathLike[str] | None = None,
    timeout_s: float = 180.0,
    client: docker.DockerClient | None = None,
) -> MirrorState:
    """Create the mirror and wait until it is healthy; its state (also written to the state file).

    On any failure everything created so far is removed again before the error propagates.
    """
    if not isinstance(topology, Topology):
        topology = load_topology(topology)
    t0 = time.monotonic()

    def say(message: str) -> None:
        progress(f"[mirror {time.monotonic() - t0:5.1f}s] {message}")

    from drdrill.mirror.images import build_images  # heavy imports only when building

    images = build_images(progress=progress)
    t_images = time.monotonic() - t0
    client = client or docker.from_env(timeout=60)
    target = state_path(state_file)
    _refuse_running(client, target)
    mirror_id = mirror_id or f"m{uuid.uuid4().hex[:6]}"
    if not mirror_id_ok(mirror_id):
        raise ConfigError(f"bad mirror id {mirror_id!r}: 1-20 of a-z, 0-9, '-'")
    say(f"mirror {mirror_id} from {topology.source}, image {images['node']}")
    if topology.patroni.effective_ttl != topology.patroni.ttl:
        say(
            f"note: Patroni 4 raises patroni.ttl {topology.patroni.ttl} to "
            f"{topology.patroni.effective_ttl}: a crashed leader is replaced after about "
            f"{topology.patroni.effective_ttl} s"
        )
    state: MirrorState | None = None
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            facts_job = pool.submit(_image_facts, client, images["node"], mirror_id)
            networks = _create_networks(client, topology, mirror_id)
            facts = facts_job.result()
        mode = _service_mode(topology, facts)
        _check_versions(topology, facts)
        subnets = {key: net["subnet"] for key, net in networks.items()}
        plan = plan_mirror(topology, mirror_id, subnets, images["node"], mode)
        say(
            f"networks {', '.join(f'{k} {v}' for k, v in subnets.items())}; "
            f"{len(plan.containers)} containers, services: {mode}"
        )
        state = MirrorState(_initial_state(topology, plan, networks), target)
        state.save()  # so that `down` finds the mirror even if we crash from here on
        launched = _launch(client, plan, say)
        ids = {key: cid for key, (cid, _) in launched.items()}
        t_create = time.monotonic() - t0
        say(f"{len(ids)} containers started")
        _record_endpoints(state, plan, launched)
        state.save()
        _wait_healthy(
            client, state, topology, plan, ids, say, deadline=time.monotonic() + timeout_s
        )
        state.data["timings_s"] = {
            "images": round(t_images, 2),
            "create": round(t_create - t_images, 2),
            "healthy": round(time.monotonic() - t0 - t_images, 2),
        }
        state.save()
        say(f"healthy; state in {target}; global entry {state.global_http}")
        return state
    except BaseException:
        say("failed; removing what was created")
        with contextlib.suppress(Exception):
            down(mirror_id, state_file=target, progress=progress, client=client)
        raise


def _refuse_running(client: docker.DockerClient, target: Path) -> None:
    if not target.exists():
        return
    try:
        previous = load_state(target)
    except TargetError:
        return
    alive = client.containers.list(filters={"label": f"{LABEL}={previous.mirror_id}"})
    if alive:
        raise TargetError(
            f"mirror {previous.mirror_id} is already up ({len(alive)} containers; state {target}); "
            f"take it down first with `drdrill mirror down` or use another state file "
            f"(--state / ${STATE_ENV})"
        )


def _image_facts(client: docker.DockerClient, image: str, mirror_id: str) -> dict[str, str]:
    """Component versions in the node image and whether it has drdrill-platform (cached by image id)."""
    from drdrill.mirror.images import cache_dir

    image_id = client.images.get(image).id.split(":")[-1][:16]
    cache = cache_dir() / f"image-facts-{image_id}.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(cache.read_text())
    out = client.containers.run(
        image, ["sh", "-c", _VERSION_PROBE], remove=True, network_mode="none",
        labels={LABEL: mirror_id, "drdrill.role": "probe"},
    ).decode(errors="replace")  # fmt: skip
    facts = {
        "postgresql": _first(r"postgres \(PostgreSQL\) (\S+)", out),
        "patroni": _first(r"patroni (\S+)", out),
        "etcd": _first(r"etcd Version: (\S+)", out),
        "haproxy": _first(r"HAProxy version (\S+)", out),
        "redis": _first(r"Redis server v=(\S+)", out),
        "platform": _first(r"platform=(\S*)", out),
    }
    with contextlib.suppress(OSError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(facts))
    return facts


def _first(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    return match.group(1) if match else ""


def _service_mode(topology: Topology, facts: dict[str, str]) -> str:
    wanted = topology.service_command
    if wanted == "auto":
        return "platform" if facts.get("platform") else "stub"
    if wanted == "platform" and not facts.get("platform"):
        raise TargetError(
            f"{topology.source}: services.command is 'platform' but the node image has no "
            "drdrill-platform; use 'auto' or 'stub'"
        )
    return wanted


def _check_versions(topology: Topology, facts: dict[str, str]) -> None:
    for component, wanted in topology.versions.items():
        found = facts.get(component, "")
        if not found.startswith(wanted):
            raise TargetError(
                f"{topology.source}: versions.{component} is {wanted!r} but the node image has "
                f"{found or 'none'}"
            )


def _create_networks(
    client: docker.DockerClient, topology: Topology, mirror_id: str
) -> dict[str, dict[str, str]]:
    """The wan and one network per region, each on a free /24 of the topology's pool."""
    keys = [WAN, *(r.name for r in topology.regions)]
    region_of = {WAN: ("global", "global")} | {
        r.name: (r.name, "regional") for r in topology.regions
    }
    created: dict[str, dict[str, str]] = {}
    for attempt in range(6):
        used = _used_subnets(client)
        free = _free_subnets(topology.network_pool, used, len(keys) - len(created))
        try:
            for key in keys:
                if key in created:
                    continue
                subnet = ipaddress.IPv4Network(free.pop(0))
                half = list(subnet.subnets(new_prefix=25))[1]
                region, az = region_of[key]
                network = client.networks.create(
                    f"drdrill-{mirror_id}-{key}",
                    driver="bridge",
                    ipam=IPAMConfig(
                        pool_configs=[
                            IPAMPool(
                                subnet=str(subnet),
                                iprange=str(half),
                                gateway=str(subnet.network_address + 1),
                            )
                        ]
                    ),
                    options={"com.docker.network.bridge.enable_ip_masquerade": "false"},
                    labels=labels(mirror_id, region, az, "network"),
                    check_duplicate=True,
                )
                created[key] = {"id": network.id, "name": network.name, "subnet": str(subnet)}
            return created
        except docker.errors.APIError as exc:
            if "overlap" not in str(exc).lower() or attempt == 5:
                raise TargetError(f"cannot create the mirror's networks: {exc}") from exc
            time.sleep(0.2)  # another mirror took the subnet meanwhile: choose again
    raise AssertionError("unreachable")


def _used_subnets(client: docker.DockerClient) -> list[ipaddress.IPv4Network]:
    used = []
    for net in client.api.networks():
        for conf in (net.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                used.append(ipaddress.IPv4Network(conf["Subnet"], strict=False))
    return used


def _free_subnets(pool: str, used: list[ipaddress.IPv4Network], count: int) -> list[str]:
    free = []
    for candidate in ipaddress.IPv4Network(pool).subnets(new_prefix=24):
        if not any(candidate.overlaps(u) for u in used):
            free.append(str(candidate))
            if len(free) == count:
                return free
    raise TargetError(
        f"no {count} free /24 subnets left in network.pool {pool}; take old mirrors down "
        "(`drdrill mirror down --all`) or choose another pool"
    )


def _initial_state(topology: Topology, plan: Plan, networks: dict[str, dict[str, str]]) -> dict:
    regions: dict[str, Any] = {}
    for region in topology.regions:
        regions[region.name] = {
            "role": region.role,
            "azs": list(region.azs),
            "network": networks[region.name]["name"],
            "services": {
                s.name: {
                    "replicas": region.replicas.get(s.name, 0)
                    if plan.service_mode != "none"
                    else 0,
                    "paths": list(s.paths),
                    "tier": s.tier,
                }
                for s in topology.services
            },
            "patroni": {},
        }
    return {
        "version": STATE_VERSION,
        "mirror_id": plan.mirror_id,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "topology": topology.source,
        "image": plan.image,
        "service_mode": plan.service_mode,
        "global": {
            "backend": GLOBAL_BACKEND,
            "weights": {r.name: r.weight for r in topology.regions},
        },
        "regions": regions,
        "containers": [],
        "networks": [{"key": k, **v} for k, v in networks.items()],
    }


def _launch(
    client: docker.DockerClient, plan: Plan, say: Progress, gate_timeout_s: float = 60.0
) -> dict[str, tuple[str, dict[int, int]]]:
    """Create and start every container; key -> (id, published ports).

    Each container starts once its gate holds: the first Patroni member of a region once the
    region's etcd cluster has set its version (before that Patroni's etcd3 client gives up for
    5 s), the other members once the cluster has a leader (so the initial leader is the first
    member, in AZ a); everything else at once.
    """
    nets = {n.key: n.name for n in plan.networks}
    gates = {spec.gate: threading.Event() for spec in plan.containers if spec.gate}
    ordered = sorted(plan.containers, key=lambda c: c.stage)

    def launch(spec: ContainerSpec) -> tuple[str, dict[int, int]]:
        cid = create_container(client, plan.image, spec, nets)
        if spec.gate and not gates[spec.gate].wait(gate_timeout_s):
            raise TargetError(
                f"{spec.name}: gave up waiting for {spec.gate} after {gate_timeout_s:.0f} s"
            )
        client.api.start(cid)
        return cid, published_ports(client, cid) if spec.ports else {}

    with ThreadPoolExecutor(max_workers=8) as pool, ThreadPoolExecutor(max_workers=4) as waiters:
        futures = {spec.key: pool.submit(launch, spec) for spec in ordered}
        gate_jobs = []
        for name, event in gates.items():
            kind, region = name.split(":", 1)
            if kind == "etcd":
                members = [futures[c.key] for c in plan.by_role("etcd", region)]
                job = waiters.submit(
                    _etcd_gate, client, members, event, gate_timeout_s, say, region
                )
            else:
                first = futures[plan.by_role("postgres", region)[0].key]
                job = waiters.submit(_leader_gate, first, event, gate_timeout_s, say, region)
            gate_jobs.append(job)
        try:
            launched = {key: future.result() for key, future in futures.items()}
        finally:
            for event in gates.values():
                event.set()  # release waiting launches on failure
        for job in gate_jobs:
            job.result()
    return launched


def _leader_gate(
    first, gate: threading.Event, timeout_s: float, say: Progress, region: str
) -> None:
    """Set ``gate`` once the Patroni cluster of the region's first member has a leader."""
    try:
        port = first.result()[1][PATRONI_PORT]
    except Exception:
        gate.set()
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not gate.is_set():
        with contextlib.suppress(OSError, ValueError):
            members = _get_json(f"http://{LOCALHOST}:{port}/cluster", 0.5).get("members", [])
            leader = [m["name"] for m in members if m.get("role") in ("leader", "standby_leader")]
            if leader:
                say(f"{region}: {leader[0]} holds the leader lock; starting the other members")
                break
        time.sleep(0.2)
    gate.set()


def _etcd_gate(
    client: docker.DockerClient,
    futures: list,
    gate: threading.Event,
    timeout_s: float,
    say: Progress,
    region: str,
) -> None:
    """Set ``gate`` once every etcd member of a region has set the cluster version (from its log)."""
    try:
        ids = [future.result()[0] for future in futures]
    except Exception:
        gate.set()
        return
    deadline = time.monotonic() + timeout_s
    pending = set(ids)
    while pending and time.monotonic() < deadline and not gate.is_set():
        for cid in list(pending):
            with contextlib.suppress(docker.errors.APIError):
                if b"cluster version" in client.api.logs(cid, tail=200):
                    pending.discard(cid)
        if pending:
            time.sleep(0.1)
    if ids and not pending:
        say(f"{region}: etcd cluster of {len(ids)} ready")
    gate.set()


def create_container(
    client: docker.DockerClient, image: str, spec: ContainerSpec, networks: dict[str, str]
) -> str:
    """Create (not start) one container of a plan; its id. Ports are published on 127.0.0.1 only."""
    api = client.api
    first, *more = spec.networks
    host_config = api.create_host_config(
        port_bindings={port: (LOCALHOST,) for port in spec.ports},
        network_mode=networks[first.network],
        restart_policy={"Name": spec.restart} if spec.restart else None,
    )
    networking = api.create_networking_config(
        {networks[first.network]: api.create_endpoint_config(
            ipv4_address=first.ip, aliases=list(first.aliases))}
    )  # fmt: skip
    created = api.create_container(
        image,
        command=spec.command,
        user=spec.user or "",
        environment=spec.env,
        labels=spec.labels,
        name=spec.name,
        hostname=spec.short,
        ports=list(spec.ports),
        host_config=host_config,
        networking_config=networking,
    )
    cid = created["Id"]
    for attachment in more:
        api.connect_container_to_network(
            cid, networks[attachment.network], ipv4_address=attachment.ip,
            aliases=list(attachment.aliases),
        )  # fmt: skip
    return cid


def published_ports(client: docker.DockerClient, cid: str) -> dict[int, int]:
    """Container port → host port, for the ports published on 127.0.0.1."""
    ports = client.api.inspect_container(cid)["NetworkSettings"]["Ports"] or {}
    out = {}
    for key, bindings in ports.items():
        for binding in bindings or []:
            if binding.get("HostIp") == LOCALHOST:
                out[int(key.split("/")[0])] = int(binding["HostPort"])
    return out


def _record_endpoints(
    state: MirrorState, plan: Plan, launched: dict[str, tuple[str, dict[int, int]]]
) -> None:
    data = state.data
    ids = {key: cid for key, (cid, _) in launched.items()}
    for spec in plan.containers:
        ports = launched[spec.key][1]
        entry = {
            "key": spec.key,
            "name": spec.name,
            "id": ids[spec.key],
            "region": spec.region,
            "az": spec.az,
            "role": spec.role,
            **spec.extra,
        }
        if spec.networks[0].ip:
            entry["ip"] = spec.networks[0].ip
        data["containers"].append(entry)
        if spec.role == "postgres":
            data["regions"][spec.region]["patroni"][spec.extra["member"]] = {
                "az": spec.az, "container": spec.name}
        set_endpoints(state, entry, ports)


# Container ports each role publishes on 127.0.0.1 (what :func:`set_endpoints` records).
PUBLISHED = {"postgres": (PATRONI_PORT, SQL_PORT), "alb": (SQL_PORT, HTTP_PORT, ADMIN_PORT),
             "redis": (REDIS_PORT,), "dns": (HTTP_PORT, ADMIN_PORT)}  # fmt: skip


def set_endpoints(state: MirrorState, entry: dict[str, Any], ports: dict[int, int]) -> None:
    """Record in the state where container ``entry`` (a state container entry) is reached on
    127.0.0.1, from its published ``ports`` (container port -> host port)."""
    role = entry["role"]
    if role == "dns":
        state.data["global"]["http"] = f"http://{LOCALHOST}:{ports[HTTP_PORT]}"
        state.data["global"]["admin"] = {"host": LOCALHOST, "port": ports[ADMIN_PORT]}
        return
    region = state.data["regions"][entry["region"]]
    if role == "alb":
        region["sql"] = {"host": LOCALHOST, "port": ports[SQL_PORT]}
        region["dsn"] = (
            f"host={LOCALHOST} port={ports[SQL_PORT]} user={SUPERUSER[0]} "
            f"password={SUPERUSER[1]} dbname=postgres"
        )
        region["http"] = f"http://{LOCALHOST}:{ports[HTTP_PORT]}"
        region["admin"] = {"host": LOCALHOST, "port": ports[ADMIN_PORT]}
    elif role == "redis":
        region["redis"] = f"redis://{LOCALHOST}:{ports[REDIS_PORT]}/0"
    elif role == "postgres":
        region["patroni"][entry["member"]].update(
            rest=f"http://{LOCALHOST}:{ports[PATRONI_PORT]}",
            sql={"host": LOCALHOST, "port": ports[SQL_PORT]},
        )


# --------------------------------------------------------------------------------- readiness


@dataclass
class _Check:
    name: str
    probe: Callable[[], str | None]  # None = passed; else why not yet
    containers: list[str] = field(default_factory=list)  # whose logs explain a failure
    passed: bool = False
    why: str = "not probed yet"


def _wait_healthy(
    client: docker.DockerClient,
    state: MirrorState,
    topology: Topology,
    plan: Plan,
    ids: dict[str, str],
    say: Progress,
    deadline: float,
) -> None:
    checks = _health_checks(state, topology, plan)
    t0 = time.monotonic()
    next_container_check = 0.0
    while True:
        pending = [c for c in checks if not c.passed]
        for check in pending:
            try:
                check.why = check.probe() or ""
            except Exception as exc:  # a probe failing is "not yet"
                check.why = f"{type(exc).__name__}: {exc}"[:200]
            if not check.why:
                check.passed = True
                say(f"{check.name} ({time.monotonic() - t0:.1f} s after start)")
        if all(c.passed for c in checks):
            return
        now = time.monotonic()
        if now >= next_container_check:
            next_container_check = now + 2.0
            dead = _exited(client, plan.mirror_id)
            if dead:
                raise TargetError(
                    "mirror containers exited while starting: "
                    + "; ".join(f"{name} (exit {code})" for name, code in dead)
                    + "\n"
                    + _logs(client, [name for name, _ in dead])
                )
        if now > deadline:
            waiting = [c for c in checks if not c.passed]
            names = sorted({n for c in waiting for n in c.containers})
            raise TargetError(
                f"mirror {plan.mirror_id} not healthy after {now - t0:.0f} s; still waiting for:\n"
                + "\n".join(f"  - {c.name}: {c.why}" for c in waiting)
                + "\n"
                + _logs(client, names)
            )
        time.sleep(0.3)


def _health_checks(state: MirrorState, topology: Topology, plan: Plan) -> list[_Check]:
    checks: list[_Check] = []
    for region in topology.regions:
        info = state.regions[region.name]
        pg_names = [c.name for c in plan.by_role("postgres", region.name)]
        rest = [m["rest"] for m in info["patroni"].values()]
        if region.role == "primary":
            checks.append(
                _Check(
                    f"{region.name}: Patroni leader elected",
                    _leader_probe(rest, "leader"),
                    pg_names,
                )
            )
            if len(region.database) > 1:
                want = "sync_standby" if topology.patroni.synchronous_mode else "replica"
                checks.append(
                    _Check(
                        f"{region.name}: {want.replace('_', ' ')} streaming",
                        _streaming_probe(rest, want, len(region.database) - 1),
                        pg_names,
                    )
                )
            checks.append(
                _Check(
                    f"{region.name}: ALB routes SQL to a writable leader",
                    _sql_probe(state, region.name, writable=True),
                    [c.name for c in plan.by_role("alb", region.name)] + pg_names,
                )
            )
        else:
            checks.append(
                _Check(
                    f"{region.name}: standby cluster streaming from {topology.primary.name}",
                    _leader_probe(rest, "standby_leader", streaming=True),
                    pg_names,
                )
            )
            checks.append(
                _Check(
                    f"{region.name}: ALB routes SQL to the standby leader",
                    _sql_probe(state, region.name, writable=False),
                    [c.name for c in plan.by_role("alb", region.name)] + pg_names,
                )
            )
        services = plan.by_role("service", region.name)
        if services and (region.role == "primary" or plan.service_mode == "stub"):
            checks.append(
                _Check(
                    f"{region.name}: {len(services)} service replicas pass the ALB check",
                    _services_probe(state, region.name, topology, len(services)),
                    [c.name for c in services],
                )
            )
    checks.append(
        _Check("global entry answers", _http_probe(state.global_http + "/"),
               [c.name for c in plan.by_role("dns")])
    )  # fmt: skip
    return checks


def _get_json(url: str, timeout_s: float = 1.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def _cluster(rest: list[str]) -> dict[str, Any]:
    error: Exception | None = None
    for url in rest:
        try:
            return _get_json(url + "/cluster")
        except (OSError, ValueError) as exc:
            error = exc
    raise TargetError(f"no Patroni REST answers: {error}")


def _leader_probe(rest: list[str], role: str, streaming: bool = False) -> Callable[[], str | None]:
    def probe() -> str | None:
        members = _cluster(rest).get("members", [])
        for member in members:
            if member.get("role") == role:
                state = member.get("state")
                if state == "streaming" if streaming else state == "running":
                    return None
                return f"{role} {member.get('name')} is {state}"
        return f"no {role} yet (members: {[(m.get('name'), m.get('role'), m.get('state')) for m in members]})"

    return probe


def _streaming_probe(rest: list[str], role: str, count: int) -> Callable[[], str | None]:
    """``count`` members of ``role`` streaming (Patroni keeps one synchronous standby)."""
    need = 1 if role == "sync_standby" else count

    def probe() -> str | None:
        members = _cluster(rest).get("members", [])
        ok = [m for m in members if m.get("role") == role and m.get("state") == "streaming"]
        if len(ok) >= need:
            return None
        return f"members: {[(m.get('name'), m.get('role'), m.get('state')) for m in members]}"

    return probe


def _sql_probe(state: MirrorState, region: str, writable: bool) -> Callable[[], str | None]:
    def probe() -> str | None:
        with state.connect(region, timeout_s=2.0) as conn:
            in_recovery = conn.scalar("select pg_is_in_recovery()")
        if writable and in_recovery != "f":
            return "the ALB's SQL port reaches a server in recovery"
        return None

    return probe


def _services_probe(
    state: MirrorState, region: str, topology: Topology, count: int
) -> Callable[[], str | None]:
    backends = {f"svc_{s.name.replace('-', '_')}" for s in topology.services}

    def probe() -> str | None:
        rows = state.admin(region).show_stat()
        up = [
            r
            for r in rows
            if r["pxname"] in backends
            and r["status"] == "UP"
            and r["svname"] not in ("FRONTEND", "BACKEND")
        ]
        return None if len(up) >= count else f"{len(up)} of {count} UP"

    return probe


def _http_probe(url: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=1.0):
                return None
        except urllib.error.HTTPError:
            return None  # any HTTP answer will do (the ALB says 404 for "/")

    return probe


def _exited(client: docker.DockerClient, mirror_id: str) -> list[tuple[str, int]]:
    out = []
    for c in client.api.containers(
        all=True, filters={"label": f"{LABEL}={mirror_id}", "status": "exited"}
    ):
        if c["Labels"].get("drdrill.role") == "probe":
            continue
        code = c.get("Status", "")
        out.append((c["Names"][0].lstrip("/"), _exit_code(code)))
    return out


def _exit_code(status: str) -> int:
    match = re.search(r"Exited \((-?\d+)\)", status)
    return int(match.group(1)) if match else -1


def _logs(client: docker.DockerClient, names: list[str], lines: int = 12) -> str:
    out = []
    for name in names[:6]:
        try:
            text = client.api.logs(name, tail=lines).decode(errors="replace")
        except docker.errors.APIError as exc:
            text = f"(no logs: {exc})"
        out.append(
            f"--- last lines of {name}:\n" + "\n".join("    " + ln for ln in text.splitlines())
        )
    return "\n".join(out)


# ----------------------------------------------------------------------------------------- down


def down(
    mirror_id: str | None = None,
    *,
    state_file: str | os.PathLike[str] | None = None,
    progress: Progress = print,
    everything: bool = False,
    client: docker.DockerClient | None = None,
) -> int:
    """Remove every container and network of a mirror (by label); how many objects were removed.

    ``mirror_id`` defaults to the state file's; ``everything=True`` sweeps every mirror (any value
    of the ``drdrill.mirror`` label). The state file is removed when it names a swept mirror.
    """
    t0 = time.monotonic()
    target = state_path(state_file)
    if mirror_id is None and not everything:
        try:
            mirror_id = load_state(target).mirror_id
        except TargetError:
            progress(
                f"[mirror] no state file at {target}: nothing to take down (use --all to sweep)"
            )
            return 0
    selector = {"label": LABEL if everything else f"{LABEL}={mirror_id}"}
    client = client or docker.from_env(timeout=60)
    containers = client.api.containers(all=True, filters=selector)
    # all at once: measured 2.7 s for 23 containers, against 5 s with 4 workers
    with ThreadPoolExecutor(max_workers=max(1, min(len(containers), 48))) as pool:
        list(pool.map(lambda c: _remove_container(client, c["Id"]), containers))
    networks = client.api.networks(filters=selector)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda n: _remove_network(client, n["Id"]), networks))
    with contextlib.suppress(TargetError, OSError):
        if everything or load_state(target).mirror_id == mirror_id:
            target.unlink()
    what = "every mirror" if everything else f"mirror {mirror_id}"
    progress(
        f"[mirror] {what}: removed {len(containers)} containers and {len(networks)} networks "
        f"in {time.monotonic() - t0:.1f} s"
    )
    return len(containers) + len(networks)


def _remove_container(client: docker.DockerClient, cid: str) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        try:
            client.api.remove_container(cid, force=True, v=True)
        except docker.errors.APIError as exc:
            if "already in progress" not in str(exc):
                raise


def leftovers(client: docker.DockerClient | None = None) -> dict[str, dict[str, int]]:
    """Mirror id -> how many containers and networks carry its label now (what ``down`` would sweep)."""
    client = client or docker.from_env(timeout=60)
    found: dict[str, dict[str, int]] = {}
    for kind, listed in (("containers", client.api.containers(all=True, filters={"label": LABEL})),
                         ("networks", client.api.networks(filters={"label": LABEL}))):
        for item in listed:
            mirror = (item.get("Labels") or {}).get(LABEL, "?")
            found.setdefault(mirror, {"containers": 0, "networks": 0})[kind] += 1
    return found


def _remove_network(client: docker.DockerClient, nid: str) -> None:
    """Remove a mirror network; endpoints left over are disconnected and the removal retried for a few
    seconds (just-removed containers' endpoints can linger), then a clear error (moby#42119)."""
    with contextlib.suppress(docker.errors.NotFound):
        try:
            client.api.remove_network(nid)
            return
        except docker.errors.APIError as exc:
            if "active endpoints" not in str(exc):
                raise
        attached = client.api.inspect_network(nid).get("Containers") or {}
        for endpoint in attached:
            with contextlib.suppress(docker.errors.APIError):
                client.api.disconnect_container_from_network(endpoint, nid, force=True)
        for attempt in range(6):
            try:
                client.api.remove_network(nid)
                return
            except docker.errors.APIError as again:
                if attempt < 5 and "active endpoints" in str(again):
                    time.sleep(1.0)
                    continue
                raise TargetError(
                    f"Docker refuses to remove network {nid[:12]}: {again.explanation or again}; no "
                    "container uses it (a known Docker bug, moby#42119). Restarting the Docker engine "
                    "clears it; then run `drdrill mirror down --all`.") from again


# --------------------------------------------------------------------------------------- status


@dataclass
class MirrorStatus:
    """The mirror as it is now: rows per container, leaders, lag, weights."""

    mirror_id: str
    rows: list[dict[str, str]]
    leaders: dict[str, str]  # region -> Patroni leader (or standby leader) member, "" if none
    lag: dict[
        str, dict[str, Any]
    ]  # replica member ("primary-pg-b") or DR region -> {bytes, seconds, state}
    weights: dict[str, int]  # global entry: region -> weight
    errors: list[str] = field(default_factory=list)

    @property
    def serving(self) -> list[str]:
        return [region for region, weight in self.weights.items() if weight > 0]

    def __str__(self) -> str:
        from drdrill.tables import table

        cols = ("region", "az", "role", "name", "state", "health")
        lines = [f"mirror {self.mirror_id}", ""]
        lines += table([c.upper() for c in cols], [[r.get(c, "") for c in cols] for r in self.rows]).splitlines()
        lines.append("")
        for region, leader in self.leaders.items():
            lines.append(f"patroni leader  {region}: {leader or 'NONE'}")
        for name, lag in self.lag.items():
            seconds = lag.get("seconds")
            shown = f"{lag.get('bytes', '?')} bytes" + (
                f", {seconds:.3f} s" if isinstance(seconds, float) else ""
            )
            lines.append(f"replication lag {name}: {shown} ({lag.get('state', '?')})")
        weights = ", ".join(f"{r} {w}" for r, w in self.weights.items()) or "unknown"
        lines.append(
            f"global entry    weights {weights}; serving: {', '.join(self.serving) or 'NONE'}"
        )
        lines += [f"warning: {e}" for e in self.errors]
        return "\n".join(lines)


def status(
    state: MirrorState | None = None,
    *,
    state_file: str | os.PathLike[str] | None = None,
    client: docker.DockerClient | None = None,
) -> MirrorStatus:
    """Probe every part of the mirror (Docker, Patroni REST, ALB checks, Redis, global weights)."""
    state = state or load_state(state_file)
    client = client or docker.from_env(timeout=30)
    errors: list[str] = []
    listed = {
        c["Id"]: c
        for c in client.api.containers(all=True, filters={"label": f"{LABEL}={state.mirror_id}"})
    }

    def guarded(fn: Callable[[], Any], what: str, default: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            errors.append(f"{what}: {type(exc).__name__}: {exc}"[:240])
            return default

    regions = list(state.regions)
    with ThreadPoolExecutor(max_workers=8) as pool:
        clusters = {
            r: pool.submit(
                guarded, lambda r=r: _cluster([m["rest"] for m in state.patroni(r).values()]),
                f"{r} Patroni", {},
            )
            for r in regions
        }  # fmt: skip
        stats = {
            r: pool.submit(guarded, lambda r=r: state.admin(r).show_stat(), f"{r} ALB", [])
            for r in regions
        }
        redis = {
            r: pool.submit(
                guarded, lambda r=r: _redis_ping(state.regions[r]["redis"]), f"{r} Redis", "?"
            )
            for r in regions
        }
        weights_job = pool.submit(guarded, lambda: _weights(state), "global entry", {})
        lag_job = pool.submit(guarded, lambda: _replication_lag(state), "replication lag", {})
        clusters = {r: f.result() for r, f in clusters.items()}
        stats = {r: f.result() for r, f in stats.items()}
        redis = {r: f.result() for r, f in redis.items()}
        weights = weights_job.result()
        lag = lag_job.result()

    members = {r: {m.get("name"): m for m in clusters[r].get("members", [])} for r in regions}
    leaders = {
        r: next((n for n, m in ms.items() if m.get("role") in ("leader", "standby_leader")), "")
        for r, ms in members.items()
    }
    for ms in members.values():  # in-region replicas as Patroni sees them (SQL lag wins)
        for name, m in ms.items():
            if m.get("role") in ("replica", "sync_standby") and name is not None:
                lag.setdefault(name, {"bytes": m.get("lag", "?"), "state": m.get("state", "?")})
    servers: dict[tuple[str, str, str], dict[str, str]] = {}  # (region, backend|"ip", server|ip)
    for region, rows_ in stats.items():
        for row in rows_:
            if row["svname"] in ("FRONTEND", "BACKEND"):
                continue
            servers[(region, row["pxname"], row["svname"])] = row
            addr = row.get("addr", "").rsplit(":", 1)[0]
            if addr and row["pxname"] != "sql":
                servers[(region, "ip", addr)] = row
    ip_of = _container_ips(listed)

    def health(entry: dict[str, str]) -> str:
        region, role = entry["region"], entry["role"]
        if role == "postgres":
            m = members.get(region, {}).get(entry["member"])
            shown = f"{m.get('role')}/{m.get('state')}" if m else "not in cluster"
            sql = servers.get((region, "sql", entry["member"]))
            return shown + (f", ALB {sql['status']}" if sql else "")
        if role == "service":
            ip = ip_of.get(entry["id"], {}).get(state.regions[region]["network"], "-")
            row = servers.get((region, "ip", ip))
            return f"ALB {row['status']}" if row else "ALB: not resolved"
        if role == "redis":
            return redis.get(region, "?")
        if role == "alb":
            if not stats.get(region):
                return "no answer"
            up = [
                k[2] for k, r in servers.items() if k[:2] == (region, "sql") and r["status"] == "UP"
            ]
            return f"sql -> {', '.join(up) or 'NONE'}"
        if role == "dns":
            return ", ".join(f"{r} {w}" for r, w in weights.items()) or "no answer"
        return ""

    rows = [
        {
            "region": entry["region"],
            "az": entry["az"],
            "role": entry["role"],
            "name": entry["key"].split("/", 1)[1],
            "state": listed.get(entry["id"], {}).get("State", "missing"),
            "health": health(entry),
        }
        for entry in state.data["containers"]
    ]
    return MirrorStatus(state.mirror_id, rows, leaders, lag, weights, errors)


def _container_ips(listed: dict[str, dict]) -> dict[str, dict[str, str]]:
    out = {}
    for cid, c in listed.items():
        nets = (c.get("NetworkSettings") or {}).get("Networks") or {}
        out[cid] = {name: n.get("IPAddress", "") for name, n in nets.items()}
    return out


def _redis_ping(url: str) -> str:
    match = re.match(r"redis://([^:/]+):(\d+)", url)
    if not match:
        return "?"
    import socket

    with socket.create_connection((match.group(1), int(match.group(2))), timeout=1.0) as sock:
        sock.sendall(b"PING\r\n")
        answer = sock.recv(64).decode(errors="replace").strip()
    return "PONG" if answer == "+PONG" else answer


def _weights(state: MirrorState) -> dict[str, int]:
    api = state.admin()
    return {region: api.get_weight(GLOBAL_BACKEND, region) for region in state.regions}


def _replication_lag(state: MirrorState) -> dict[str, dict[str, Any]]:
    """Lag of every walsender of the primary region's leader (in-region replicas and the DR slot)."""
    with state.connect(timeout_s=2.0) as conn:
        rows = conn.query(
            "select coalesce(s.slot_name, ''), r.application_name, r.state, r.sync_state, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, "
            "coalesce(extract(epoch from r.replay_lag), 0) "
            "from pg_stat_replication r left join pg_replication_slots s on s.active_pid = r.pid"
        )
    out = {}
    dr = state.dr_region
    for slot, app, st, sync, lag_bytes, lag_s in rows:
        name = dr if (dr and slot == "dr") else app
        out[name] = {
            "bytes": int(lag_bytes or 0),
            "seconds": float(lag_s or 0),
            "state": f"{st}, {sync}",
        }
    if dr and dr not in out:
        out[dr] = {"bytes": "?", "state": "not streaming"}
    return out


# --------------------------------------------------------------------------------------- weights


def set_weights(weights: dict[str, int], state: MirrorState | None = None) -> dict[str, int]:
    """Set the global entry's region weights (DNS failover); the weights now in force."""
    state = state or load_state()
    api = state.admin()
    for region, weight in weights.items():
        if region not in state.regions:
            raise TargetError(f"no region {region!r}; regions are {list(state.regions)}")
        api.set_weight(GLOBAL_BACKEND, region, weight)
    now = _weights(state)
    state.data["global"]["weights"] = now
    if state.path is not None:
        with contextlib.suppress(OSError):
            state.save()
    return now


# ----------------------------------------------------------------------------------------- scale


def scale(
    region: str,
    service: str,
    replicas: int,
    state: MirrorState | None = None,
    *,
    progress: Progress = print,
    client: docker.DockerClient | None = None,
) -> list[str]:
    """Run ``replicas`` replicas of ``service`` in ``region`` (start new ones or remove the newest).

    New replicas get the labels, AZ spread, environment and DNS alias of those ``up`` made, so the
    region's ALB routes to them once they pass its check. Returns the replicas' container names.
    """
    state = state or load_state()
    if region not in state.regions:
        raise TargetError(f"no region {region!r}; regions are {list(state.regions)}")
    if service not in state.regions[region]["services"]:
        raise TargetError(
            f"no service {service!r}; services are {list(state.regions[region]['services'])}"
        )
    if not 0 <= replicas <= MAX_REPLICAS:
        raise TargetError(f"replicas must be between 0 and {MAX_REPLICAS}, got {replicas}")
    if state.data["service_mode"] == "none":
        raise TargetError("this mirror runs no services (services.command: none)")
    client = client or docker.from_env(timeout=60)
    t0 = time.monotonic()
    current = sorted(
        state.containers(region=region, role="service", service=service),
        key=lambda c: int(c["replica"].rsplit("-", 1)[1]),
    )
    if replicas < len(current):
        doomed = current[replicas:]
        with ThreadPoolExecutor(max_workers=len(doomed)) as pool:
            list(pool.map(lambda c: _remove_container(client, c["id"]), doomed))
        gone = {c["id"] for c in doomed}
        state.data["containers"] = [c for c in state.data["containers"] if c["id"] not in gone]
    elif replicas > len(current):
        topology = load_topology(state.data["topology"])
        spec_region = topology.region(region)
        used = {int(c["replica"].rsplit("-", 1)[1]) for c in current}
        indexes = [i for i in range(MAX_REPLICAS) if i + 1 not in used][: replicas - len(current)]
        nets = {region: state.regions[region]["network"]}
        specs = [
            service_spec(topology, spec_region, service, i, state.mirror_id,
                         f"drdrill-{state.mirror_id}", state.data["service_mode"])
            for i in indexes
        ]  # fmt: skip

        def launch(spec: ContainerSpec) -> str:
            cid = create_container(client, state.data["image"], spec, nets)
            client.api.start(cid)
            return cid

        with ThreadPoolExecutor(max_workers=len(specs)) as pool:
            ids = list(pool.map(launch, specs))
        for spec, cid in zip(specs, ids, strict=True):
            state.data["containers"].append(
                {"key": spec.key, "name": spec.name, "id": cid, "region": region, "az": spec.az,
                 "role": "service", **spec.extra}
            )  # fmt: skip
    state.regions[region]["services"][service]["replicas"] = replicas
    if state.path is not None:
        state.save()
    names = [c["name"] for c in state.containers(region=region, role="service", service=service)]
    progress(
        f"[mirror] {region}/{service}: {len(current)} -> {replicas} replicas "
        f"in {time.monotonic() - t0:.1f} s"
    )
    return names
