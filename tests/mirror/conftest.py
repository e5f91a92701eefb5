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

import pytest

from tests.mirror.shared import SharedMirror, layout_problems, restore, stop


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


@pytest.fixture
def mirror(shared_mirror):
    """The shared mirror's state (fresh from its file), healthy and in its layout."""
    from drdrill.mirror.state import load_state

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
