"""The DR runbook's operations on the local mirror (the counterpart of :mod:`drdrill.aws.operations`).

:func:`promote_dr` (the DR standby cluster becomes writable), :func:`scale` / :func:`scale_region`
(the pilot light's scale-up), :func:`set_weights` (the global entry's DNS failover; :func:`weights`
reads them), :func:`redeploy` (a rolling restart: the release deployed to a region) and
:func:`validate_critical_path` (synthetic critical-path checks through the global entry). The way
back (rebuild, catch up, switch over, restore the layout) is :mod:`drdrill.mirror.failback`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker

from drdrill.errors import TargetError, WaitTimeout
from drdrill.mirror import links, patroni, sql
from drdrill.mirror.containers import create_container, remove_container
from drdrill.mirror.plan import MAX_REPLICAS, ContainerSpec, service_spec
from drdrill.mirror.probes import service_health
from drdrill.mirror.state import GLOBAL_BACKEND, MirrorState, Progress, load_state, quiet
from drdrill.mirror.topology import load_topology
from drdrill.waiting import remaining_s, wait_until

__all__ = [
    "promote_dr",
    "redeploy",
    "scale",
    "scale_region",
    "set_weights",
    "validate_critical_path",
    "weights",
]


# --------------------------------------------------------------------------------------- weights


def weights(state: MirrorState) -> dict[str, int]:
    """The global entry's weight of every region now (its runtime API)."""
    api = state.admin()
    return {region: api.get_weight(GLOBAL_BACKEND, region) for region in state.regions}


def set_weights(new: dict[str, int], state: MirrorState | None = None) -> dict[str, int]:
    """Set the global entry's region weights (DNS failover); the weights now in force."""
    state = state or load_state()
    api = state.admin()
    for region, weight in new.items():
        if region not in state.regions:
            raise TargetError(f"no region {region!r}; regions are {list(state.regions)}")
        api.set_weight(GLOBAL_BACKEND, region, weight)
    now = weights(state)
    state.data["global"]["weights"] = now
    state.save_quietly()
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
            list(pool.map(lambda c: remove_container(client, c["id"]), doomed))
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
    links.shape(state, client)  # new replicas (new addresses) are peers of the AZ links
    names = [c["name"] for c in state.containers(region=region, role="service", service=service)]
    progress(
        f"[mirror] {region}/{service}: {len(current)} -> {replicas} replicas "
        f"in {time.monotonic() - t0:.1f} s"
    )
    return names


# ------------------------------------------------------------------------------ runbook actions


def promote_dr(
    state: MirrorState | None = None,
    *,
    region_name: str | None = None,
    timeout_s: float = 30.0,
    progress: Progress = quiet,
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
    if sql.in_recovery(state, dr) is False:
        result = {"region": dr, "leader": patroni.leader(state, dr), "writable_after_s": 0.0,
                  "already_writable": True}  # fmt: skip
        progress(f"[runbook] {dr} is writable already ({result['leader']}); nothing to promote")
        return result
    patroni.patch_config(state, dr, {"standby_cluster": None})
    try:
        wait_until(lambda: sql.in_recovery(state, dr) is False, timeout_s=remaining_s(t0 + timeout_s),
                   interval_s=0.1, what=f"region {dr} writable")  # fmt: skip
    except WaitTimeout:
        raise TargetError(f"region {dr} did not become writable in time") from None
    writable_s = time.monotonic() - t0
    state.regions[dr]["promoted_s"] = time.time()
    state.save_quietly()
    result = {"region": dr, "leader": patroni.leader(state, dr), "writable_after_s": writable_s}
    progress(f"[runbook] promoted {dr} ({result['leader']}): writable after {writable_s:.2f} s")
    return result


def scale_region(
    target_region: str,
    state: MirrorState | None = None,
    *,
    like: str | None = None,
    replicas: int | None = None,
    progress: Progress = quiet,
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


def redeploy(
    region_name: str,
    state: MirrorState | None = None,
    *,
    timeout_s: float = 120.0,
    progress: Progress = quiet,
    client: docker.DockerClient | None = None,
) -> dict[str, int]:
    """Deploy the release to ``region_name``: a rolling restart, one replica of each service at a time
    (services in parallel), each waited for until the region's ALB sees every replica UP again.
    Replicas restarted per service."""
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
            health: dict[str, Any] = {}

            def all_up() -> bool:
                nonlocal health
                health = service_health(state, region_name)[region_name][service_name]
                return health["up"] >= health["replicas"]

            try:
                wait_until(all_up, timeout_s=remaining_s(deadline), interval_s=0.25,
                           what=f"{region_name}/{service_name} replicas UP")  # fmt: skip
            except WaitTimeout:
                raise TargetError(
                    f"{region_name}/{service_name}: {health['up']} of {health['replicas']} "
                    f"replicas UP {timeout_s:.0f} s into the deploy (restarted {entry['key']})"
                ) from None
        return service_name, len(replicas)

    services = list(state.regions[region_name]["services"])
    with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
        done = dict(pool.map(roll, services))
    links.shape(state, client)  # a restarted container gets a new, unshaped network namespace
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
    progress: Progress = quiet,
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
    checks: list[dict[str, Any]] = []

    def walk() -> bool:
        nonlocal attempt, checks
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
        return all(c["ok"] for c in checks)

    try:
        wait_until(walk, timeout_s=timeout_s, interval_s=1.0, what="the critical path")
    except WaitTimeout:
        shown = "; ".join(f"{c['check']}: HTTP {c['status']} from {c['region'] or 'no region'}"
                          for c in checks if not c["ok"])  # fmt: skip
        raise TargetError(
            f"critical-path validation failed after {attempt} attempt(s) in {timeout_s:.0f} s"
            f" (expected region {expect_region or 'any'}): {shown}"
        ) from None
    took = time.monotonic() - t0
    progress(f"[runbook] critical path passes in {expect_region or 'the serving region'} "
             f"(attempt {attempt}, {took:.1f} s)")  # fmt: skip
    return {"passed": True, "attempts": attempt, "seconds": round(took, 3), "checks": checks}
