"""The one Patroni REST client of the mirror: a region's cluster as its leader sees it, and what to ask of it.

Reads: :func:`cluster` (``/cluster`` from the member whose own ``/patroni`` says it leads),
:func:`members`, :func:`leader`, :func:`leader_timeline`, :func:`synchronous_mode`. Writes:
:func:`patch_config` (the dynamic configuration, retried while the DCS view is not loaded),
:func:`switchover`, :func:`reinitialize`. Waits: :func:`wait_cluster`, :func:`wait_streaming`.
Every request goes to a member's REST port published on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from drdrill.errors import TargetError, WaitTimeout
from drdrill.waiting import wait_until

if TYPE_CHECKING:
    from drdrill.mirror.state import MirrorState

__all__ = [
    "LEADER_ROLES",
    "cluster",
    "get_json",
    "leader",
    "leader_timeline",
    "members",
    "patch_config",
    "reinitialize",
    "shown",
    "switchover",
    "synchronous_mode",
    "wait_cluster",
    "wait_streaming",
]

LEADER_ROLES = ("leader", "standby_leader")


def get_json(url: str, timeout_s: float = 1.0) -> Any:
    """GET ``url`` and decode its JSON body; OSError or ValueError when that fails."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.loads(response.read())


def cluster(state: MirrorState, region: str, *, required: bool = False) -> dict[str, Any]:
    """Patroni's ``/cluster`` of ``region`` as its leader sees it ({} if no member answers).

    A member back from a partition keeps reporting its stale view of the cluster until its DCS
    watch catches up (it may still name itself leader), so the view is taken from the one member
    whose own ``/patroni`` says it leads; without exactly one such member, from the first that
    answers. ``required``: TargetError instead of {} when no member answers.
    """
    state.check_region(region)
    views: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for member in state.patroni(region).values():
        with contextlib.suppress(OSError, ValueError):
            view = get_json(member["rest"] + "/cluster", 1.0)
            own: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                own = get_json(member["rest"] + "/patroni", 1.0)
            views.append((own, view))
    leading = [view for own, view in views
               if own.get("role") in ("primary", "master", "standby_leader")
               and own.get("state") in ("running", "streaming")]  # fmt: skip
    if len(leading) == 1:
        return leading[0]
    if views:
        return views[0][1]
    if required:
        raise TargetError(f"no Patroni REST API of region {region} answers")
    return {}


def members(state: MirrorState, region: str) -> list[dict[str, Any]]:
    """The members of ``region``'s cluster as its leader sees them ([] when no member answers)."""
    return cluster(state, region).get("members", [])


def shown(listed: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    """(name, role, state) of each member: how messages show a cluster."""
    return [(m.get("name"), m.get("role"), m.get("state")) for m in listed]


def leader(state: MirrorState, region: str) -> str | None:
    """The member holding ``region``'s leader lock (leader or standby leader), None without one."""
    return next((m.get("name") for m in members(state, region) if m.get("role") in LEADER_ROLES),
                None)  # fmt: skip


def leader_timeline(state: MirrorState, region: str) -> int:
    """The timeline ``region``'s leader reports (0 when it reports none)."""
    return max((int(m.get("timeline") or 0) for m in members(state, region)
                if m.get("role") in LEADER_ROLES), default=0)  # fmt: skip


def synchronous_mode(state: MirrorState, region: str) -> bool:
    """Whether ``region``'s dynamic configuration has ``synchronous_mode`` on (False if none answers)."""
    for member in state.patroni(region).values():
        with contextlib.suppress(OSError, ValueError):
            return bool(get_json(member["rest"] + "/config", 1.0).get("synchronous_mode"))
    return False


def _send(url: str, method: str, body: dict[str, Any], timeout_s: float) -> bytes:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return response.read()


def patch_config(state: MirrorState, region: str, patch: dict[str, Any],
                 retry_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
    """PATCH the region's dynamic Patroni config through any member that takes it; the new config.

    A member whose view of the DCS is not loaded yet (just back from a partition, etcd re-forming
    its quorum) answers 409 or 503: another member is tried, and all again for up to ``retry_s``.
    """
    error = ""

    def attempt() -> dict[str, Any] | None:
        nonlocal error
        for member in state.patroni(region).values():
            try:
                return json.loads(_send(member["rest"] + "/config", "PATCH", patch, 5.0) or b"{}")
            except urllib.error.HTTPError as exc:
                error = f"{exc.code} {exc.read()[:200]!r}"
                if exc.code not in (409, 503):
                    raise TargetError(
                        f"Patroni of region {region} refused PATCH /config {patch}: {error}"
                    ) from exc
            except (OSError, ValueError) as exc:
                error = str(exc)
        return None

    try:
        return wait_until(attempt, timeout_s=retry_s, interval_s=0.5,
                          what=f"PATCH /config of region {region}")  # fmt: skip
    except WaitTimeout:
        raise TargetError(f"no Patroni member of region {region} took PATCH /config "
                          f"{patch} within {retry_s:.0f} s; last answer: {error}") from None  # fmt: skip


def reinitialize(state: MirrorState, region: str, member: str) -> None:
    """Ask ``member`` to re-clone itself from its leader (``POST /reinitialize``, forced); best effort."""
    with contextlib.suppress(OSError):
        _send(state.patroni(region)[member]["rest"] + "/reinitialize", "POST", {"force": True}, 5.0)


def switchover(state: MirrorState, region: str, current: str, candidate: str,
               timeout_s: float = 60.0) -> None:  # fmt: skip
    """Ask Patroni for a planned switchover of ``region``'s leader from ``current`` to ``candidate``."""
    body = {"leader": current, "candidate": candidate}
    try:
        _send(state.patroni(region)[candidate]["rest"] + "/switchover", "POST", body, timeout_s)
    except urllib.error.HTTPError as exc:
        raise TargetError(f"Patroni refused the switchover {current} -> {candidate}: {exc.code} "
                          f"{exc.read()[:200]!r}") from exc  # fmt: skip


def wait_cluster(state: MirrorState, region: str, timeout_s: float) -> bool:
    """Wait until every Patroni member of ``region`` is back in its cluster (after an undo);
    whether it is (no error at the bound: the caller's next step says what is missing)."""
    try:
        return wait_until(lambda: len(members(state, region)) == len(state.patroni(region)),
                          timeout_s=timeout_s, what=f"every member of {region} in its cluster")  # fmt: skip
    except WaitTimeout:
        return False


def wait_streaming(state: MirrorState, region: str, timeout_s: float) -> list[dict[str, Any]]:
    """The members once ``region``'s standby leader and every replica stream ([] at the bound)."""

    def streaming() -> list[dict[str, Any]]:
        listed = members(state, region)
        lead = [m for m in listed if m.get("role") == "standby_leader"]
        if (lead and len(listed) == len(state.patroni(region))
                and all(m.get("state") == "streaming" for m in listed)):  # fmt: skip
            return listed
        return []

    try:
        return wait_until(streaming, timeout_s=timeout_s, what=f"{region} streaming")
    except WaitTimeout:
        return []
