"""The way back after a cross-region failover (the DR plan's §7 failback), on the local mirror.

:func:`rebuild_as_replica` (the old primary region becomes a standby cluster of the new primary),
:func:`wait_caught_up` and :func:`switch_over` (the planned switchover back, writes stopped), and
:func:`restore_layout` (undo a failover entirely: the topology's roles, leader AZ, weights and
sizes again; every experiment's rollback). The failover's own operations are
:mod:`drdrill.mirror.operations`.
"""

from __future__ import annotations

import contextlib
import re
import time
from typing import Any

import docker

from drdrill.errors import TargetError, WaitTimeout
from drdrill.mirror import links, patroni, sql
from drdrill.mirror.faults import parallel, resolve, role
from drdrill.mirror.operations import promote_dr, scale, set_weights
from drdrill.mirror.plan import BIN_DIR, DATA_DIR, SQL_PORT, WAN
from drdrill.mirror.state import MirrorState, Progress, load_state, quiet
from drdrill.mirror.topology import load_topology
from drdrill.waiting import remaining_s, wait_until

__all__ = ["rebuild_as_replica", "restore_layout", "switch_over", "wait_caught_up"]


def rebuild_as_replica(
    old_region: str,
    new_primary_region: str,
    state: MirrorState | None = None,
    *,
    timeout_s: float = 120.0,
    progress: Progress = quiet,
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
    if sql.in_recovery(state, new_primary_region) is not False:
        raise TargetError(
            f"region {new_primary_region} is not writable; promote it first (promote_dr)"
        )
    wan = state.network(WAN)
    # the old members must reach the new primary's ALB on the wan
    new_alb = resolve(role(new_primary_region, "alb"), state, client=client)[0]
    alb_ip = client.api.inspect_container(new_alb["id"])["NetworkSettings"]["Networks"][wan][
        "IPAddress"
    ]
    old_pg = resolve(role(old_region, "postgres"), state, client=client)
    for t in old_pg:
        if t["state"] != "running":
            raise TargetError(f"{t['key']} is {t['state']}; undo the faults on region {old_region} first")
        nets = client.api.inspect_container(t["id"])["NetworkSettings"]["Networks"] or {}
        if wan not in nets:
            entry = next(c for c in state.data["containers"] if c["id"] == t["id"])
            client.api.connect_container_to_network(
                t["id"], wan, aliases=[f"{old_region}-{entry.get('member', t['name'])}"]
            )
    links.shape(state, client)  # the old members' wan attachments cross the wan
    patroni.wait_cluster(state, old_region, min(remaining_s(deadline), 60.0))  # back after an undo
    slot = re.sub(r"[^a-z0-9_]", "_", old_region.lower())
    patroni.patch_config(state, new_primary_region, {"slots": {slot: {"type": "physical"}}})
    standby = {
        "host": alb_ip,
        "port": SQL_PORT,
        "primary_slot_name": slot,
        "create_replica_methods": ["basebackup"],
    }
    # Patroni sees divergence only when the new primary's timeline is higher: an old region that
    # promoted a leader of its own after coming back can reach the same timeline number with
    # another history, which pg_rewind cannot be told about. Then the members are re-cloned.
    old_tl = max((int(m.get("timeline") or 0) for m in patroni.members(state, old_region)),
                 default=0)  # fmt: skip
    # a just-promoted leader reports its new timeline only after its first checkpoint
    new_tl = patroni.leader_timeline(state, new_primary_region)
    if new_tl <= old_tl:
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: patroni.leader_timeline(state, new_primary_region) > old_tl,
                       timeout_s=20.0, what=f"{new_primary_region}'s leader past timeline {old_tl}")
        new_tl = patroni.leader_timeline(state, new_primary_region)
    method = "rewind" if old_tl < new_tl else "reclone"
    # the old region's slot for the DR replica has no consumer now
    patroni.patch_config(state, old_region, {"standby_cluster": standby, "slots": None})
    progress(
        f"[runbook] {old_region} (timeline {old_tl}): now a standby cluster of "
        f"{new_primary_region} (timeline {new_tl}, {alb_ip}); {method}"
    )
    members: list[dict[str, Any]] = []
    if method == "rewind":
        members = patroni.wait_streaming(state, old_region, min(remaining_s(deadline), 30.0))
        if not members:
            method = "reclone"
            progress(f"[runbook] {old_region}: not streaming after rewind; re-cloning")
    if method == "reclone":
        _reclone(state, old_region, old_pg, client)
        # the standby leader clones across the wan first; a replica then clones from it in the region
        # in about a second — or sits on a data directory the wipe left behind ("system ID is
        # invalid"), which only a reinitialize clears: so give replicas a short while, not the
        # leader's whole bound (that wait cost ~35 s of every failback over a shaped wan)
        with contextlib.suppress(WaitTimeout):
            wait_until(lambda: any(m.get("role") == "standby_leader" and m.get("state") == "streaming"
                                   for m in patroni.members(state, old_region)),
                       timeout_s=min(remaining_s(deadline), 45.0), interval_s=0.5,
                       what=f"{old_region}'s standby leader streaming")  # fmt: skip
        members = patroni.wait_streaming(state, old_region, min(remaining_s(deadline), 10.0))
        if not members:  # a replica left stopped: Patroni re-clones it from the standby leader
            for m in patroni.members(state, old_region):
                if m.get("role") != "standby_leader" and m.get("state") != "streaming":
                    progress(f"[runbook] {old_region}: reinitialising {m.get('name')}")
                    patroni.reinitialize(state, old_region, m.get("name", ""))
            members = patroni.wait_streaming(state, old_region, remaining_s(deadline))
    if not members:
        shown = patroni.shown(patroni.members(state, old_region))
        raise TargetError(
            f"{old_region} did not start streaming from {new_primary_region} within "
            f"{timeout_s:.0f} s; members: {shown}"
        )
    state.regions[new_primary_region]["role"] = "primary"
    state.regions[old_region]["role"] = "dr"
    state.save_quietly()
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


def wait_caught_up(
    region_name: str,
    state: MirrorState | None = None,
    *,
    max_lag_bytes: int = 0,
    timeout_s: float = 120.0,
    progress: Progress = quiet,
) -> dict[str, Any]:
    """Wait until the standby cluster of ``region_name`` streams and has replayed its upstream's
    WAL to within ``max_lag_bytes``; its replication lag then."""
    state = state or load_state()
    if region_name not in state.regions:
        raise TargetError(f"no region {region_name!r}; regions are {', '.join(state.regions)}")
    t0 = time.monotonic()
    lag: dict[str, Any] = {}

    def caught_up() -> bool:
        nonlocal lag
        lag = sql.replication_lag(state).get(region_name) or {}
        return (lag.get("bytes") is not None and lag["bytes"] <= max_lag_bytes
                and str(lag.get("state", "")).startswith("streaming"))  # fmt: skip

    try:
        wait_until(caught_up, timeout_s=timeout_s, interval_s=0.25,
                   what=f"{region_name} caught up")  # fmt: skip
    except WaitTimeout:
        raise TargetError(
            f"{region_name} did not catch up to within {max_lag_bytes} bytes in "
            f"{timeout_s:.0f} s; lag now: {lag or 'not streaming'}"
        ) from None
    took = time.monotonic() - t0
    progress(f"[runbook] {region_name} caught up with {lag.get('upstream')}: "
             f"{lag['bytes']} bytes behind after {took:.1f} s")  # fmt: skip
    return {**lag, "region": region_name, "seconds": round(took, 3)}


def switch_over(
    to_region: str,
    state: MirrorState | None = None,
    *,
    timeout_s: float = 180.0,
    progress: Progress = quiet,
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
    if sql.in_recovery(state, to_region) is not False:
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
    progress: Progress = quiet,
    client: docker.DockerClient | None = None,
) -> dict[str, Any]:
    """Put the mirror back into its topology's layout after a (possibly partial) failover: when the
    DR database was promoted, fail back automatically (rebuild the home region as its replica,
    stop traffic at the global entry, switch over); move the database leader back to its AZ (a
    Patroni switchover); then the topology's weights and service sizes.
    Run it after the faults are undone. What it did, in order (``steps``), and the planned outage
    it caused (``maintenance_window_s``: [start, end] epoch seconds of the traffic stop, or None)."""
    state = state or load_state()
    client = client or docker.from_env(timeout=60)
    topology = load_topology(state.data["topology"])
    home = next(r.name for r in topology.regions if r.role == "primary")
    t0 = time.monotonic()
    steps: list[str] = []
    maintenance_from_s = 0.0
    away = [r.name for r in topology.regions if r.role != "primary" and sql.writable(state, r.name)]
    if away or state.regions[home]["role"] != "primary":
        serving_from = away[0] if away else state.primary_region
        if state.regions[home]["role"] == "primary" and away:
            # the home region came back writable on its own: its writes since the failover were
            # never served (the global entry pointed away), the promoted region's were
            patroni.wait_cluster(state, home, 60.0)
            rebuild_as_replica(home, serving_from, state, progress=progress, client=client,
                               timeout_s=timeout_s / 2)  # fmt: skip
            steps.append("rebuild")
        maintenance_from_s = time.time()
        set_weights(dict.fromkeys(state.regions, 0), state)
        steps.append("maintenance")
        switch_over(home, state, timeout_s=timeout_s / 2, progress=progress, client=client)
        steps.append("switchover")
    leader_moved_s = _restore_leader(state, home, topology.region(home).database[0], progress,
                                     timeout_s=max(60.0, timeout_s - (time.monotonic() - t0)))
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


def _restore_leader(state: MirrorState, region_name: str, leader_az: str, progress: Progress,
                    timeout_s: float = 60.0) -> float | None:  # fmt: skip
    """Switch ``region_name``'s Patroni leader back to the member in ``leader_az`` (a planned
    switchover); when it started (epoch seconds), None when the leader is there already.
    ``timeout_s`` bounds each wait (the candidate becoming a synchronous standby, the move): a
    member just re-cloned on a busy machine needs a while."""
    wanted = next((c.get("member") for c in state.containers(region=region_name, role="postgres")
                   if c.get("az") == leader_az), None)  # fmt: skip
    current = patroni.leader(state, region_name)
    if not wanted or not current or current == wanted:
        return None
    started = time.time()
    try:
        wait_until(lambda: any(m.get("name") == wanted and m.get("state") == "streaming"
                               and m.get("role") == "sync_standby"
                               for m in patroni.members(state, region_name)),
                   timeout_s=timeout_s, what=f"{wanted} a streaming synchronous standby")  # fmt: skip
    except WaitTimeout:
        raise TargetError(f"{region_name}: {wanted} is not a streaming synchronous standby after "
                          f"{timeout_s:.0f} s; cannot switch the leader back to it") from None  # fmt: skip
    patroni.switchover(state, region_name, current, wanted)
    try:
        wait_until(lambda: patroni.leader(state, region_name) == wanted
                   and sql.in_recovery(state, region_name) is False,
                   timeout_s=timeout_s, interval_s=0.25, what=f"{region_name}'s leader on {wanted}")  # fmt: skip
    except WaitTimeout:
        raise TargetError(f"{region_name}: the leader did not move to {wanted} within "
                          f"{timeout_s:.0f} s") from None  # fmt: skip
    progress(f"[runbook] {region_name}: leader back on {wanted} (AZ {leader_az}) after "
             f"{time.time() - started:.1f} s")  # fmt: skip
    return started


def _reclone(
    state: MirrorState, region_name: str, pg: list[dict[str, Any]], client: docker.DockerClient
) -> None:
    """Re-create the region's members from the upstream: pause Patroni, empty every data
    directory, drop the cluster's ``initialize`` and ``leader`` keys (keeping its config, which
    names the upstream), resume: one member bootstraps a standby leader with pg_basebackup, the
    others clone from it."""
    patroni.patch_config(state, region_name, {"pause": True})
    time.sleep(0.5)
    data_dir, bin_dir = DATA_DIR, BIN_DIR

    def wipe(t: dict[str, Any]) -> None:
        cmd = (f"{bin_dir}/pg_ctl -D {data_dir} stop -m immediate -w -t 10 >/dev/null 2>&1; "
               f"find {data_dir} -mindepth 1 -delete")  # fmt: skip
        result = client.api.exec_create(t["id"], ["sh", "-c", cmd], user="postgres")
        client.api.exec_start(result["Id"])

    parallel(wipe, pg)
    etcd = resolve(role(region_name, "etcd"), state, client=client)
    prefix = f"/drdrill/{region_name}/"
    keys = " ".join(f"{prefix}{k}" for k in ("initialize", "leader", "status", "sync", "failover"))
    cmd = "for k in " + keys + "; do etcdctl del $k >/dev/null; done"
    for t in etcd:
        if t["state"] != "running":
            continue
        result = client.api.exec_create(t["id"], ["sh", "-c", cmd])
        client.api.exec_start(result["Id"])
        break
    patroni.patch_config(state, region_name, {"pause": None})
