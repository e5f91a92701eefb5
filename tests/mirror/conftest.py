"""One real mirror for every mirror test of the session, kept healthy between tests and taken down last.

``shared_mirror`` (session) brings the standard topology up once, through the local target itself
(:class:`~drdrill.targets.local.LocalTarget`, the way a drill does), in a state file of its own.
``mirror`` (per test) hands each test that state, loaded fresh from the file, after making sure the
mirror is healthy and in its topology's layout: a test that left it otherwise (a failure mid-fault,
a kill without a switchover back) is rolled back first with the experiments' own rollback
(``restore_mirror``), so one failure never cascades. Tests that leave the mirror as they found it
cost nothing here. The test marked ``mirror_teardown`` (it takes the mirror down and checks that
nothing is left) runs after every other test that uses the mirror, whatever the order of collection.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

UP_BOUND_S = 120.0
RESTORE_BOUND_S = 300.0


@dataclass
class SharedMirror:
    """The session's mirror: the target that brought it up, its state file, its time to healthy."""

    target: object  # drdrill.targets.local.LocalTarget
    path: Path
    up_s: float

    @property
    def mirror_id(self) -> str:
        return self.target.state.mirror_id


def pytest_collection_modifyitems(config, items):
    """Move the ``mirror_teardown`` tests right after the last other test that uses the mirror."""
    last = [item for item in items if item.get_closest_marker("mirror_teardown")]
    if not last:
        return
    rest = [item for item in items if item not in last]
    users = [i for i, item in enumerate(rest) if "shared_mirror" in getattr(item, "fixturenames", ())]
    at = users[-1] + 1 if users else len(rest)
    items[:] = [*rest[:at], *last, *rest[at:]]


@pytest.fixture(scope="session")
def docker_client():
    from drdrill.mirror.engine import ensure_docker

    return ensure_docker(progress=print)


@pytest.fixture(scope="session")
def shared_mirror(docker_client, tmp_path_factory):
    """The standard mirror, brought up once by the local target; taken down at the end of the session
    unless the ``mirror_teardown`` test did already."""
    from drdrill.mirror.images import build_images
    from drdrill.targets.local import LocalTarget

    build_images(progress=print)  # time to healthy is measured from built images
    path = tmp_path_factory.mktemp("mirror") / "state.json"
    target = LocalTarget(state_file=str(path))
    t0 = time.monotonic()
    try:
        target.start()
        assert target._started_here, f"{path} named a mirror already up"
        yield SharedMirror(target, path, time.monotonic() - t0)
    finally:
        if path.exists() or target.state is not None:
            stop(target)


def stop(target) -> None:
    """``target.stop()`` (down, as a drill that brought the mirror up does), tolerating only Docker
    20.10's stale-endpoint bug (moby#42119): after isolation churn it sometimes refuses to delete a
    network no container uses; every container is gone."""
    from drdrill.errors import TargetError

    try:
        target.stop()
    except TargetError as exc:
        if "moby#42119" not in str(exc):
            raise
        print(f"engine bug, left an empty network: {exc}")


def layout_problems(state) -> list[str]:
    """How the mirror differs from its healthy topology layout: :func:`probes.problems`, then the
    region roles, the serving region, the leader's AZ, the weights, DR streaming and DR's sizes."""
    from drdrill.mirror import probes
    from drdrill.mirror.topology import load_topology

    found = probes.problems(state)
    if found:
        return found
    topology = load_topology(state.data["topology"])
    for region in topology.regions:
        if state.regions[region.name]["role"] != region.role:
            found.append(f"{region.name} has role {state.regions[region.name]['role']}")
        sizes = {s: v["replicas"] for s, v in state.regions[region.name]["services"].items()}
        if sizes != dict(region.replicas):
            found.append(f"{region.name} runs {sizes}, not {dict(region.replicas)}")
    home = next(r for r in topology.regions if r.role == "primary")
    if probes.serving_region(state) != home.name:
        found.append(f"{home.name} is not serving")
    leader = probes.patroni_leader(state, home.name)
    wanted = f"{home.name}-pg-{home.database[0]}"
    if leader != wanted:
        found.append(f"{home.name}'s leader is {leader}, not {wanted}")
    weights = {r.name: r.weight for r in topology.regions}
    if state.data["global"].get("weights") != weights:
        found.append(f"weights {state.data['global'].get('weights')}, not {weights}")
    for name, lag in probes.replication_lag(state).items():
        if name in state.regions and not str(lag.get("state", "")).startswith("streaming"):
            found.append(f"{name} is not streaming ({lag})")
    return found


def restore(shared: SharedMirror) -> None:
    """The experiments' rollback (undo logged faults, fail back, leader back, weights, sizes, healthy)."""
    from drdrill.chaos.local.actions import restore_mirror

    restore_mirror(RESTORE_BOUND_S, configuration={"mirror_state": str(shared.path)})


@pytest.fixture
def mirror(shared_mirror):
    """The shared mirror's state (fresh from its file), healthy and in its layout."""
    from drdrill.mirror.lifecycle import load_state

    state = load_state(shared_mirror.path)
    found = layout_problems(state)
    if found:
        print(f"\n[mirror] {shared_mirror.mirror_id} not as the topology lays it out "
              f"({'; '.join(found)}): restoring it before the test")  # fmt: skip
        restore(shared_mirror)
        state = load_state(shared_mirror.path)
        found = layout_problems(state)
        assert not found, f"mirror {state.mirror_id} could not be restored: {found}"
    return state
