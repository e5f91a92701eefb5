"""Chaos Toolkit actions on the local mirror (verbs): faults, the DR runbook's steps, and their undoing.

The mirror is found through the experiment's ``mirror_state`` configuration (a state file path;
empty = ``$DRDRILL_MIRROR_STATE`` or ``reports/mirror/state.json``), so every action works from
drdrill and from plain ``chaos --no-version-check run`` against a mirror brought up with
``drdrill mirror up``. Unknown regions, AZs, services and containers are refused before anything is
touched, naming the valid choices.

Faults: every fault an action injects is appended to the fault log (``faults.json`` beside the
state file), so that :func:`undo_faults` reverses exactly what was done, also after an interrupted
run; :func:`restore_mirror` (the rollback of every experiment) undoes the faults, fails back when
the DR database was promoted, and waits until the mirror is healthy.

Runbook steps (:mod:`drdrill.runbook`): each returns its timed record (``runbook_step``, ``mode``,
``operator_s``, ``execute_s``, ``result``) and is manual when the configuration's
``runbook_manual`` (or ``$DRDRILL_RUNBOOK_MANUAL``) names it. Other configuration keys:
``runbook_dir`` (where manual steps wait; default ``runbook/`` beside the state file),
``manual_timeout_s`` (default 3600), ``status_webhook`` (an http://127.0.0.1 URL the status updates
are also POSTed to).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chaoslib.types import Configuration, Secrets

from drdrill import runbook
from drdrill.chaos import http
from drdrill.chaos.http import CRITICAL
from drdrill.errors import TargetError, WaitTimeout
from drdrill.mirror import failback, faults, health, links, operations
from drdrill.mirror.state import MirrorState, load_state
from drdrill.waiting import wait_until

__all__ = [
    "crash",
    "crash_az",
    "crash_patroni_leader",
    "crash_region",
    "crash_service",
    "declare_disaster",
    "degrade_link",
    "deploy_services",
    "detect_outage",
    "hang",
    "hang_patroni_leader",
    "isolate",
    "isolate_az",
    "isolate_region",
    "open_maintenance_window",
    "post_status_update",
    "promote_replica",
    "rebuild_old_primary",
    "restore_links",
    "restore_mirror",
    "scale_down_region",
    "scale_up_region",
    "switch_dns",
    "switch_dns_back",
    "switch_over",
    "undo_faults",
    "validate_critical_path",
    "wait_replica_caught_up",
    "wait_until_served",
]

log = logging.getLogger("drdrill")


def _say(line: str) -> None:
    log.info("%s", line)


def _state(configuration: Configuration) -> MirrorState:
    path = (configuration or {}).get("mirror_state") or None
    return load_state(path)


def _log_path(state: MirrorState) -> Path:
    return Path(state.path).with_name("faults.json")


def _record(state: MirrorState, fault: faults.Fault) -> dict[str, Any]:
    path = _log_path(state)
    log_entries = json.loads(path.read_text()) if path.is_file() else []
    log_entries.append(fault.to_dict())
    path.write_text(json.dumps(log_entries, indent=2))
    return fault.to_dict()


def _runbook_dir(configuration: Configuration, state: MirrorState | None = None) -> Path:
    configured = (configuration or {}).get("runbook_dir")
    if configured:
        return Path(configured)
    state = state or _state(configuration)
    return Path(state.path).with_name("runbook")


def _step(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make an action runbook step ``name`` (see :func:`drdrill.runbook.step_action`)."""
    return runbook.step_action(name, _runbook_dir)


# ---------------------------------------------------------------------------------------- faults


def crash(target: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Kill the containers ``target`` selects (e.g. ``primary/az:a``, ``primary/pg-a``, ``primary``)."""
    state = _state(configuration)
    return _record(state, faults.crash(target, state, progress=_say))


def hang(target: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Freeze (docker pause) the containers ``target`` selects."""
    state = _state(configuration)
    return _record(state, faults.hang(target, state, progress=_say))


def isolate(target: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Disconnect the containers ``target`` selects from every mirror network."""
    state = _state(configuration)
    return _record(state, faults.isolate(target, state, progress=_say))


def crash_service(service: str, region: str = "primary", configuration: Configuration = None,
                  secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Crash the process of every replica of ``service``; the orchestrator's restart policy heals it."""
    state = _state(configuration)
    return _record(state, faults.kill(faults.service(region, service), state, progress=_say))


def crash_patroni_leader(region: str = "primary", configuration: Configuration = None,
                         secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Kill the current Patroni leader of ``region``."""
    return crash(f"{region}/leader", configuration, secrets)


def hang_patroni_leader(region: str = "primary", configuration: Configuration = None,
                        secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Freeze the current Patroni leader of ``region``."""
    return hang(f"{region}/leader", configuration, secrets)


def crash_az(az: str, region: str = "primary", configuration: Configuration = None,
             secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Power loss in AZ ``az`` of ``region``: kill every container in it."""
    return crash(str(faults.az(region, az)), configuration, secrets)


def isolate_az(az: str, region: str = "primary", configuration: Configuration = None,
               secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Cut AZ ``az`` of ``region`` off the network: disconnect every container in it."""
    return isolate(str(faults.az(region, az)), configuration, secrets)


def crash_region(region: str = "primary", configuration: Configuration = None,
                 secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Lose region ``region``: kill every container in it."""
    return crash(str(faults.region(region)), configuration, secrets)


def isolate_region(region: str = "primary", configuration: Configuration = None,
                   secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Cut region ``region`` off every network (its containers keep running: split-brain risk)."""
    return isolate(str(faults.region(region)), configuration, secrets)


def degrade_link(link: str = "wan", delay_ms: float | None = None, loss_pct: float | None = None,
                 bandwidth: str | None = None, jitter_ms: float | None = None, region: str | None = None,
                 duration_s: float | None = None, configuration: Configuration = None,
                 secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Degrade link ``link`` (``wan`` or ``az``): one-way ``delay_ms``, ``jitter_ms``, ``loss_pct``,
    ``bandwidth`` (``100mbit``); fields not given keep the topology's value; ``region``: only that
    region's part. For ``duration_s`` then restored, else until :func:`restore_links` (or the rollback)."""
    state = _state(configuration)
    result = links.degrade(state, link, delay_ms=delay_ms, loss_pct=loss_pct, bandwidth=bandwidth,
                           jitter_ms=jitter_ms, region=region)  # fmt: skip
    _say(f"[fault] degrade link {link}: {result['links'][link]} ({result['containers']} containers "
         f"in {result['seconds']:.2f} s)")  # fmt: skip
    if duration_s:
        time.sleep(duration_s)
        result["restored"] = restore_links(configuration, secrets)
    return result


def restore_links(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Every link :func:`degrade_link` degraded back to the topology's (a rollback); what was restored."""
    state = _state(configuration)
    result = links.restore(state, source="fault")
    if result["restored"]:
        _say(f"[rollback] links restored: {', '.join(result['restored'])}")
    return result


def undo_faults(configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Undo every fault in the fault log that is not undone yet (newest first), and restore the links
    degraded by :func:`degrade_link` (not a scenario's condition: the drill undoes that); returns
    what was undone."""
    state = _state(configuration)
    path = _log_path(state)
    undone = [f"link {link}" for link in links.restore(state, source="fault")["restored"]]
    if not path.is_file():
        return undone
    entries = json.loads(path.read_text())
    for entry in reversed(entries):
        fault = faults.Fault(**entry)
        if fault.undone_s is None and fault.mirror_id == state.mirror_id:
            faults.undo(fault, state, progress=_say)
            entry["undone_s"] = fault.undone_s
            undone.append(repr(fault))
            path.write_text(json.dumps(entries, indent=2))  # after each: an interrupt loses nothing
    return undone


def restore_mirror(timeout_s: float = 300.0, configuration: Configuration = None,
                   secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Every experiment's rollback: undo the faults, fail back if DR was promoted, wait until healthy."""
    undone = undo_faults(configuration, secrets)
    state = _state(configuration)
    t0 = time.monotonic()
    layout = failback.restore_layout(state, timeout_s=timeout_s, progress=_say)
    healthy_after_s = health.wait_healthy(state, timeout_s=max(30.0, timeout_s - (time.monotonic() - t0)))
    _say(f"[rollback] mirror {state.mirror_id} healthy again ({healthy_after_s:.1f} s after the layout)")
    window = layout.get("maintenance_window_s")
    if window:  # the planned outage lasts until users are served again, not until the last API call
        in_a_row = 0

        def served_ten_times_in_a_row() -> bool:  # every replica behind the round robin
            nonlocal in_a_row
            in_a_row = in_a_row + 1 if http.every_service_served(state.global_http) else 0
            return in_a_row >= 10

        with contextlib.suppress(WaitTimeout):  # at most 30 s: the window then ends where it is
            wait_until(served_ten_times_in_a_row, timeout_s=30.0, interval_s=0.1,
                       what="every service served 10 checks in a row")
        window = [window[0], time.time()]
    return {"undone": undone, "layout": layout, "healthy_after_s": round(healthy_after_s, 3),
            "maintenance_window_s": window}


def wait_until_served(services: list[str] | None = None, stable_s: float = 10.0,
                      timeout_s: float = 300.0, configuration: Configuration = None,
                      secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Wait until every service (default: all) has been served through the global entry for ``stable_s``.

    Not served by ``timeout_s``: returns ``served`` false (the steady-state check then deviates);
    see :func:`drdrill.chaos.http.wait_until_served`.
    """
    return http.wait_until_served(_state(configuration).global_http, services, stable_s=stable_s,
                                  timeout_s=timeout_s, interval_s=0.5)  # fmt: skip


# ------------------------------------------------------------------------------ runbook: failover


@_step("detect")
def detect_outage(services: list[str] | None = None, consecutive: int = 3, interval_s: float = 1.0,
                  timeout_s: float = 120.0, configuration: Configuration = None,
                  secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Monitoring: wait until a critical service fails ``consecutive`` checks in a row through the global entry."""
    return http.detect_outage(_state(configuration).global_http, services, consecutive=consecutive,
                              interval_s=interval_s, timeout_s=timeout_s,
                              check_timeout_s=min(2.0, interval_s * 2))  # fmt: skip


@_step("declare")
def declare_disaster(confirm_s: float = 5.0, services: list[str] | None = None,
                     configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """The Incident Commander declares a regional disaster once the outage persisted ``confirm_s``.

    Manual: the operator's confirmation is the declaration; nothing more is waited for or checked.
    """
    state = _state(configuration)
    services = services or CRITICAL
    if "declare" in runbook.manual_steps(configuration):
        _status_update(configuration, state, "Regional disaster declared by the incident commander.")
        return {"declared": True, "by": "operator"}
    time.sleep(confirm_s)  # the outage must persist this long before anyone declares
    down = http.services_down(state.global_http, services)
    if not down:
        raise TargetError(
            f"the outage did not persist: {', '.join(services)} served again after {confirm_s:g} s; "
            "not declaring a regional disaster"
        )
    _status_update(configuration, state, f"Regional disaster declared: {', '.join(down)} down.")
    return {"declared": True, "down": down}


@_step("scale-up")
def scale_up_region(region: str = "dr", like: str | None = None,
                    configuration: Configuration = None, secrets: Secrets = None) -> dict[str, int]:  # fmt: skip
    """Scale every service of ``region`` to production size (that of region ``like``; default the primary)."""
    state = _state(configuration)
    return operations.scale_region(region, state, like=like, progress=_say)


@_step("promote")
def promote_replica(region: str = "dr", configuration: Configuration = None,
                    secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Promote ``region``'s standby database cluster to primary (writable)."""
    state = _state(configuration)
    return operations.promote_dr(state, region_name=region, progress=_say)


def _weights_to(state: MirrorState, region: str) -> dict[str, int]:
    if region not in state.regions:
        raise TargetError(f"no region {region!r}; regions are {', '.join(state.regions)}")
    weights = dict.fromkeys(state.regions, 0)
    weights[region] = 100
    return operations.set_weights(weights, state)


@_step("dns")
def switch_dns(to_region: str = "dr", configuration: Configuration = None,
               secrets: Secrets = None) -> dict[str, int]:  # fmt: skip
    """DNS failover: the global entry's weights send all traffic to ``to_region``."""
    return _weights_to(_state(configuration), to_region)


@_step("deploy")
def deploy_services(region: str = "dr", configuration: Configuration = None,
                    secrets: Secrets = None) -> dict[str, int]:  # fmt: skip
    """Deploy the release to ``region``: a rolling restart of its services."""
    state = _state(configuration)
    return operations.redeploy(region, state, progress=_say)


@_step("validate")
def validate_critical_path(expect_region: str = "dr", timeout_s: float = 60.0,
                           configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Critical-path synthetic checks through the global entry, answered by ``expect_region``."""
    state = _state(configuration)
    return operations.validate_critical_path(state, expect_region=expect_region, timeout_s=timeout_s,
                                         progress=_say)  # fmt: skip


def _status_update(configuration: Configuration, state: MirrorState, message: str) -> dict[str, Any]:
    entry = {"at_s": time.time(), "mirror": state.mirror_id, "message": message}
    directory = _runbook_dir(configuration, state)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "status-page.jsonl").open("a") as page:
        page.write(json.dumps(entry) + "\n")
    webhook = (configuration or {}).get("status_webhook")
    if webhook:
        host = urllib.parse.urlsplit(webhook).hostname
        if host not in ("127.0.0.1", "localhost"):
            raise TargetError(f"status_webhook {webhook!r} is not on 127.0.0.1; the local target "
                              "posts nowhere else")  # fmt: skip
        request = urllib.request.Request(webhook, data=json.dumps(entry).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5) as response:
            entry["webhook_status"] = response.status
    _say(f"[status page] {message}")
    return entry


@_step("notify")
def post_status_update(message: str = "We have failed over to our disaster-recovery region; "
                       "service is restored.", configuration: Configuration = None,
                       secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Post ``message`` to the status page (``status-page.jsonl`` in the runbook directory, and the webhook)."""
    return _status_update(configuration, _state(configuration), message)


# ------------------------------------------------------------------------------ runbook: failback


@_step("rebuild")
def rebuild_old_primary(region: str = "primary", upstream: str = "dr",
                        configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Rebuild ``region``'s database as a standby cluster replicating from ``upstream``."""
    state = _state(configuration)
    return failback.rebuild_as_replica(region, upstream, state, progress=_say)


@_step("catch-up")
def wait_replica_caught_up(region: str = "primary", max_lag_bytes: int = 1048576,
                           timeout_s: float = 120.0, configuration: Configuration = None,
                           secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Wait until ``region``'s standby cluster is within ``max_lag_bytes`` of its upstream."""
    state = _state(configuration)
    return failback.wait_caught_up(region, state, max_lag_bytes=max_lag_bytes, timeout_s=timeout_s,
                                 progress=_say)  # fmt: skip


@_step("maintenance")
def open_maintenance_window(message: str = "Planned maintenance: switching back to our primary "
                            "region.", configuration: Configuration = None,
                            secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Announce the maintenance window and stop traffic at the global entry (every weight 0)."""
    state = _state(configuration)
    update = _status_update(configuration, state, message)
    return {"weights": operations.set_weights(dict.fromkeys(state.regions, 0), state), "status": update}


@_step("switchover")
def switch_over(to_region: str = "primary", configuration: Configuration = None,
                secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Promote ``to_region``'s replica once caught up, and rebuild the current primary as its replica."""
    state = _state(configuration)
    return failback.switch_over(to_region, state, progress=_say)


@_step("dns-back")
def switch_dns_back(to_region: str = "primary", configuration: Configuration = None,
                    secrets: Secrets = None) -> dict[str, int]:  # fmt: skip
    """Failback DNS: the global entry's weights send all traffic to ``to_region`` again."""
    return _weights_to(_state(configuration), to_region)


@_step("scale-down")
def scale_down_region(region: str = "dr", configuration: Configuration = None,
                      secrets: Secrets = None) -> dict[str, int]:  # fmt: skip
    """Scale ``region``'s services back to their size in the topology (the pilot light)."""
    from drdrill.mirror.topology import load_topology

    state = _state(configuration)
    if region not in state.regions:
        raise TargetError(f"no region {region!r}; regions are {', '.join(state.regions)}")
    sizes = load_topology(state.data["topology"]).region(region).replicas
    for service_name, count in sizes.items():
        operations.scale(region, service_name, count, state, progress=_say)
    return {s: v["replicas"] for s, v in state.regions[region]["services"].items()}
