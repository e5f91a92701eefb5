"""Faults on the local mirror (actions are verbs, chaostoolkit-aws style): selectors; crash, hang, isolate, kill, undo.

A fault takes a *selector* (what to hit) and returns a :class:`Fault` record that :func:`undo`
reverses:

``crash(selector)``      ``docker kill``; undo starts the containers again (Patroni members rejoin,
                         rewinding with ``use_pg_rewind`` when the cluster moved on without them)
``hang(selector)``       ``docker pause`` (a hung host: the nastier fault); undo unpauses
``isolate(selector)``    disconnects the containers from every mirror network; undo reconnects them
                         with the same addresses and DNS aliases
``kill(selector)``       kills the processes inside the containers (a crashed process, not a lost
                         host): the container exits and its restart policy (services:
                         ``on-failure``, the orchestrator's self-healing) starts it again; undo
                         starts any that stayed down

Selectors (objects from the helpers below, or their text form)::

    container("primary", "pg-a")      "primary/pg-a"             one container of a region
    leader("primary")                 "primary/leader"           the region's Patroni leader *now*
    az("primary", "a")                "primary/az:a"             every container with drdrill.az=a
    role("primary", "etcd")           "primary/role:etcd"        every container of a role
    service("primary", "payments")    "primary/service:payments" every replica of a service
    region("primary")                 "primary"                  everything in the region (never
                                                                 the global entry)

Containers are found by the mirror's labels (``drdrill.mirror``, ``drdrill.region``,
``drdrill.az``, ``drdrill.role``, ``drdrill.member``, ``drdrill.service``), never by name patterns.
An unknown region, AZ, container, role or service raises :class:`~drdrill.errors.TargetError` naming
the valid choices before anything is touched.

The DR runbook's operations are :mod:`drdrill.mirror.operations` and :mod:`drdrill.mirror.failback`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import docker
import docker.errors

from drdrill.errors import TargetError, WaitTimeout
from drdrill.mirror import patroni
from drdrill.mirror.containers import published_ports
from drdrill.mirror.plan import LABEL
from drdrill.mirror.state import PUBLISHED, MirrorState, Progress, load_state, quiet, set_endpoints
from drdrill.waiting import wait_until

__all__ = [
    "ACTIONS",
    "Fault",
    "Selector",
    "az",
    "container",
    "crash",
    "hang",
    "isolate",
    "kill",
    "leader",
    "parallel",
    "parse_selector",
    "region",
    "resolve",
    "role",
    "service",
    "undo",
]

ACTIONS = ("crash", "hang", "isolate", "kill")
KINDS = ("region", "container", "leader", "az", "role", "service")
ROLES = ("etcd", "postgres", "alb", "redis", "service")
_START_ORDER = {"etcd": 0, "redis": 0, "postgres": 1}  # everything else: 2


# ------------------------------------------------------------------------------------ selectors


@dataclass(frozen=True)
class Selector:
    """What a fault hits: ``kind`` (region, container, leader, az, role, service) in ``region``."""

    region: str
    kind: str = "region"
    value: str = ""

    def __str__(self) -> str:
        if self.kind == "region":
            return self.region
        if self.kind in ("container",):
            return f"{self.region}/{self.value}"
        if self.kind == "leader":
            return f"{self.region}/leader"
        return f"{self.region}/{self.kind}:{self.value}"


def container(region: str, name: str) -> Selector:
    """One container of ``region`` by its short name (``pg-a``, ``etcd-b``, ``alb``, ``payments-1``)."""
    return Selector(region, "container", name)


def leader(region: str) -> Selector:
    """The Patroni leader (or standby leader) of ``region`` at the moment the fault is applied."""
    return Selector(region, "leader")


def az(region: str, name: str) -> Selector:
    """Every container of ``region`` in availability zone ``name`` (regional ones are spared)."""
    return Selector(region, "az", name)


def role(region: str, name: str) -> Selector:
    """Every container of ``region`` with role ``name`` (etcd, postgres, alb, redis, service)."""
    return Selector(region, "role", name)


def service(region: str, name: str) -> Selector:
    """Every replica of service ``name`` in ``region``."""
    return Selector(region, "service", name)


def region(name: str) -> Selector:
    """Everything in region ``name`` (the global entry is not in any region)."""
    return Selector(name, "region")


def parse_selector(text: str | Selector) -> Selector:
    """A selector from its text form: ``primary``, ``primary/pg-a``, ``primary/leader``, ``primary/az:a``."""
    if isinstance(text, Selector):
        return text
    if not isinstance(text, str) or not text.strip():
        raise TargetError(
            f"bad selector {text!r}: use REGION, REGION/NAME, REGION/leader, REGION/az:AZ, "
            "REGION/role:ROLE or REGION/service:SERVICE"
        )
    where, _, what = text.strip().partition("/")
    if not what:
        return Selector(where, "region")
    if what == "leader":
        return Selector(where, "leader")
    kind, colon, value = what.partition(":")
    if colon:
        if kind not in ("az", "role", "service"):
            raise TargetError(
                f"bad selector {text!r}: unknown kind {kind!r}; kinds are az, role, service"
            )
        return Selector(where, kind, value)
    return Selector(where, "container", what)


@dataclass
class _Target:
    id: str
    name: str
    key: str
    region: str
    az: str
    role: str
    state: str  # Docker state when resolved: running, paused, exited...


def resolve(
    selector: str | Selector,
    state: MirrorState | None = None,
    *,
    client: docker.DockerClient | None = None,
) -> list[dict[str, str]]:
    """The containers ``selector`` picks now (key, name, id, region, az, role, Docker state)."""
    state = state or load_state()
    client = client or docker.from_env(timeout=60)
    return [asdict(t) for t in _resolve(parse_selector(selector), state, client)]


def _resolve(sel: Selector, state: MirrorState, client: docker.DockerClient) -> list[_Target]:
    regions = list(state.regions)
    if sel.region not in state.regions:
        raise TargetError(
            f"no region {sel.region!r} in mirror {state.mirror_id}; regions are "
            f"{', '.join(regions)}"
        )
    if sel.kind not in KINDS:
        raise TargetError(f"bad selector kind {sel.kind!r}; kinds are {', '.join(KINDS)}")
    info = state.regions[sel.region]
    known = state.containers(region=sel.region)
    filters = [f"{LABEL}={state.mirror_id}", f"drdrill.region={sel.region}"]
    wanted_id: str | None = None
    if sel.kind == "az":
        if sel.value not in info["azs"]:
            raise TargetError(
                f"no AZ {sel.value!r} in region {sel.region}; AZs are {', '.join(info['azs'])}"
            )
        filters.append(f"drdrill.az={sel.value}")
    elif sel.kind == "role":
        present = sorted({c["role"] for c in known})
        if sel.value not in present:
            raise TargetError(
                f"no role {sel.value!r} in region {sel.region}; roles are {', '.join(present)}"
            )
        filters.append(f"drdrill.role={sel.value}")
    elif sel.kind == "service":
        services = list(info["services"])
        if sel.value not in services:
            raise TargetError(
                f"no service {sel.value!r} in region {sel.region}; services are "
                f"{', '.join(services)}"
            )
        filters += ["drdrill.role=service", f"drdrill.service={sel.value}"]
    elif sel.kind == "container":
        names = {c["key"].split("/", 1)[1]: c for c in known}
        if sel.value not in names:
            raise TargetError(
                f"no container {sel.value!r} in region {sel.region}; containers are "
                f"{', '.join(names)}"
            )
        wanted_id = names[sel.value]["id"]
    elif sel.kind == "leader":
        member = patroni.leader(state, sel.region)
        if not member:
            raise TargetError(f"region {sel.region} has no Patroni leader now; nothing to hit")
        filters += ["drdrill.role=postgres", f"drdrill.member={member}"]
    listed = client.api.containers(all=True, filters={"label": filters})
    by_id = {c["id"]: c for c in state.data["containers"]}
    targets = []
    for c in listed:
        labels = c.get("Labels") or {}
        if labels.get("drdrill.role") == "probe" or (wanted_id and c["Id"] != wanted_id):
            continue
        entry = by_id.get(c["Id"], {})
        targets.append(
            _Target(
                id=c["Id"],
                name=c["Names"][0].lstrip("/"),
                key=entry.get("key", c["Names"][0].lstrip("/")),
                region=labels.get("drdrill.region", ""),
                az=labels.get("drdrill.az", ""),
                role=labels.get("drdrill.role", ""),
                state=c.get("State", ""),
            )
        )
    if not targets:
        raise TargetError(f"selector {sel} matches no container of mirror {state.mirror_id}")
    return sorted(targets, key=lambda t: t.key)


# --------------------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """What a fault did (so :func:`undo` can reverse it) and when (epoch seconds)."""

    action: str  # crash | hang | isolate
    target: str  # the selector's text form
    mirror_id: str
    containers: list[dict[str, Any]]  # id, name, key, region, az, role, state; isolate: networks
    started_s: float
    applied_s: float
    undone_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        names = ", ".join(c["key"] for c in self.containers)
        return f"Fault({self.action} {self.target}: {names})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def history_ops(self, name: str | None = None) -> list[dict[str, Any]]:
        """The fault as nemesis ops of a history (``start:``/``stop:``), for the checkers."""
        f = name or f"{self.action} {self.target}"
        base = {"process": "nemesis", "phase": "method", "kind": "action"}
        return [
            {**base, "type": "info", "f": f"start:{f}", "time_s": self.started_s},
            {**base, "type": "ok", "f": f"stop:{f}", "time_s": self.started_s,
             "end_s": self.applied_s,
             "latency_ms": round((self.applied_s - self.started_s) * 1000, 3)},
        ]  # fmt: skip


def crash(
    selector: str | Selector,
    state: MirrorState | None = None,
    *,
    client: docker.DockerClient | None = None,
    progress: Progress = quiet,
) -> Fault:
    """Kill the selected containers (``docker kill``); undo starts them again."""
    return _apply("crash", selector, state, client, progress)


def hang(
    selector: str | Selector,
    state: MirrorState | None = None,
    *,
    client: docker.DockerClient | None = None,
    progress: Progress = quiet,
) -> Fault:
    """Freeze the selected containers (``docker pause``, a hung host); undo unpauses them."""
    return _apply("hang", selector, state, client, progress)


def isolate(
    selector: str | Selector,
    state: MirrorState | None = None,
    *,
    client: docker.DockerClient | None = None,
    progress: Progress = quiet,
) -> Fault:
    """Cut the selected containers off every mirror network; undo reconnects them (same IPs)."""
    return _apply("isolate", selector, state, client, progress)


def kill(
    selector: str | Selector,
    state: MirrorState | None = None,
    *,
    client: docker.DockerClient | None = None,
    progress: Progress = quiet,
) -> Fault:
    """Kill the processes inside the selected containers; their restart policy brings them back."""
    return _apply("kill", selector, state, client, progress)


def _apply(
    action: str,
    selector: str | Selector,
    state: MirrorState | None,
    client: docker.DockerClient | None,
    progress: Progress,
) -> Fault:
    state = state or load_state()
    client = client or docker.from_env(timeout=60)
    sel = parse_selector(selector)
    targets = _resolve(sel, state, client)  # raises before anything is touched
    started = time.time()
    hit: list[dict[str, Any]] = []
    notes: list[str] = []
    if action == "crash":
        live = [t for t in targets if t.state in ("running", "paused")]
        parallel(lambda t: client.api.kill(t.id), live)
        hit = [asdict(t) for t in live]
    elif action == "hang":
        live = [t for t in targets if t.state == "running"]
        parallel(lambda t: client.api.pause(t.id), live)
        hit = [asdict(t) for t in live]
    elif action == "kill":
        live = [t for t in targets if t.state == "running"]

        def kill_all(t: _Target) -> None:  # every process but PID 1 (tini), which then exits
            run = client.api.exec_create(t.id, ["sh", "-c", "kill -9 -1"], user="root")
            client.api.exec_start(run["Id"])

        parallel(kill_all, live)
        hit = [asdict(t) for t in live]
    elif action == "isolate":
        mirror_nets = {n["name"] for n in state.data["networks"]}

        def cut(t: _Target) -> dict[str, Any]:
            attached = client.api.inspect_container(t.id)["NetworkSettings"]["Networks"] or {}
            nets = []
            for net_name, ep in attached.items():
                if net_name not in mirror_nets:
                    continue
                ipam = ep.get("IPAMConfig") or {}
                nets.append({
                    "network": net_name,
                    "ip": ep.get("IPAddress") or "",
                    "static": bool(ipam.get("IPv4Address")),
                    "aliases": [a for a in ep.get("Aliases") or [] if not t.id.startswith(a)],
                })  # fmt: skip
            for net in nets:
                client.api.disconnect_container_from_network(t.id, net["network"])
            return {**asdict(t), "networks": nets}

        from drdrill.mirror import links  # links uses this module's parallel

        # the partition first, at once (Docker disconnects one container after another): what is
        # on the wire from the isolated containers is lost, as in a real partition
        notes_partition = links.partition(state, [t.id for t in targets], client)
        hit = parallel(cut, targets)
        notes.append(f"partitioned {len(notes_partition['addresses'])} address(es) off at "
                      f"{notes_partition['containers']} container(s) in {notes_partition['seconds']:.3f} s")
    skipped = len(targets) - len(hit)
    if skipped:
        notes.append(f"{skipped} selected container(s) were not running and were left alone")
    fault = Fault(action, str(sel), state.mirror_id, hit, started, time.time(), notes=notes)
    progress(
        f"[fault] {action} {sel}: {len(hit)} container(s) in {fault.applied_s - started:.2f} s"
        + (f" ({notes[0]})" if notes else "")
    )
    return fault


def undo(
    fault: Fault,
    state: MirrorState | None = None,
    *,
    client: docker.DockerClient | None = None,
    progress: Progress = quiet,
) -> Fault:
    """Reverse ``fault`` (start / unpause / reconnect); idempotent. Updates published ports in the state."""
    if fault.undone_s is not None:
        return fault
    state = state or load_state()
    if state.mirror_id != fault.mirror_id:
        raise TargetError(
            f"fault {fault!r} belongs to mirror {fault.mirror_id}, not {state.mirror_id}"
        )
    from drdrill.mirror import links  # links uses this module's parallel

    client = client or docker.from_env(timeout=60)
    t0 = time.time()
    existing = {
        c["Id"]: c
        for c in client.api.containers(all=True, filters={"label": f"{LABEL}={state.mirror_id}"})
    }
    hit = [c for c in fault.containers if c["id"] in existing]
    if fault.action in ("crash", "kill"):
        # etcd and Redis first, then Patroni, then the rest (each waits on the one before)
        for stage in (0, 1, 2):
            group = [c for c in hit if _START_ORDER.get(c["role"], 2) == stage]
            parallel(lambda c: _start(client, c["id"]), group)
    elif fault.action == "hang":
        parallel(lambda c: _unpause(client, c["id"]), hit)
    elif fault.action == "isolate":

        def reconnect(c: dict[str, Any]) -> None:
            attached = set(
                client.api.inspect_container(c["id"])["NetworkSettings"]["Networks"] or {}
            )
            for net in c["networks"]:
                if net["network"] in attached:
                    continue
                try:
                    client.api.connect_container_to_network(
                        c["id"], net["network"], ipv4_address=net["ip"] or None,
                        aliases=net["aliases"] or None,
                    )  # fmt: skip
                except docker.errors.APIError:
                    if net["static"]:
                        raise
                    # a dynamic address taken meanwhile: any address will do
                    client.api.connect_container_to_network(
                        c["id"], net["network"], aliases=net["aliases"] or None
                    )

        parallel(reconnect, hit)
        links.heal(state, client)
    else:
        raise TargetError(f"unknown fault action {fault.action!r}; actions are {ACTIONS}")
    _refresh_endpoints(state, client, [c["id"] for c in hit])
    links.shape(state, client)  # a started or reconnected container has new, unshaped interfaces
    fault.undone_s = time.time()
    progress(f"[fault] undo {fault.action} {fault.target}: {len(hit)} container(s) in "
             f"{fault.undone_s - t0:.2f} s")  # fmt: skip
    return fault


def _start(client: docker.DockerClient, cid: str) -> None:
    info = client.api.inspect_container(cid)["State"]
    if info.get("Paused"):
        client.api.unpause(cid)
    elif not info.get("Running"):
        client.api.start(cid)


def _unpause(client: docker.DockerClient, cid: str) -> None:
    if client.api.inspect_container(cid)["State"].get("Paused"):
        client.api.unpause(cid)


def parallel(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """``fn`` of every item, at once (up to 24 threads); the results in order."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=min(len(items), 24)) as pool:
        return list(pool.map(fn, items))


def _refresh_endpoints(
    state: MirrorState, client: docker.DockerClient, ids: list[str], wait_s: float = 5.0
) -> None:
    """Record the host ports Docker gave restarted or reconnected containers (they may change)."""
    changed = False
    for entry in [c for c in state.data["containers"] if c["id"] in set(ids)]:
        need = PUBLISHED.get(entry["role"])
        if not need:
            continue
        ports: dict[int, int] = {}

        def published(entry: dict[str, Any] = entry, need: tuple[int, ...] = need) -> bool:
            nonlocal ports
            ports = published_ports(client, entry["id"])
            return all(p in ports for p in need)

        with contextlib.suppress(WaitTimeout):
            wait_until(published, timeout_s=wait_s, interval_s=0.1,
                       what=f"{entry['key']}'s published ports")  # fmt: skip
        if all(p in ports for p in need):
            set_endpoints(state, entry, ports)
            changed = True
    if changed:
        state.save_quietly()
