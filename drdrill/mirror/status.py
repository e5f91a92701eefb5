"""``drdrill mirror status``: the mirror as it is now (:class:`MirrorStatus`, whose ``str()`` is the status table).

Per container its region, AZ, role, Docker state and health (Patroni role and state, ALB check,
Redis ping); each region's Patroni leader (as that leader sees its cluster); the replication lag of
every walsender (the DR replica's in bytes and seconds: :func:`drdrill.mirror.sql.replication_lag`);
each shaped link's *measured* round trip next to the configured one (:mod:`drdrill.mirror.links`);
the global entry's weights (which region serves).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker

from drdrill.mirror import links, patroni, sql
from drdrill.mirror.operations import weights as global_weights
from drdrill.mirror.plan import LABEL
from drdrill.mirror.state import MirrorState, load_state
from drdrill.tables import table

__all__ = ["MirrorStatus", "status"]


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
    links: dict[str, dict[str, Any]] = field(default_factory=dict)  # "wan", "az:<region>" ->
    # {"measured_ms": float, "configured_ms": float, "spec": "35 ms ±1 ms 5gbit"}

    @property
    def serving(self) -> list[str]:
        return [region for region, weight in self.weights.items() if weight > 0]

    def __str__(self) -> str:
        cols = ("region", "az", "role", "name", "state", "health")
        lines = [f"mirror {self.mirror_id}", ""]
        lines += table([c.upper() for c in cols],
                       [[r.get(c, "") for c in cols] for r in self.rows]).splitlines()
        lines.append("")
        for region, leader in self.leaders.items():
            lines.append(f"patroni leader  {region}: {leader or 'NONE'}")
        for name, lag in self.lag.items():
            seconds = lag.get("seconds")
            size = lag.get("bytes")
            shown = f"{'?' if size is None else size} bytes" + (
                f", {seconds:.3f} s" if isinstance(seconds, float) else ""
            )
            lines.append(f"replication lag {name}: {shown} ({lag.get('state', '?')})")
        for name, link in self.links.items():
            measured = link.get("measured_ms")
            shown = f"{measured:.1f} ms" if isinstance(measured, float) and measured == measured else "?"
            lines.append(f"link {name:<11} RTT measured {shown}, configured "
                         f"{link.get('configured_ms', 0):g} ms ({link.get('spec', '')})")  # fmt: skip
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
            r: pool.submit(guarded, lambda r=r: patroni.cluster(state, r, required=True),
                           f"{r} Patroni", {})
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
        weights_job = pool.submit(guarded, lambda: global_weights(state), "global entry", {})
        lag_job = pool.submit(guarded, lambda: sql.replication_lag(state), "replication lag", {})
        rtt_job = pool.submit(guarded, lambda: links.measure_rtt_ms(state, client), "link RTT", {})
        clusters = {r: f.result() for r, f in clusters.items()}
        stats = {r: f.result() for r, f in stats.items()}
        redis = {r: f.result() for r, f in redis.items()}
        weights = weights_job.result()
        lag = lag_job.result()
        rtt = rtt_job.result()

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
    return MirrorStatus(state.mirror_id, rows, leaders, lag, weights, errors, _links(state, rtt))


def _links(state: MirrorState, rtt: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Each measured link with its configured (or degraded) round trip."""
    specs = links.configured(state)
    degradation = links.degraded(state)
    out = {}
    for name, measured in rtt.items():
        link, _, region = name.partition(":")
        spec = links.effective(link, specs, degradation, [region] if region else list(state.regions))
        out[name] = {"measured_ms": measured, "configured_ms": spec.rtt_ms, "spec": spec.describe()}
    return out


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
    with socket.create_connection((match.group(1), int(match.group(2))), timeout=1.0) as sock:
        sock.sendall(b"PING\r\n")
        answer = sock.recv(64).decode(errors="replace").strip()
    return "PONG" if answer == "+PONG" else answer
