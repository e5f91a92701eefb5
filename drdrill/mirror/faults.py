"""Faults and runbook operations on the local mirror (actions are verbs, chaostoolkit-aws style).

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

Runbook operations: :func:`promote_dr` (the DR standby cluster becomes writable),
:func:`scale` / :func:`scale_region` (the pilot light's scale-up), :func:`set_weights` (the global
entry's DNS failover), :func:`redeploy` (a rolling restart: the release deployed to a region),
:func:`validate_critical_path` (synthetic critical-path checks through the global entry),
:func:`rebuild_as_replica` (failback: the old primary region becomes a standby cluster of the new
primary), :func:`wait_caught_up` and :func:`switch_over` (the planned switchover back), and
:func:`restore_layout` (undo a failover entirely: the topology's roles, weights and sizes again).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import docker
import docker.errors

from drdrill.errors import TargetError
from drdrill.mirror.lifecycle import (
    PUBLISHED,
    MirrorState,
    load_state,
    published_ports,
    scale,
    set_endpoints,
    set_weights,
)
from drdrill.mirror.plan import (
    BIN_DIR,
    DATA_DIR,
    LABEL,
    SQL_PORT,
    WAN,
)

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
    "parse_selector",
    "promote_dr",
    "rebuild_as_replica",
    "redeploy",
    "region",
    "restore_layout",
    "resolve",
    "role",
    "scale",
    "scale_region",
    "service",
    "set_weights",
    "switch_over",
    "undo",
    "validate_critical_path",
    "wait_caught_up",
]

ACTIONS = ("crash", "hang", "isolate", "kill")
KINDS = ("region", "container", "leader", "az", "role", "service")
ROLES = ("etcd", "postgres", "alb", "redis", "service")
_START_ORDER = {"etcd": 0, "redis": 0, "postgres": 1}  # everything else: 2
Progress = Callable[[str], object]


def _quiet(_: str) -> None:
    return None


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
        member = _leader_member(state, sel.region)
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


def _leader_member(state: MirrorState, region_name: str) -> str | None:
    from drdrill.mirror.probes import patroni_leader

    return patroni_leader(state, region_name)


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
    progress: Progress = _quiet,
) -> Fault:
    """Kill the selected containers (``docker kill``); undo starts them again."""
    return _apply("crash", selector, state, client, progress)


def hang(
    selector: str | Selector,
    state: MirrorState | None = None,
    *,
    client: docker.DockerClient | None = None,
    progress: Progress = _quiet,
) -> Fault:
    """Freeze the selected containers (``docker pause``, a hung host); undo unpauses them."""
    return _apply("hang", selector, state, client, progress)


def isolate(
    selector: str | Selector,
    state: MirrorState | None = None,
    *,
    client: docker.DockerClient | None = None,
    progress: Progress = _quiet,
) -> Fault:
    """Cut the selected containers off every mirror network; undo reconnects them (same IPs)."""
    return _apply("isolate", selector, state, client, progress)


def kill(
    selector: str | Selector,
    state: MirrorState | None = None,
    *,
    client: docker.DockerClient | None = None,
    progress: Progress = _quiet,
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
        _parallel(lambda t: client.api.kill(t.id), live)
        hit = [asdict(t) for t in live]
    elif action == "hang":
        live = [t for t in targets if t.state == "running"]
        _parallel(lambda t: client.api.pause(t.id), live)
        hit = [asdict(t) for t in live]
    elif action == "kill":
        live = [t for t in targets if t.state == "running"]

        def kill_all(t: _Target) -> None:  # every process but PID 1 (tini), which then exits
            run = client.api.exec_create(t.id, ["sh", "-c", "kill -9 -1"], user="root")
            client.api.exec_start(run["Id"])

        _parallel(kill_all, live)
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

        hit = _parallel(cut, targets)
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
    progress: Progress = _quiet,
) -> Fault:
    """Reverse ``fault`` (start / unpause / reconnect); idempotent. Updates published ports in the state."""
    if fault.undone_s is not None:
        return fault
    state = state or load_state()
    if state.mirror_id != fault.mirror_id:
        raise TargetError(
            f"fault {fault!r} belongs to mirror {fault.mirror_id}, not {state.mirror_id}"
        )
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
            _parallel(lambda c: _start(client, c["id"]), group)
    elif fault.action == "hang":
        _parallel(lambda c: _unpause(client, c["id"]), hit)
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

        _parallel(reconnect, hit)
    else:
        raise TargetError(f"unknown fault action {fault.action!r}; actions are {ACTIONS}")
    _refresh_endpoints(state, client, [c["id"] for c in hit])
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


def _parallel(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
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
        deadline = time.monotonic() + wait_s
        ports = published_ports(client, entry["id"])
        while not all(p in ports for p in need) and time.monotonic() < deadline:
            time.sleep(0.1)
            ports = published_ports(client, entry["id"])
        if all(p in ports for p in need):
            set_endpoints(state, entry, ports)
            changed = True
    if changed and state.path is not None:
        with contextlib.suppress(OSError):
            state.save()


# ------------------------------------------------------------------------------ runbook actions


def promote_dr(
    state: MirrorState | None = None,
    *,
    region_name: str | None = None,
    timeout_s: float = 30.0,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Promote a standby cluster (default: the dr-role region's) with ``PATCH /config
    {"standby_cluster": null}`` and wait until it is writable; a writable one is left as it is."""
    state = state or load_state()
    dr = region_name or state.dr_region
    if dr is None:
        raise TargetError(
            f"mirror {state.mirror_id} has no region with role dr; regions are "
            + ", ".join(f"{r} ({i['role']})" for r, i in state.regions.items())
        )
    if dr not in state.regions:
        raise TargetError(f"no region {dr!r}; regions are {', '.join(state.regions)}")
    t0 = time.monotonic()
    if _in_recovery(state, dr) is False:
        result = {"region": dr, "leader": _leader_member(state, dr), "writable_after_s": 0.0,
                  "already_writable": True}  # fmt: skip
        progress(f"[runbook] {dr} is writable already ({result['leader']}); nothing to promote")
        return result
    _patch_config(state, dr, {"standby_cluster": None})
    writable_s = _wait_writable(state, dr, t0 + timeout_s)
    state.regions[dr]["promoted_s"] = time.time()
    if state.path is not None:
        with contextlib.suppress(OSError):
            state.save()
    result = {"region": dr, "leader": _leader_member(state, dr), "writable_after_s": writable_s}
    progress(f"[runbook] promoted {dr} ({result['leader']}): writable after {writable_s:.2f} s")
    return result


def scale_region(
    target_region: str,
    state: MirrorState | None = None,
    *,
    like: str | None = None,
    replicas: int | None = None,
    progress: Progress = _quiet,
    client: docker.DockerClient | None = None,
) -> dict[str, int]:
    """Scale every service of ``target_region`` to ``replicas`` each, or to the counts of region ``like``

    (default: the primary region's), in parallel; the new replica counts.
    """
    state = state or load_state()
    if target_region not in state.regions:
        raise TargetError(f"no region {target_region!r}; regions are {', '.join(state.regions)}")
    if replicas is None:
        like = like or state.primary_region
        if like not in state.regions:
            raise TargetError(f"no region {like!r}; regions are {', '.join(state.regions)}")
        counts = {s: v["replicas"] for s, v in state.regions[like]["services"].items()}
    else:
        counts = dict.fromkeys(state.regions[target_region]["services"], replicas)
    client = client or docker.from_env(timeout=60)
    changes = [
        (s, n)
        for s, n in counts.items()
        if state.regions[target_region]["services"][s]["replicas"] != n
    ]
    for s, n in changes:  # `scale` saves the state file: one at a time (each is ~1 s)
        scale(target_region, s, n, state, progress=progress, client=client)
    return {s: v["replicas"] for s, v in state.regions[target_region]["services"].items()}


def rebuild_as_replica(
    old_region: str,
    new_primary_region: str,
    state: MirrorState | None = None,
    *,
    timeout_s: float = 120.0,
    progress: Progress = _quiet,
    client: docker.DockerClient | None = None,
) -> dict[str, Any]:
    """Failback preparation: turn ``old_region``'s Patroni cluster into a standby cluster of

    ``new_primary_region`` (over the wan, through a permanent slot named after ``old_region``);
    Patroni rewinds (``use_pg_rewind``) or re-clones the old members. Waits until the old region's
    standby leader is streaming; swaps the regions' roles in the state.
    """
    state = state or load_state()
    for name in (old_region, new_primary_region):
        if name not in state.regions:
            raise TargetError(f"no region {name!r}; regions are {', '.join(state.regions)}")
    if old_region == new_primary_region:
        raise TargetError(f"old and new primary region are both {old_region!r}")
    client = client or docker.from_env(timeout=60)
    t0 = time.monotonic()
    deadline = t0 + timeout_s
    if _in_recovery(state, new_primary_region) is not False:
        raise TargetError(
            f"region {new_primary_region} is not writable; promote it first (promote_dr)"
        )
    wan = _network_name(state, WAN)
    # the old members must reach the new primary's ALB on the wan
    new_alb = _resolve(Selector(new_primary_region, "role", "alb"), state, client)[0]
    alb_ip = client.api.inspect_container(new_alb.id)["NetworkSettings"]["Networks"][wan][
        "IPAddress"
    ]
    old_pg = _resolve(Selector(old_region, "role", "postgres"), state, client)
    for t in old_pg:
        if t.state != "running":
            raise TargetError(f"{t.key} is {t.state}; undo the faults on region {old_region} first")
        nets = client.api.inspect_container(t.id)["NetworkSettings"]["Networks"] or {}
        if wan not in nets:
            entry = next(c for c in state.data["containers"] if c["id"] == t.id)
            client.api.connect_container_to_network(
                t.id, wan, aliases=[f"{old_region}-{entry.get('member', t.name)}"]
            )
    _wait_cluster(state, old_region, min(deadline, time.monotonic() + 60.0))  # back after an undo
    slot = re.sub(r"[^a-z0-9_]", "_", old_region.lower())
    _patch_config(state, new_primary_region, {"slots": {slot: {"type": "physical"}}})
    standby = {
        "host": alb_ip,
        "port": SQL_PORT,
        "primary_slot_name": slot,
        "create_replica_methods": ["basebackup"],
    }
    # Patroni sees divergence only when the new primary's timeline is higher: an old region that
    # promoted a leader of its own after coming back can reach the same timeline number with
    # another history, which pg_rewind cannot be told about. Then the members are re-cloned.
    old_tl = max((int(m.get("timeline") or 0) for m in _members(state, old_region)), default=0)
    # a just-promoted leader reports its new timeline only after its first checkpoint
    new_tl = _leader_timeline(state, new_primary_region)
    settle = time.monotonic() + 20.0
    while new_tl <= old_tl and time.monotonic() < settle:
        time.sleep(0.5)
        new_tl = _leader_timeline(state, new_primary_region)
    method = "rewind" if old_tl < new_tl else "reclone"
    # the old region's slot for the DR replica has no consumer now
    _patch_config(state, old_region, {"standby_cluster": standby, "slots": None})
    progress(
        f"[runbook] {old_region} (timeline {old_tl}): now a standby cluster of "
        f"{new_primary_region} (timeline {new_tl}, {alb_ip}); {method}"
    )
    members: list[dict[str, Any]] = []
    if method == "rewind":
        members = _wait_streaming(state, old_region, min(deadline, time.monotonic() + 30.0))
        if not members:
            method = "reclone"
            progress(f"[runbook] {old_region}: not streaming after rewind; re-cloning")
    if method == "reclone":
        _reclone(state, old_region, old_pg, client)
        members = _wait_streaming(state, old_region, min(deadline, time.monotonic() + 45.0))
        if not members:  # a replica left stopped: Patroni re-clones it from the standby leader
            for m in _members(state, old_region):
                if m.get("role") != "standby_leader" and m.get("state") != "streaming":
                    progress(f"[runbook] {old_region}: reinitialising {m.get('name')}")
                    _post(state, old_region, m.get("name", ""), "/reinitialize", {"force": True})
            members = _wait_streaming(state, old_region, deadline)
    if not members:
        shown = [
            (m.get("name"), m.get("role"), m.get("state")) for m in _members(state, old_region)
        ]
        raise TargetError(
            f"{old_region} did not start streaming from {new_primary_region} within "
            f"{timeout_s:.0f} s; members: {shown}"
        )
    state.regions[new_primary_region]["role"] = "primary"
    state.regions[old_region]["role"] = "dr"
    if state.path is not None:
        with contextlib.suppress(OSError):
            state.save()
    took = time.monotonic() - t0
    progress(f"[runbook] {old_region} streams from {new_primary_region} after {took:.1f} s")
    return {
        "region": old_region,
        "upstream": new_primary_region,
        "slot": slot,
        "members": [(m.get("name"), m.get("role"), m.get("state")) for m in members],
        "method": method,
        "seconds": took,
    }


def redeploy(
    region_name: str,
    state: MirrorState | None = None,
    *,
    timeout_s: float = 120.0,
    progress: Progress = _quiet,
    client: docker.DockerClient | None = None,
) -> dict[str, int]:
    """Deploy the release to ``region_name``: a rolling restart, one replica of each service at a time
    (services in parallel), each waited for until the region's ALB sees every replica UP again.
    Replicas restarted per service."""
    from drdrill.mirror.probes import service_health

    state = state or load_state()
    if region_name not in state.regions:
        raise TargetError(f"no region {region_name!r}; regions are {', '.join(state.regions)}")
    client = client or docker.from_env(timeout=60)
    t0 = time.monotonic()
    deadline = t0 + timeout_s

    def roll(service_name: str) -> tuple[str, int]:
        replicas = state.containers(region=region_name, role="service", service=service_name)
        for entry in replicas:
            client.api.restart(entry["id"], timeout=2)
            time.sleep(2.5)  # the ALB checks every second and marks a server down after 2 fails
            while True:
                health = service_health(state, region_name)[region_name][service_name]
                if health["up"] >= health["replicas"]:
                    break
                if time.monotonic() > deadline:
                    raise TargetError(
                        f"{region_name}/{service_name}: {health['up']} of {health['replicas']} "
                        f"replicas UP {timeout_s:.0f} s into the deploy (restarted {entry['key']})"
                    )
                time.sleep(0.25)
        return service_name, len(replicas)

    done = dict(_parallel(roll, list(state.regions[region_name]["services"])))
    progress(f"[runbook] deployed to {region_name}: {sum(done.values())} replica(s) restarted "
             f"in {time.monotonic() - t0:.1f} s")  # fmt: skip
    return done


# (name, method, path, body, the statuses that pass): the platform's critical path, as a user walks it
def _critical_path(tag: str) -> list[tuple[str, str, str, dict[str, Any] | None, tuple[int, ...]]]:
    return [
        ("payments.create", "POST", "/payments", {"key": tag, "amount_cents": 100}, (200, 201)),
        ("payments.read", "GET", f"/payments/{tag}", None, (200,)),
        ("auth.login", "POST", "/auth/login", {"user": tag}, (200, 201)),
        ("users.read", "GET", "/users/1", None, (200, 404)),
        ("storefront.browse", "GET", "/storefront", None, (200,)),
        ("analytics.event", "POST", "/analytics/events", {"key": f"{tag}-event", "name": "validate"},
         (200, 201, 202)),
    ]  # fmt: skip


def _http(method: str, url: str, body: dict[str, Any] | None, timeout_s: float = 5.0
          ) -> tuple[int | None, dict[str, str], bytes]:  # fmt: skip
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout_s) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
    except OSError as exc:
        return None, {}, str(exc).encode()


def validate_critical_path(
    state: MirrorState | None = None,
    *,
    expect_region: str | None = None,
    timeout_s: float = 60.0,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """The DR test's validation: walk the critical path (create and read a payment, log in, read a
    user, browse, send an event) through the global entry until every check passes in
    ``expect_region`` (any region when None); TargetError listing the failed checks at the deadline.
    """
    state = state or load_state()
    if expect_region is not None and expect_region not in state.regions:
        raise TargetError(f"no region {expect_region!r}; regions are {', '.join(state.regions)}")
    t0 = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        tag = f"validate-{uuid.uuid4().hex[:12]}"
        checks = []
        for name, method, path, body, good in _critical_path(tag):
            s0 = time.monotonic()
            status, headers, raw = _http(method, state.global_http + path, body)
            region_seen = next((v for k, v in headers.items() if k.lower() == "x-drdrill-region"),
                               None)  # fmt: skip
            ok = status in good and (expect_region is None or region_seen == expect_region)
            checks.append({"check": name, "status": status, "region": region_seen, "ok": ok,
                           "latency_ms": round((time.monotonic() - s0) * 1000, 1),
                           **({} if ok else {"answer": raw[:160].decode(errors="replace")})})  # fmt: skip
        failed = [c for c in checks if not c["ok"]]
        if not failed:
            took = time.monotonic() - t0
            progress(f"[runbook] critical path passes in {expect_region or 'the serving region'} "
                     f"(attempt {attempt}, {took:.1f} s)")  # fmt: skip
            return {"passed": True, "attempts": attempt, "seconds": round(took, 3),
                    "checks": checks}  # fmt: skip
        if time.monotonic() - t0 > timeout_s:
            shown = "; ".join(
                f"{c['check']}: HTTP {c['status']} from {c['region'] or 'no region'}"
                for c in failed
            )
            raise TargetError(
                f"critical-path validation failed after {attempt} attempt(s) in {timeout_s:.0f} s"
                f" (expected region {expect_region or 'any'}): {shown}"
            )
        time.sleep(1.0)


def wait_caught_up(
    region_name: str,
    state: MirrorState | None = None,
    *,
    max_lag_bytes: int = 0,
    timeout_s: float = 120.0,
    progress: Progress = _quiet,
) -> dict[str, Any]:
    """Wait until the standby cluster of ``region_name`` streams and has replayed its upstream's
    WAL to within ``max_lag_bytes``; its replication lag then."""
    from drdrill.mirror.probes import replication_lag

    state = state or load_state()
    if region_name not in state.regions:
        raise TargetError(f"no region {region_name!r}; regions are {', '.join(state.regions)}")
    t0 = time.monotonic()
    lag: dict[str, Any] = {}
    while True:
        lag = replication_lag(state).get(region_name) or {}
        if (lag.get("bytes") is not None and lag["bytes"] <= max_lag_bytes
                and str(lag.get("state", "")).startswith("streaming")):  # fmt: skip
            took = time.monotonic() - t0
            progress(f"[runbook] {region_name} caught up with {lag.get('upstream')}: "
                     f"{lag['bytes']} bytes behind after {took:.1f} s")  # fmt: skip
            return {**lag, "region": region_name, "seconds": round(took, 3)}
        if time.monotonic() - t0 > timeout_s:
            raise TargetError(
                f"{region_name} did not catch up to within {max_lag_bytes} bytes in "
                f"{timeout_s:.0f} s; lag now: {lag or 'not streaming'}"
            )
        time.sleep(0.25)


def switch_over(
    to_region: str,
    state: MirrorState | None = None,
    *,
    timeout_s: float = 180.0,
    progress: Progress = _quiet,
    client: docker.DockerClient | None = None,
) -> dict[str, Any]:
    """The planned switchover (run it with writes stopped: the maintenance window): wait until
    ``to_region``'s standby cluster has replayed every byte, promote it, and rebuild the current
    primary region as its standby cluster. A region that is primary already is left alone."""
    state = state or load_state()
    if to_region not in state.regions:
        raise TargetError(f"no region {to_region!r}; regions are {', '.join(state.regions)}")
    from_region = state.primary_region
    t0 = time.monotonic()
    if from_region == to_region:
        progress(f"[runbook] {to_region} is the primary region already; nothing to switch over")
        return {"region": to_region, "already_primary": True, "seconds": 0.0}
    caught: dict[str, Any] = {}
    if _in_recovery(state, to_region) is not False:
        caught = wait_caught_up(to_region, state, timeout_s=min(timeout_s, 60.0),
                                progress=progress)  # fmt: skip
    promoted = promote_dr(state, region_name=to_region, progress=progress)
    rebuilt = rebuild_as_replica(from_region, to_region, state, progress=progress, client=client,
                                 timeout_s=timeout_s)  # fmt: skip
    return {"region": to_region, "from": from_region, "caught_up": caught, "promoted": promoted,
            "rebuilt": rebuilt, "seconds": round(time.monotonic() - t0, 3)}  # fmt: skip


def restore_layout(
    state: MirrorState | None = None,
    *,
    timeout_s: float = 300.0,
    progress: Progress = _quiet,
    client: docker.DockerClient | None = None,
) -> dict[str, Any]:
    """Put the mirror back into its topology's layout after a (possibly partial) failover: when the
    DR database was promoted, fail back automatically (rebuild the home region as its replica,
    stop traffic at the global entry, switch over); move the database leader back to its AZ (a
    Patroni switchover); then the topology's weights and service sizes.
    Run it after the faults are undone. What it did, in order (``steps``), and the planned outage
    it caused (``maintenance_window_s``: [start, end] epoch seconds of the traffic stop, or None)."""
    from drdrill.mirror.probes import writable
    from drdrill.mirror.topology import load_topology

    state = state or load_state()
    client = client or docker.from_env(timeout=60)
    topology = load_topology(state.data["topology"])
    home = next(r.name for r in topology.regions if r.role == "primary")
    t0 = time.monotonic()
    steps: list[str] = []
    maintenance_from_s = 0.0
    away = [r.name for r in topology.regions if r.role != "primary" and writable(state, r.name)]
    if away or state.regions[home]["role"] != "primary":
        serving_from = away[0] if away else state.primary_region
        if state.regions[home]["role"] == "primary" and away:
            # the home region came back writable on its own: its writes since the failover were
            # never served (the global entry pointed away), the promoted region's were
            _wait_cluster(state, home, time.monotonic() + 60.0)
            rebuild_as_replica(home, serving_from, state, progress=progress, client=client,
                               timeout_s=timeout_s / 2)  # fmt: skip
            steps.append("rebuild")
        maintenance_from_s = time.time()
        set_weights(dict.fromkeys(state.regions, 0), state)
        steps.append("maintenance")
        switch_over(home, state, timeout_s=timeout_s / 2, progress=progress, client=client)
        steps.append("switchover")
    leader_moved_s = _restore_leader(state, home, topology.region(home).database[0], progress)
    if leader_moved_s is not None:
        maintenance_from_s = maintenance_from_s or leader_moved_s
        steps.append("leader-back")
    weights = {r.name: r.weight for r in topology.regions}
    if {r: state.data["global"].get("weights", {}).get(r) for r in weights} != weights:
        set_weights(weights, state)
        steps.append("dns-back")
    maintenance = [maintenance_from_s, time.time()] if maintenance_from_s else None
    for spec_region in topology.regions:
        for service_name, count in spec_region.replicas.items():
            current = state.regions[spec_region.name]["services"][service_name]["replicas"]
            if current != count:
                scale(spec_region.name, service_name, count, state, progress=progress,
                      client=client)  # fmt: skip
                if "scale-down" not in steps:
                    steps.append("scale-down")
    took = time.monotonic() - t0
    progress(f"[runbook] layout restored in {took:.1f} s: {', '.join(steps) or 'nothing to do'}")
    return {"steps": steps, "seconds": round(took, 3), "maintenance_window_s": maintenance}


def _leader_timeline(state: MirrorState, region_name: str) -> int:
    """The timeline ``region_name``'s leader reports (0 when it reports none)."""
    return max((int(m.get("timeline") or 0) for m in _members(state, region_name)
                if m.get("role") in ("leader", "standby_leader")), default=0)  # fmt: skip


def _restore_leader(state: MirrorState, region_name: str, leader_az: str,
                    progress: Progress) -> float | None:
    """Switch ``region_name``'s Patroni leader back to the member in ``leader_az`` (a planned
    switchover); when it started (epoch seconds), None when the leader is there already."""
    wanted = next((c.get("member") for c in state.containers(region=region_name, role="postgres")
                   if c.get("az") == leader_az), None)  # fmt: skip
    current = _leader_member(state, region_name)
    if not wanted or not current or current == wanted:
        return None
    started = time.time()
    deadline = time.monotonic() + 60.0
    while not any(m.get("name") == wanted and m.get("state") == "streaming"
                  and m.get("role") == "sync_standby" for m in _members(state, region_name)):
        if time.monotonic() > deadline:  # fmt: skip
            raise TargetError(f"{region_name}: {wanted} is not a streaming synchronous standby; "
                              "cannot switch the leader back to it")  # fmt: skip
        time.sleep(0.5)
    body = json.dumps({"leader": current, "candidate": wanted}).encode()
    request = urllib.request.Request(
        state.patroni(region_name)[wanted]["rest"] + "/switchover", data=body, method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=60.0):
            pass
    except urllib.error.HTTPError as exc:
        raise TargetError(f"Patroni refused the switchover {current} -> {wanted}: {exc.code} "
                          f"{exc.read()[:200]!r}") from exc  # fmt: skip
    while _leader_member(state, region_name) != wanted or _in_recovery(state, region_name) is not False:
        if time.monotonic() > deadline:
            raise TargetError(f"{region_name}: the leader did not move to {wanted} within 60 s")
        time.sleep(0.25)
    progress(f"[runbook] {region_name}: leader back on {wanted} (AZ {leader_az}) after "
             f"{time.time() - started:.1f} s")  # fmt: skip
    return started


def _wait_cluster(state: MirrorState, region_name: str, deadline: float) -> None:
    """Wait until every Patroni member of ``region_name`` is back in its cluster (after an undo)."""
    while time.monotonic() < deadline:
        if len(_members(state, region_name)) == len(state.patroni(region_name)):
            return
        time.sleep(0.5)


# --------------------------------------------------------------------------------------- helpers


def _cluster(state: MirrorState, region_name: str) -> dict[str, Any]:
    from drdrill.mirror.probes import patroni_cluster

    cluster = patroni_cluster(state, region_name)
    if not cluster:
        raise TargetError(f"no Patroni REST API of region {region_name} answers")
    return cluster


def _patch_config(state: MirrorState, region_name: str, patch: dict[str, Any],
                  retry_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
    """PATCH the region's dynamic Patroni config through any member that takes it.

    A member whose view of the DCS is not loaded yet (just back from a partition, etcd re-forming
    its quorum) answers 409 or 503: another member is tried, and all again for up to ``retry_s``.
    """
    body = json.dumps(patch).encode()
    error: str = ""
    deadline = time.monotonic() + retry_s
    while True:
        for member in state.patroni(region_name).values():
            request = urllib.request.Request(
                member["rest"] + "/config", data=body, method="PATCH",
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            try:
                with urllib.request.urlopen(request, timeout=5.0) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as exc:
                error = f"{exc.code} {exc.read()[:200]!r}"
                if exc.code not in (409, 503):
                    raise TargetError(
                        f"Patroni of region {region_name} refused PATCH /config {patch}: {error}"
                    ) from exc
            except (OSError, ValueError) as exc:
                error = str(exc)
        if time.monotonic() > deadline:
            raise TargetError(f"no Patroni member of region {region_name} took PATCH /config "
                              f"{patch} within {retry_s:.0f} s; last answer: {error}")  # fmt: skip
        time.sleep(0.5)


def _post(state: MirrorState, region_name: str, member: str, path: str, body: dict) -> None:
    rest = state.patroni(region_name)[member]["rest"]
    request = urllib.request.Request(
        rest + path, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=5.0):
        pass


def _members(state: MirrorState, region_name: str) -> list[dict[str, Any]]:
    with contextlib.suppress(TargetError):
        return _cluster(state, region_name).get("members", [])
    return []


def _wait_streaming(state: MirrorState, region_name: str, deadline: float) -> list[dict[str, Any]]:
    """The members once the standby leader and every replica stream ([] at the deadline)."""
    while time.monotonic() < deadline:
        members = _members(state, region_name)
        lead = [m for m in members if m.get("role") == "standby_leader"]
        if (
            lead
            and len(members) == len(state.patroni(region_name))
            and all(m.get("state") == "streaming" for m in members)
        ):
            return members
        time.sleep(0.5)
    return []


def _reclone(
    state: MirrorState, region_name: str, pg: list[_Target], client: docker.DockerClient
) -> None:
    """Re-create the region's members from the upstream: pause Patroni, empty every data
    directory, drop the cluster's ``initialize`` and ``leader`` keys (keeping its config, which
    names the upstream), resume: one member bootstraps a standby leader with pg_basebackup, the
    others clone from it."""
    _patch_config(state, region_name, {"pause": True})
    time.sleep(0.5)
    data_dir, bin_dir = DATA_DIR, BIN_DIR

    def wipe(t: _Target) -> None:
        cmd = (f"{bin_dir}/pg_ctl -D {data_dir} stop -m immediate -w -t 10 >/dev/null 2>&1; "
               f"find {data_dir} -mindepth 1 -delete")  # fmt: skip
        result = client.api.exec_create(t.id, ["sh", "-c", cmd], user="postgres")
        client.api.exec_start(result["Id"])

    _parallel(wipe, pg)
    etcd = _resolve(Selector(region_name, "role", "etcd"), state, client)
    prefix = f"/drdrill/{region_name}/"
    keys = " ".join(f"{prefix}{k}" for k in ("initialize", "leader", "status", "sync", "failover"))
    cmd = "for k in " + keys + "; do etcdctl del $k >/dev/null; done"
    for t in etcd:
        if t.state != "running":
            continue
        result = client.api.exec_create(t.id, ["sh", "-c", cmd])
        client.api.exec_start(result["Id"])
        break
    _patch_config(state, region_name, {"pause": None})


def _in_recovery(state: MirrorState, region_name: str) -> bool | None:
    """Whether the region's ALB SQL port reaches a server in recovery; None when none answers."""
    try:
        with state.connect(region_name, timeout_s=2.0) as conn:
            return conn.scalar("select pg_is_in_recovery()") == "t"
    except Exception:
        return None


def _wait_writable(state: MirrorState, region_name: str, deadline: float) -> float:
    t0 = time.monotonic()
    while True:
        if _in_recovery(state, region_name) is False:
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise TargetError(f"region {region_name} did not become writable in time")
        time.sleep(0.1)


def _network_name(state: MirrorState, key: str) -> str:
    for net in state.data["networks"]:
        if net["key"] == key:
            return net["name"]
    raise TargetError(f"mirror {state.mirror_id} has no {key} network")
