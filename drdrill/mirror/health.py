"""The one definition of "the mirror is healthy": the checks ``up`` waits for, the probes report and the rollback awaits.

Healthy means, for the regions' roles now in the state:

* every container running (not paused, not exited) and attached to a network;
* the primary-role region: a running Patroni leader, every other member in the cluster and
  streaming, a synchronous standby streaming when Patroni runs in synchronous mode, and the ALB
  routing SQL to a writable leader;
* every other region: its standby leader streaming from the primary region, every member in the
  cluster and streaming, and the ALB routing SQL to it;
* every service replica passing its ALB's check in the primary region (in every region when the
  services are stubs, which need no writable database);
* the global entry answering.

:func:`problems` lists why not ([] when healthy); :func:`wait_healthy` waits until it is, saying
each check as it first passes.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import docker

from drdrill.errors import WaitTimeout
from drdrill.mirror import patroni, sql
from drdrill.mirror.plan import LABEL
from drdrill.mirror.probes import service_health
from drdrill.mirror.state import MirrorState, Progress, load_state
from drdrill.waiting import wait_until

__all__ = ["Check", "checks", "problems", "wait_healthy"]


class _Round:
    """What one evaluation of the checks saw (each Patroni cluster and Docker listing asked once)."""

    def __init__(self, state: MirrorState, client: docker.DockerClient) -> None:
        self.state, self.client = state, client
        self._clusters: dict[str, list[dict[str, Any]]] = {}
        self._listed: dict[str, dict[str, Any]] | None = None

    def members(self, region: str) -> list[dict[str, Any]]:
        if region not in self._clusters:
            self._clusters[region] = patroni.members(self.state, region)
        return self._clusters[region]

    def listed(self) -> dict[str, dict[str, Any]]:
        if self._listed is None:
            filters = {"label": f"{LABEL}={self.state.mirror_id}"}
            self._listed = {c["Id"]: c for c in self.client.api.containers(all=True, filters=filters)}
        return self._listed


@dataclass
class Check:
    """One part of being healthy: ``probe`` lists what is wrong now ([] = it holds)."""

    name: str
    probe: Callable[[_Round], list[str]]
    containers: list[str] = field(default_factory=list)  # whose logs explain a failure

    def run(self, seen: _Round) -> list[str]:
        try:
            return self.probe(seen)
        except Exception as exc:  # a probe failing is "not yet"
            return [f"{self.name}: {type(exc).__name__}: {exc}"[:240]]


def checks(state: MirrorState) -> list[Check]:
    """Every check of a healthy mirror, for the regions' roles now in ``state``."""
    found = [Check("every container running", _containers)]
    primary = state.primary_region
    for region, info in state.regions.items():
        pg = [c["name"] for c in state.containers(region=region, role="postgres")]
        alb = [c["name"] for c in state.containers(region=region, role="alb")]
        if info["role"] == "primary":
            found.append(Check(f"{region}: Patroni leader elected", _leader(region, "leader"), pg))
        else:
            found.append(Check(f"{region}: standby cluster streaming from {primary}",
                               _leader(region, "standby_leader"), pg))  # fmt: skip
        found.append(Check(f"{region}: every member in the cluster, streaming", _members(region), pg))
        if info["role"] == "primary" and len(state.patroni(region)) > 1:
            found.append(Check(f"{region}: synchronous standby streaming (synchronous mode)",
                               _sync_standby(region), pg))  # fmt: skip
        if info["role"] == "primary":
            found.append(Check(f"{region}: ALB routes SQL to a writable leader",
                               _sql(region, writable=True), alb + pg))  # fmt: skip
        else:
            found.append(Check(f"{region}: ALB routes SQL to the standby leader",
                               _sql(region, writable=False), alb + pg))  # fmt: skip
        services = state.containers(region=region, role="service")
        if services and (info["role"] == "primary" or state.data.get("service_mode") == "stub"):
            found.append(Check(f"{region}: {len(services)} service replicas pass the ALB check",
                               _services(region), [c["name"] for c in services]))  # fmt: skip
    found.append(Check("global entry answers", _global_entry,
                       [c["name"] for c in state.containers(role="dns")]))  # fmt: skip
    return found


def problems(state: MirrorState | None = None, client: docker.DockerClient | None = None) -> list[str]:
    """Why the mirror is not in its healthy steady state; [] when it is."""
    state = state or load_state()
    seen = _Round(state, client or docker.from_env(timeout=30))
    return [problem for check in checks(state) for problem in check.run(seen)]


def wait_healthy(
    state: MirrorState | None = None,
    timeout_s: float = 90.0,
    interval_s: float = 0.5,
    *,
    client: docker.DockerClient | None = None,
    progress: Progress | None = None,
    watch: Callable[[], None] | None = None,
) -> float:
    """Wait until every check holds at once; seconds waited. ``progress`` hears each check as it first
    passes; ``watch`` runs every round and may raise to give up early. :class:`WaitTimeout` listing
    the problems on timeout (its ``last``: the checks still failing)."""
    state = state or load_state()
    client = client or docker.from_env(timeout=30)
    t0 = time.monotonic()
    listed = checks(state)
    passed: set[str] = set()
    failing: list[tuple[Check, list[str]]] = []

    def healthy() -> bool:
        nonlocal failing
        if watch is not None:
            watch()
        seen = _Round(state, client)
        failing = []
        for check in listed:
            found = check.run(seen)
            if found:
                failing.append((check, found))
            elif check.name not in passed:
                passed.add(check.name)
                if progress is not None:
                    progress(f"{check.name} ({time.monotonic() - t0:.1f} s after start)")
        return not failing

    try:
        wait_until(healthy, timeout_s=timeout_s, interval_s=interval_s,
                   what=f"mirror {state.mirror_id} healthy")  # fmt: skip
    except WaitTimeout:
        raise WaitTimeout(
            f"mirror {state.mirror_id} not healthy after {time.monotonic() - t0:.0f} s:\n  - "
            + "\n  - ".join(p for _, found in failing for p in found),
            [check for check, _ in failing],
        ) from None
    return time.monotonic() - t0


# ------------------------------------------------------------------------------------- the checks


def _containers(seen: _Round) -> list[str]:
    found = []
    listed = seen.listed()
    for entry in seen.state.data["containers"]:
        c = listed.get(entry["id"])
        if c is None:
            found.append(f"{entry['key']}: missing")
        elif c["State"] != "running":
            found.append(f"{entry['key']}: {c['State']}")
        elif not ((c.get("NetworkSettings") or {}).get("Networks") or {}):
            found.append(f"{entry['key']}: on no network")
    return found


def _leader(region: str, want: str) -> Callable[[_Round], list[str]]:
    """``want`` (leader or standby_leader) present and running (a standby leader: streaming)."""

    def probe(seen: _Round) -> list[str]:
        members = seen.members(region)
        lead = [m for m in members if m.get("role") == want]
        if not lead:
            return [f"{region}: no Patroni {want} ({patroni.shown(members)})"]
        now = lead[0].get("state")
        if now not in ("running", "streaming") or (want == "leader" and now != "running"):
            return [f"{region}: {want} {lead[0].get('name')} is {now}"]
        if want == "standby_leader" and now != "streaming":
            return [f"{region}: standby leader not streaming ({patroni.shown(members)})"]
        return []

    return probe


def _members(region: str) -> Callable[[_Round], list[str]]:
    def probe(seen: _Round) -> list[str]:
        members = seen.members(region)
        found = [f"{region}: member {m.get('name')} is {m.get('role')}/{m.get('state')}"
                 for m in members
                 if m.get("role") not in patroni.LEADER_ROLES and m.get("state") != "streaming"]  # fmt: skip
        expected = len(seen.state.patroni(region))
        if len(members) < expected:
            found.append(f"{region}: {len(members)} of {expected} members in the cluster")
        return found

    return probe


def _sync_standby(region: str) -> Callable[[_Round], list[str]]:
    """Synchronous mode: without a synchronous standby nobody may take over from the leader."""

    def probe(seen: _Round) -> list[str]:
        members = seen.members(region)
        if not any(m.get("role") == "leader" for m in members):
            return []  # the leader check says it
        if not patroni.synchronous_mode(seen.state, region) or any(
            m.get("role") == "sync_standby" and m.get("state") == "streaming" for m in members
        ):
            return []
        return [f"{region}: no synchronous standby streaming ({patroni.shown(members)})"]

    return probe


def _sql(region: str, writable: bool) -> Callable[[_Round], list[str]]:
    def probe(seen: _Round) -> list[str]:
        recovering = sql.in_recovery(seen.state, region)
        if writable and recovering is not False:
            return [f"{region}: the ALB does not reach a writable leader"]
        if not writable and recovering is None:
            return [f"{region}: the ALB does not reach a PostgreSQL"]
        return []

    return probe


def _services(region: str) -> Callable[[_Round], list[str]]:
    def probe(seen: _Round) -> list[str]:
        return [f"{region}: {svc} {health['up']} of {health['replicas']} replicas UP"
                for svc, health in service_health(seen.state, region)[region].items()
                if health["up"] < health["replicas"]]  # fmt: skip

    return probe


def _global_entry(seen: _Round) -> list[str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(seen.state.global_http + "/", timeout=1.0):
            return []
    except urllib.error.HTTPError:
        return []  # any HTTP answer will do (the ALB says 404 for "/")
    except OSError as exc:
        return [f"global entry: no answer at {seen.state.global_http} ({exc})"]
