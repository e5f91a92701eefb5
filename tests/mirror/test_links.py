"""The shaped links on the session's shared mirror: the configured WAN and AZ delays are there
(measured RTT), degrade_link raises the WAN's and the rollback brings it back, clear removes every
shaping and shape puts it back. Figures for other delays: bench/wan_rtt.py."""

from __future__ import annotations

import pytest

from drdrill.chaos.local.actions import degrade_link, undo_faults
from drdrill.mirror import health, links, status
from drdrill.mirror.state import load_state

from .shared import assert_restored

pytestmark = pytest.mark.docker


def within(measured: float, configured: float, error: float = 0.10) -> bool:
    return abs(measured - configured) <= error * configured


def test_the_configured_wan_and_az_delays_are_measured(mirror, docker_client):
    configured = links.configured(mirror)
    rtt = links.measure_rtt_ms(mirror, docker_client)
    assert within(rtt["wan"], configured["wan"].rtt_ms), rtt  # 70 ms, within 10 %
    # 1 ms between AZs; each packet's detour through the user-space delayer adds ~0.1-0.3 ms
    # (the upper bound is loose: a busy 2-core machine delays the delayer; the lower bound is the test)
    assert configured["az"].rtt_ms * 0.9 <= rtt["az:primary"] <= configured["az"].rtt_ms + 5.0, rtt
    shown = status.status(mirror, client=docker_client).links
    assert shown["wan"]["configured_ms"] == 70.0 and within(shown["wan"]["measured_ms"], 70.0), shown


def test_degrade_link_raises_the_wan_rtt_and_the_rollback_brings_it_back(mirror, docker_client, shared_mirror):
    configuration = {"mirror_state": str(shared_mirror.path)}
    try:
        done = degrade_link("wan", delay_ms=150, configuration=configuration)
        assert "degraded to 150 ms" in done["links"]["wan"]
        assert within(links.measure_rtt_ms(mirror, docker_client)["wan"], 300.0)
        assert links.degraded(mirror)["wan"]["source"] == "fault"  # in the state file: any process
        assert "link wan" in undo_faults(configuration)  # what restore_mirror, the rollback, runs first
        assert links.degraded(mirror) == {}
        assert within(links.measure_rtt_ms(mirror, docker_client)["wan"], 70.0)
    finally:
        links.restore(mirror, docker_client)
    # a 150 ms wan stretches the DR walreceiver's round trips: give replication a moment to catch up
    health.wait_healthy(load_state(shared_mirror.path), timeout_s=60)
    assert_restored(shared_mirror.path)


def test_clear_removes_every_shaping_and_shape_puts_it_back(mirror, docker_client):
    try:
        links.clear(mirror, docker_client)
        cleared = links.measure_rtt_ms(mirror, docker_client)
        # every qdisc, rule, delayer gone: far below the 70 ms and 1 ms configured (a busy machine adds a few)
        assert cleared["wan"] < 7.0 and all(rtt < 5.0 for rtt in cleared.values()), cleared
    finally:
        links.shape(mirror, docker_client)
    assert within(links.measure_rtt_ms(mirror, docker_client)["wan"], 70.0)


def test_a_crashed_container_comes_back_shaped_and_its_old_delayers_pid_file_kills_nothing(
        mirror, docker_client, shared_mirror):
    # the delayer's pid file outlives the container's restart; the pid in it then belongs to another
    # process (once: etcd's, which the reshape killed — the AZ power-loss drill never recovered)
    from drdrill.mirror import faults

    state = load_state(shared_mirror.path)
    fault = faults.crash("primary/etcd-a", state, client=docker_client)
    faults.undo(fault, state, client=docker_client)
    assert 0.9 <= links.measure_rtt_ms(mirror, docker_client)["az:primary"] <= 6.0  # reshaped: 2 x 0.5 ms
    # etcd-a rejoins its cluster (the old delayer's pid was etcd's own once: it was killed right here)
    health.wait_healthy(load_state(shared_mirror.path), timeout_s=60)
    (etcd_a,) = faults.resolve("primary/etcd-a", state, client=docker_client)
    assert etcd_a["state"] == "running"
    assert_restored(shared_mirror.path)
