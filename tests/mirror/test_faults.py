"""Faults and runbook operations refuse what the mirror does not have; the probes on a healthy mirror.

On the session's shared mirror (``-m docker``, see conftest.py). The refusals must touch nothing (a
snapshot of every container's state and networks before and after). The faults themselves (leader
crash and hang, AZ loss, region loss with the runbook operations and the failback) run through the
shipped experiments, on the same fault API: tests/mirror/test_local_drill.py (the nightly suite:
leader crash, AZ power loss, cross-region failover) and tests/mirror/test_experiments.py (leader
hang, AZ isolation, region loss without the runbook, failback).
"""

from __future__ import annotations

import pytest

from drdrill.errors import TargetError
from drdrill.mirror import failback, faults, operations, patroni, probes, sql
from drdrill.mirror import health as mirror_health
from drdrill.mirror.plan import LABEL

pytestmark = pytest.mark.docker


def snapshot(client, mirror_id: str) -> dict:
    """State and networks of every container of the mirror (to prove nothing was touched)."""
    out = {}
    for c in client.api.containers(all=True, filters={"label": f"{LABEL}={mirror_id}"}):
        nets = sorted((c.get("NetworkSettings") or {}).get("Networks") or {})
        out[c["Id"]] = (c["State"], nets)
    return out


# --------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ("moon", "regions are primary, dr"),
        (faults.az("primary", "z"), "AZs are a, b, c"),
        ("primary/service:billing", "services are payments, auth, users, storefront, analytics"),
        (faults.container("primary", "pg-z"), "containers are etcd-a"),
        ("primary/role:dns", "roles are alb, etcd, postgres, redis, service"),
        (faults.leader("mars"), "regions are primary, dr"),
        ("primary/zone:a", "kinds are az, role, service"),
    ],
)
def test_unknown_targets_are_refused_naming_choices(mirror, docker_client, selector, fragment):
    before = snapshot(docker_client, mirror.mirror_id)
    for action in (faults.crash, faults.hang, faults.isolate):
        with pytest.raises(TargetError) as info:
            action(selector, mirror, client=docker_client)
        assert fragment in str(info.value), str(info.value)
    assert snapshot(docker_client, mirror.mirror_id) == before


def test_unknown_runbook_targets_are_refused(mirror, docker_client):
    before = snapshot(docker_client, mirror.mirror_id)
    with pytest.raises(TargetError, match="no service .billing.; services are"):
        operations.scale("dr", "billing", 2, mirror, client=docker_client)
    with pytest.raises(TargetError, match="regions are primary, dr"):
        operations.scale_region("moon", mirror, client=docker_client)
    with pytest.raises(TargetError, match="regions are"):
        operations.set_weights({"moon": 100}, mirror)
    with pytest.raises(TargetError, match="regions are primary, dr"):
        failback.rebuild_as_replica("moon", "dr", mirror, client=docker_client)
    with pytest.raises(TargetError, match="promote it first"):
        failback.rebuild_as_replica("primary", "dr", mirror, client=docker_client)
    assert snapshot(docker_client, mirror.mirror_id) == before


def test_probes_on_a_healthy_mirror(mirror):
    assert mirror_health.problems(mirror) == []
    assert patroni.leader(mirror, "primary") == "primary-pg-a"
    assert patroni.leader(mirror, "dr") == "dr-pg-a"
    assert probes.serving_region(mirror) == "primary"
    lag = sql.replication_lag(mirror)
    assert lag["dr"]["state"].startswith("streaming") and lag["dr"]["upstream"] == "primary"
    assert lag["primary-pg-b"]["state"] == "streaming, sync"
    health = probes.service_health(mirror)
    assert all(h["healthy"] for h in health["primary"].values()), health
    assert not health["dr"]["payments"]["healthy"]  # pilot light: not ready on a standby
    with pytest.raises(TargetError, match="regions are primary, dr"):
        patroni.leader(mirror, "moon")
