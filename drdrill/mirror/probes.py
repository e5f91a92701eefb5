"""Probes of the local mirror (nouns, chaostoolkit-aws style): what is true of it right now.

``service_health(state, region=None)``  per region and service: replicas the state expects, how many
                                        the regional ALB sees UP, and whether at least one is
``patroni_leader(state, region)``       the Patroni leader (or standby leader) member, or None
``replication_lag(state)``              every walsender of the writable leader(s): bytes, seconds,
                                        state, keyed by replica member or by the region a slot
                                        feeds (``dr``)
``serving_region(state)``               the region whose ALB answers through the global entry
``user_view(state)``                    per service: whether a user reaching the global entry is
                                        served now (a GET of :data:`HEALTH_PATHS`), by which region
``problems(state)``                     why the mirror is not healthy (empty list: healthy);
                                        ``wait_healthy`` waits until it is

Every probe only reads (HTTP and SQL on 127.0.0.1, Docker inspection by label).
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from typing import Any

import docker

from drdrill.chaos.http import HEALTH_PATHS, user_view
from drdrill.errors import TargetError
from drdrill.mirror.lifecycle import MirrorState, load_state
from drdrill.mirror.plan import LABEL

__all__ = [
    "HEALTH_PATHS",
    "patroni_cluster",
    "patroni_leader",
    "problems",
    "replication_lag",
    "service_health",
    "serving_region",
    "user_view",
    "wait_healthy",
    "writable",
]


def _get_json(url: str, timeout_s: float = 1.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def _check_region(state: MirrorState, region: str) -> None:
    if region not in state.regions:
        raise TargetError(
            f"no region {region!r} in mirror {state.mirror_id}; regions are "
            f"{', '.join(state.regions)}"
        )


def service_health(
    state: MirrorState | None = None, region: str | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """region -> service -> {"replicas", "up", "healthy"} from the regional ALB's checks (/readyz)."""
    state = state or load_state()
    regions = list(state.regions) if region is None else [region]
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name in regions:
        _check_region(state, name)
        services = state.regions[name]["services"]
        try:
            rows = state.admin(name).show_stat()
        except OSError:
            rows = []
        out[name] = {}
        for svc, info in services.items():
            backend = f"svc_{svc.replace('-', '_')}"
            up = sum(
                1
                for r in rows
                if r["pxname"] == backend
                and r["svname"] not in ("FRONTEND", "BACKEND")
                and r["status"] == "UP"
            )
            out[name][svc] = {"replicas": info["replicas"], "up": up, "healthy": up > 0}
    return out


def patroni_cluster(state: MirrorState | None, region: str) -> dict[str, Any]:
    """Patroni's ``/cluster`` of ``region`` as its leader sees it ({} if no member answers).

    A member back from a partition keeps reporting its stale view of the cluster until its DCS
    watch catches up (it may still name itself leader), so the view is taken from the one member
    whose own ``/patroni`` says it leads; without exactly one such member, from the first that
    answers.
    """
    state = state or load_state()
    _check_region(state, region)
    views: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for member in state.patroni(region).values():
        with contextlib.suppress(OSError, ValueError):
            cluster = _get_json(member["rest"] + "/cluster", 1.0)
            own: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                own = _get_json(member["rest"] + "/patroni", 1.0)
            views.append((own, cluster))
    leading = [cluster for own, cluster in views
               if own.get("role") in ("primary", "master", "standby_leader")
               and own.get("state") in ("running", "streaming")]  # fmt: skip
    if len(leading) == 1:
        return leading[0]
    return views[0][1] if views else {}


def patroni_leader(state: MirrorState | None, region: str) -> str | None:
    """The member holding ``region``'s leader lock (leader or standby leader), None without one."""
    members = patroni_cluster(state, region).get("members", [])
    return next(
        (m.get("name") for m in members if m.get("role") in ("leader", "standby_leader")), None
    )


def writable(state: MirrorState | None, region: str) -> bool:
    """Whether ``region``'s ALB SQL port reaches a writable (not in recovery) PostgreSQL."""
    state = state or load_state()
    _check_region(state, region)
    try:
        with state.connect(region, timeout_s=2.0) as conn:
            return conn.scalar("select pg_is_in_recovery()") == "f"
    except Exception:
        return False


def replication_lag(state: MirrorState | None = None) -> dict[str, dict[str, Any]]:
    """Walsenders of every writable region's leader: name -> {bytes, seconds, state, upstream}.

    A walsender using a slot named after a region (``dr``, or an old primary rebuilt as replica) is
    keyed by that region; in-region replicas by their member name. A region with role ``dr`` that
    nobody streams to shows ``{"state": "not streaming"}``.
    """
    state = state or load_state()
    out: dict[str, dict[str, Any]] = {}
    for region in state.regions:
        if not writable(state, region):
            continue
        with contextlib.suppress(Exception), state.connect(region, timeout_s=2.0) as conn:
            rows = conn.query(
                "select coalesce(s.slot_name, ''), r.application_name, r.state, r.sync_state, "
                "pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, "
                "coalesce(extract(epoch from r.replay_lag), 0) "
                "from pg_stat_replication r left join pg_replication_slots s "
                "on s.active_pid = r.pid"
            )
            for slot, app, st, sync, lag_bytes, lag_s in rows:
                name = slot if slot in state.regions else app
                out[name] = {
                    "bytes": int(lag_bytes or 0),
                    "seconds": float(lag_s or 0),
                    "state": f"{st}, {sync}",
                    "upstream": region,
                }
    for region, info in state.regions.items():
        if info["role"] == "dr" and region not in out:
            out[region] = {"bytes": None, "seconds": None, "state": "not streaming"}
    return out


def serving_region(state: MirrorState | None = None, tries: int = 3) -> str | None:
    """The region whose ALB answers through the global entry (its ``X-Drdrill-Region``); None if none."""
    state = state or load_state()
    seen: list[str] = []
    for _ in range(tries):
        try:
            with urllib.request.urlopen(state.global_http + "/", timeout=3.0) as response:
                header = response.headers.get("X-Drdrill-Region")
        except urllib.error.HTTPError as exc:  # the ALB's 404 for "/" still names its region
            header = exc.headers.get("X-Drdrill-Region")
        except OSError:
            header = None
        if header:
            seen.append(header)
    return max(set(seen), key=seen.count) if seen else None


def problems(
    state: MirrorState | None = None, client: docker.DockerClient | None = None
) -> list[str]:
    """Why the mirror is not in its healthy steady state; [] when it is.

    Every container running (not paused) and attached to a network; the primary-role region with a
    running leader, every other member streaming (one of them as synchronous standby when Patroni
    runs in synchronous mode) and the ALB reaching a writable server; a dr-role
    region's standby leader streaming; every primary-region service replica UP at its ALB.
    """
    state = state or load_state()
    client = client or docker.from_env(timeout=30)
    found: list[str] = []
    listed = {
        c["Id"]: c
        for c in client.api.containers(all=True, filters={"label": f"{LABEL}={state.mirror_id}"})
    }
    for entry in state.data["containers"]:
        c = listed.get(entry["id"])
        if c is None:
            found.append(f"{entry['key']}: missing")
        elif c["State"] != "running":
            found.append(f"{entry['key']}: {c['State']}")
        elif not ((c.get("NetworkSettings") or {}).get("Networks") or {}):
            found.append(f"{entry['key']}: on no network")
    for region, info in state.regions.items():
        members = patroni_cluster(state, region).get("members", [])
        shown = [(m.get("name"), m.get("role"), m.get("state")) for m in members]
        want = "leader" if info["role"] == "primary" else "standby_leader"
        lead = [m for m in members if m.get("role") == want]
        if not lead:
            found.append(f"{region}: no Patroni {want} ({shown})")
        elif lead[0].get("state") not in ("running", "streaming"):
            found.append(f"{region}: {want} {lead[0].get('name')} is {lead[0].get('state')}")
        if info["role"] == "dr" and lead and lead[0].get("state") != "streaming":
            found.append(f"{region}: standby leader not streaming ({shown})")
        for m in members:
            if m.get("role") not in ("leader", "standby_leader") and m.get("state") != "streaming":
                found.append(
                    f"{region}: member {m.get('name')} is {m.get('role')}/{m.get('state')}"
                )
        if len(members) < len(state.patroni(region)):
            found.append(
                f"{region}: {len(members)} of {len(state.patroni(region))} members in the cluster"
            )
        if info["role"] == "primary" and len(state.patroni(region)) > 1 and lead:
            # synchronous_mode: without a synchronous standby nobody may take over from the leader
            if _synchronous_mode(state, region) and not any(
                m.get("role") == "sync_standby" and m.get("state") == "streaming" for m in members
            ):
                found.append(f"{region}: no synchronous standby streaming ({shown})")
        if info["role"] == "primary" and not writable(state, region):
            found.append(f"{region}: the ALB does not reach a writable leader")
    primary = state.primary_region
    for svc, health in service_health(state, primary)[primary].items():
        if health["up"] < health["replicas"]:
            found.append(f"{primary}: {svc} {health['up']} of {health['replicas']} replicas UP")
    return found


def _synchronous_mode(state: MirrorState, region: str) -> bool:
    for member in state.patroni(region).values():
        with contextlib.suppress(OSError, ValueError):
            return bool(_get_json(member["rest"] + "/config", 1.0).get("synchronous_mode"))
    return False


def wait_healthy(
    state: MirrorState | None = None, timeout_s: float = 90.0, interval_s: float = 0.5
) -> float:
    """Wait until :func:`problems` is empty; seconds waited. TargetError listing the problems on timeout."""
    state = state or load_state()
    client = docker.from_env(timeout=30)
    t0 = time.monotonic()
    while True:
        found = problems(state, client)
        if not found:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise TargetError(
                f"mirror {state.mirror_id} not healthy after {timeout_s:.0f} s:\n  - "
                + "\n  - ".join(found)
            )
        time.sleep(interval_s)
