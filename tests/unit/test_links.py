"""The mirror's shaped links without Docker: the topology's links, the shaping plan and its commands,
the refusals of a bad degradation (pre-flight, both targets), the drill's condition ops."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drdrill.chaos.aws.control import experiment_problems as aws_problems
from drdrill.chaos.local.control import experiment_problems as local_problems
from drdrill.errors import ConfigError, TargetError
from drdrill.mirror import links
from drdrill.mirror.links import Node, check_degradation, commands, plan_rules
from drdrill.mirror.state import MirrorState
from drdrill.mirror.topology import (
    DEFAULT_LINKS,
    LinkSpec,
    bandwidth_bits,
    load_topology,
    parse_topology,
)

ROOT = Path(__file__).resolve().parents[2]


def topology(network: dict):
    return parse_topology({"regions": {"primary": {}, "dr": {}}, "network": network}, "topology.yaml")


def test_the_dr_plans_topology_has_a_70_ms_wan_and_1_ms_between_azs():
    links = load_topology().links
    assert links["wan"] == LinkSpec(35.0, 1.0, 0.0, "5gbit") and links["wan"].rtt_ms == 70.0
    assert links["az"].rtt_ms == 1.0 and links["az"].bandwidth is None
    assert topology({}).links == DEFAULT_LINKS
    assert topology({"links": {"az": None}}).links["az"] == LinkSpec()  # given as nothing: unshaped


@pytest.mark.parametrize("links, message", [
    ({"wan": {"bandwidth": "5"}}, "network.links.wan.bandwidth: '5' is not a rate with a unit; use one of bit, kbit"),
    ({"wan": {"bandwidth": 100}}, "network.links.wan.bandwidth: 100 is not a rate with a unit"),
    ({"wan": {"bandwidth": "5 parsecs"}}, "network.links.wan.bandwidth: '5 parsecs' is not a rate with a unit"),
    ({"lan": {}}, "network.links.lan: unknown link; links are wan, az"),
    ({"wan": {"delay_ms": -1}}, "network.links.wan.delay_ms: expected a one-way delay in ms >= 0, got -1"),
    ({"az": {"loss_pct": 101}}, "network.links.az.loss_pct: expected a loss % in 0..100"),
    ({"wan": {"jitter": 1}}, "network.links.wan.jitter: unknown field; expected one of delay_ms"),
])  # fmt: skip
def test_a_bad_link_is_named_at_load_time(links, message):
    with pytest.raises(ConfigError, match="^topology.yaml: " + message.replace("(", r"\(")):
        topology({"links": links})


def test_bandwidths_read_with_tc_units():
    assert bandwidth_bits("5gbit") == 5 * 10**9 and bandwidth_bits("512kbit") == 512_000
    assert bandwidth_bits("1mbps") == 8 * 10**6 and bandwidth_bits("1MiBit") == 2**20


WAN, AZ = DEFAULT_LINKS["wan"], DEFAULT_LINKS["az"]


def mirror_nodes() -> list[Node]:
    return [
        Node("entry", "global", "global", "dns", {"wan": "10.0.0.2"}),
        Node("p-alb", "primary", "regional", "alb", {"primary": "10.1.0.2", "wan": "10.0.0.10"}),
        Node("p-redis", "primary", "regional", "redis", {"primary": "10.1.0.3"}),
        Node("p-pg-a", "primary", "a", "postgres", {"primary": "10.1.0.20"}),
        Node("p-pg-b", "primary", "b", "postgres", {"primary": "10.1.0.21"}),
        Node("p-pay-1", "primary", "a", "service", {"primary": "10.1.0.130"}),
        Node("d-alb", "dr", "regional", "alb", {"dr": "10.2.0.2", "wan": "10.0.0.11"}),
        Node("d-pg-a", "dr", "a", "postgres", {"dr": "10.2.0.20", "wan": "10.0.0.20"}),
        Node("d-pay-1", "dr", "b", "service", {"dr": "10.2.0.130"}),
    ]


def test_the_plan_shapes_the_wan_between_regions_and_the_links_between_azs_only():
    plan = {name: {(r.peer, r.link) for r in rules}
            for name, rules in plan_rules(mirror_nodes(), DEFAULT_LINKS).items()}  # fmt: skip
    # the wan: ALBs and DR members with the other region's wan addresses, never the global entry
    assert plan["p-alb"] == {("10.0.0.11", "wan"), ("10.0.0.20", "wan")}
    assert plan["d-alb"] == {("10.0.0.10", "wan")}
    # the replication path: both ends, so a round trip is 2 x delay_ms
    assert ("10.0.0.10", "wan") in plan["d-pg-a"] and ("10.0.0.20", "wan") in plan["p-alb"]
    # AZ a <-> b in a region; the ALB and a regional Redis have no AZ; the entry is DNS
    assert plan["p-pg-a"] == {("10.1.0.21", "az")}
    assert plan["p-pg-b"] == {("10.1.0.20", "az"), ("10.1.0.130", "az")}
    assert plan["d-pg-a"] == {("10.0.0.10", "wan"), ("10.2.0.130", "az")}
    assert {"entry", "p-redis"}.isdisjoint(plan)
    assert not any(peer in ("10.0.0.2", "10.1.0.2", "10.1.0.3") for rules in plan.values() for peer, _ in rules)


def test_a_degradation_of_one_region_covers_only_what_touches_it():
    degraded = {"az": {"spec": {"delay_ms": 100.0, "jitter_ms": 0.0, "loss_pct": 0.0, "bandwidth": None},
                       "region": "dr"}}  # fmt: skip
    plan = plan_rules(mirror_nodes(), DEFAULT_LINKS, degraded)
    assert {r.spec.delay_ms for r in plan["d-pay-1"]} == {100.0}
    assert {r.spec.delay_ms for r in plan["p-pg-a"]} == {0.5}
    unshaped = {"wan": LinkSpec(), "az": LinkSpec()}
    assert plan_rules(mirror_nodes(), unshaped) == {}  # nothing to shape: no container touched


def test_the_commands_delay_on_ingress_through_one_queue_per_spec_and_rate_with_htb():
    slow = LinkSpec(150.0, 2.0, 1.0, "100mbit")
    rules = plan_rules(mirror_nodes(), {"wan": slow, "az": AZ})["d-pg-a"]
    done = commands(rules)
    assert done.queues == {0: (0.15, 0.002, 1.0), 1: (0.0005, 0.0001, 0.0)} or \
        done.queues == {1: (0.15, 0.002, 1.0), 0: (0.0005, 0.0001, 0.0)}
    wan_queue = next(q for q, v in done.queues.items() if v[0] == 0.15)
    assert "-A PREROUTING -j DRDRILL-LINKS" in done.iptables
    assert f"-A DRDRILL-LINKS -s 10.0.0.10/32 -j NFQUEUE --queue-num {wan_queue} --queue-bypass" in done.iptables
    assert "htb rate 100mbit" in done.tc and "match ip dst 10.0.0.10/32 flowid 1:10" in done.tc
    assert "10.2.0.130/32 flowid" not in done.tc  # the az link has no bandwidth limit
    cleared = commands([])
    assert cleared.queues == {} and "NFQUEUE" not in cleared.iptables and "htb" not in cleared.tc
    assert 'tc qdisc del dev "$dev" root' in cleared.tc


@pytest.mark.parametrize("args, problem", [
    ({"link": "lan"}, "unknown link 'lan'; links are wan, az"),
    ({"delay_ms": -5}, "delay_ms must be a number >= 0, got -5"),
    ({"loss_pct": 150}, "loss_pct must be a number 0..100, got 150"),
    ({"bandwidth": "100"}, "bandwidth: '100' is not a rate with a unit; use one of bit"),
])  # fmt: skip
def test_a_bad_degradation_is_refused_by_the_local_preflight_naming_the_choices(args, problem):
    experiment = {"method": [{"type": "action", "name": "slow wan", "provider": {
        "type": "python", "module": "drdrill.chaos.local.actions", "func": "degrade_link",
        "arguments": {"link": "wan", "delay_ms": 300, **args}}}]}  # fmt: skip
    problems = local_problems(experiment, load_topology())
    assert problems == [f"method activity 'slow wan': {problem}"] or problem in problems[0]
    assert check_degradation("wan", 300, 0, "100mbit", 1) == []


def test_the_aws_target_refuses_a_degraded_link_in_one_line():
    from drdrill.aws.config import load_aws_config

    experiment = {"method": [{"type": "action", "name": "slow wan", "provider": {
        "type": "python", "module": "drdrill.chaos.aws.actions", "func": "degrade_link",
        "arguments": {"delay_ms": 300}}}]}  # fmt: skip
    problems = aws_problems(experiment, load_aws_config(ROOT / "examples" / "aws-mirror.yaml"))
    assert len(problems) == 1 and "the aws target cannot shape a real WAN" in problems[0]
    assert "--target local" in problems[0]


def test_a_degradation_is_refused_before_the_state_changes(tmp_path):
    state = MirrorState({"mirror_id": "m1", "regions": {"primary": {}, "dr": {}}, "containers": [],
                         "networks": [], "links": {"configured": {}, "degraded": {}}})  # fmt: skip
    from drdrill.mirror import links

    with pytest.raises(TargetError, match="cannot degrade link 'wan': bandwidth: '9' is not a rate"):
        links.degrade(state, "wan", bandwidth="9")
    with pytest.raises(TargetError, match="no region 'eu'; regions are primary, dr"):
        links.degrade(state, "wan", delay_ms=10, region="eu")
    assert state.data["links"]["degraded"] == {}


def test_the_drills_wan_condition_is_a_steady_state_op_undone_at_close(tmp_path):
    """t_fault is the first *method* action: the condition must not be one."""
    from drdrill.config import default_config
    from drdrill.drill import Drill
    from drdrill.history import read_ops
    from drdrill.run import RunDir
    from drdrill.targets import TargetBase

    calls = []

    class Shaped(TargetBase):
        name = "fake"
        base_url = "http://127.0.0.1:1"

        def degrade_link(self, link, **spec):
            calls.append(("degrade", link, spec))
            return {}

        def restore_links(self):
            calls.append(("restore",))
            return {}

        def final_read(self, prefix):
            return {}

    config = default_config()
    run = RunDir.create(tmp_path, "wan", config, target="fake")
    drill = Drill(Shaped(), config, run, [])
    drill.degrade_link("wan", delay_ms=150.0)
    drill.close()
    assert calls == [("degrade", "wan", {"delay_ms": 150.0}), ("restore",)]
    ops = [op for op in read_ops(run.history_path) if op.get("process") == "nemesis"]
    assert [op["f"] for op in ops] == ["start:degrade_link wan delay_ms=150.0", "stop:degrade_link wan delay_ms=150.0",
                                       "start:restore_links wan", "stop:restore_links wan"]  # fmt: skip
    assert {op["phase"] for op in ops} == {"steady-state"}
    assert json.loads(run.meta_path.read_text())["conditions"] == [{"degrade_link": "wan", "delay_ms": 150.0}]
    with pytest.raises(TargetError, match="the base target cannot degrade a link"):
        type("Base", (TargetBase,), {"name": "base"})().degrade_link("wan")


def test_a_partition_drops_everything_from_the_isolated_addresses_in_the_filter_table():
    # INPUT of the filter table comes after the delayer's mangle PREROUTING queue: what the delayer
    # still holds from a partitioned peer ("on the wire") is dropped when it lets it go
    script = links.partition_script(["172.30.1.10", "172.30.0.10", "172.30.1.10"])
    lines = script.splitlines()
    assert lines[0] == "set -e"
    assert f"iptables -w -I INPUT -j {links.PARTITION_CHAIN}" in lines[2]
    drops = [line for line in lines if line.endswith("-j DROP")]
    assert drops == [f"iptables -w -A {links.PARTITION_CHAIN} -s 172.30.0.10/32 -j DROP",
                     f"iptables -w -A {links.PARTITION_CHAIN} -s 172.30.1.10/32 -j DROP"]
    assert "mangle" not in script  # the shaping's own table (rewritten by every reshape) is untouched
