"""What a mirror leaves behind is visible (``leftovers``) and swept by label (``down``)."""

from __future__ import annotations

import uuid

import docker
import pytest

from drdrill.mirror.engine import ensure_docker
from drdrill.mirror.lifecycle import down, leftovers
from drdrill.mirror.plan import LABEL

pytestmark = [pytest.mark.docker]


def test_a_labelled_network_is_a_leftover_until_down_sweeps_it(tmp_path):
    ensure_docker()
    client = docker.from_env()
    mirror = f"mtest{uuid.uuid4().hex[:6]}"
    network = client.networks.create(f"drdrill-{mirror}-x", labels={LABEL: mirror})
    try:
        assert leftovers(client)[mirror] == {"containers": 0, "networks": 1}
        removed = down(mirror, state_file=tmp_path / "state.json", progress=lambda line: None, client=client)
        assert removed == 1 and mirror not in leftovers(client)
    finally:
        try:
            network.remove()
        except docker.errors.NotFound:
            pass
