"""The local mirror's topology and lifecycle.

Without Docker: the topology file is validated with errors naming the file and the field; the plan
(networks, containers, labels, Patroni/HAProxy configs) follows the DR plan; the CLI's exit codes.

With Docker (``-m docker``), on the session's shared mirror (conftest.py): it came up healthy within
a bound, Patroni has a leader and a synchronous standby, a write through the primary region's SQL
port on 127.0.0.1 is readable there and reaches the DR standby cluster, the global entry answers and
a weight switch changes the serving region, and ``down`` (the session's last mirror test) leaves
nothing labelled behind. A killed leader being replaced is checked by the nightly drill's
database-leader-crash run (test_local_drill.py). Figures (time to healthy, teardown) are printed
(``-s``) and written to ``reports/mirror/figures.json``.
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from drdrill.errors import ConfigError
from drdrill.mirror import cli
from drdrill.mirror.plan import LABEL, plan_mirror
from drdrill.mirror.topology import DEFAULT_TOPOLOGY, load_topology, parse_topology
from tests.mirror.shared import stop

REQUIRED_LABELS = ("drdrill.mirror", "drdrill.region", "drdrill.az", "drdrill.role")
SUBNETS = {"wan": "172.30.10.0/24", "primary": "172.30.11.0/24", "dr": "172.30.12.0/24"}
FIGURES = Path(__file__).resolve().parents[2] / "reports" / "mirror" / "figures.json"
UP_BOUND_S = 90.0  # goal: <= 30 s on 2 cores from built images; generous for a loaded CI machine
DOWN_BOUND_S = 8.0  # goal: <= 5 s


def default_data() -> dict:
    return yaml.safe_load(DEFAULT_TOPOLOGY.read_text())


# ------------------------------------------------------------------------------ topology (no Docker)


def test_default_topology_mirrors_the_dr_plan():
    topology = load_topology()
    assert topology.source == str(DEFAULT_TOPOLOGY)
    primary, dr = topology.primary, topology.dr
    assert (primary.name, dr.name) == ("primary", "dr")
    assert primary.azs == ("a", "b", "c") and primary.etcd == ("a", "b", "c")
    assert primary.database[:2] == ("a", "b")  # leader in a, synchronous standby in b
    assert (primary.weight, dr.weight) == (100, 0)
    tiers = {s.name: s.tier for s in topology.services}
    assert tiers == {"payments": "critical", "auth": "critical", "users": "critical",
                     "storefront": "non-critical", "analytics": "non-critical"}  # fmt: skip
    assert "/_lookup" in topology.service("payments").paths
    assert all(count <= 1 for count in dr.replicas.values())  # pilot light
    assert all(count >= 1 for count in primary.replicas.values())
    t = topology.patroni
    assert (t.ttl, t.loop_wait, t.retry_timeout) == (10, 2, 4)
    assert t.synchronous_mode and t.use_pg_rewind
    assert topology.versions["patroni"] == "4.1.5"


def test_replicas_are_spread_over_azs():
    primary = load_topology().primary
    for service, count in primary.replicas.items():
        azs = [primary.placement(service, i) for i in range(count)]
        assert len(set(azs)) == count, (service, azs)


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        (lambda d: d["patroni"].update(ttl="ten"), "patroni.ttl", "expected an integer"),
        (lambda d: d["patroni"].update(ttl=9), "patroni.ttl", "loop_wait + 2 * retry_timeout"),
        (lambda d: d["patroni"].update(synchronous_mode="yes"), "patroni.synchronous_mode",
         "true or false"),
        (lambda d: d["patroni"].update(ttl_s=10), "patroni.ttl_s", "unknown field"),
        (lambda d: d["regions"]["dr"].update(database=["d"]), "regions.dr.database[0]",
         "AZ 'd' is not one of the region's azs"),
        (lambda d: d["regions"]["primary"].update(etcd=["a", "b"]), "regions.primary.etcd",
         "odd member count"),
        (lambda d: d["regions"]["primary"]["replicas"].update(billing=1),
         "regions.primary.replicas.billing", "unknown service"),
        (lambda d: d["regions"]["primary"]["replicas"].update(payments=-1),
         "regions.primary.replicas.payments", "between 0 and 9"),
        (lambda d: d["regions"]["dr"].update(role="primary"), "regions",
         "exactly one region must have role primary"),
        (lambda d: d["regions"]["dr"].update(role="backup"), "regions.dr.role",
         "not one of primary, dr"),
        (lambda d: d["regions"]["dr"].update(redis="z"), "regions.dr.redis", "neither"),
        (lambda d: d["services"].update(command="docker"), "services.command",
         "not one of auto, platform, stub, none"),
        (lambda d: d["services"]["catalog"]["auth"].update(paths=["/payments"]),
         "services.catalog.auth.paths[0]", "already routed to payments"),
        (lambda d: d["network"].update(pool="8.8.0.0/16"), "network.pool", "not a private range"),
        (lambda d: d.pop("regions"), "regions", "missing"),
        (lambda d: d.update(region={}), "region", "unknown field"),
        (lambda d: d["regions"].update(Global={}), "regions.Global", "region names"),
    ],
)  # fmt: skip
def test_topology_errors_name_the_file_and_field(tmp_path, change, field, fragment):
    data = default_data()
    change(data)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError) as info:
        load_topology(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert fragment in message, message


def test_topology_file_problems(tmp_path):
    with pytest.raises(ConfigError, match="cannot read topology"):
        load_topology(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("regions: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{bad}: not valid YAML"):
        load_topology(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"\(top level\): expected a mapping"):
        load_topology(bad)


def test_minimal_topology_gets_defaults():
    topology = parse_topology({"regions": {"primary": {}}}, source="mini")
    assert topology.dr is None
    assert topology.primary.database == ("a", "b")
    assert topology.primary.replicas["payments"] == 1


# ---------------------------------------------------------------------------------- plan (no Docker)


@pytest.fixture(scope="module")
def plan():
    return plan_mirror(load_topology(), "mtest", SUBNETS, "drdrill/node:test", "stub")


def test_every_container_and_network_is_labelled(plan):
    for thing in [*plan.networks, *plan.containers]:
        assert all(thing.labels.get(k) for k in REQUIRED_LABELS), thing
        assert thing.labels[LABEL] == "mtest"
        assert thing.name.startswith("drdrill-mtest-")
    roles = {c.role for c in plan.containers}
    assert roles == {"etcd", "postgres", "alb", "redis", "service", "dns"}


def test_etcd_has_static_ips_one_per_az(plan):
    etcd = plan.by_role("etcd", "primary")
    assert [c.az for c in etcd] == ["a", "b", "c"]
    ips = [c.networks[0].ip for c in etcd]
    assert len(set(ips)) == 3
    subnet = ipaddress.IPv4Network(SUBNETS["primary"])
    dynamic = ipaddress.IPv4Network(plan.networks[1].ip_range)
    for ip in ips:
        assert ipaddress.IPv4Address(ip) in subnet
        assert ipaddress.IPv4Address(ip) not in dynamic  # never handed out to another container
    assert len(plan.by_role("etcd", "dr")) == 1


def test_patroni_configs(plan):
    pg = plan.by_role("postgres", "primary")
    assert [(c.az, c.user) for c in pg] == [("a", "postgres"), ("b", "postgres")]
    leader = yaml.safe_load(pg[0].env["PATRONI_CONFIGURATION"])
    dcs = leader["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (10, 2, 4)
    assert dcs["synchronous_mode"] is True and dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["slots"] == {"dr": {"type": "physical"}}
    assert leader["etcd3"]["hosts"] == [
        f"{c.networks[0].ip}:2379" for c in plan.by_role("etcd", "primary")
    ]
    assert pg[0].gates == ("etcd:primary",) and pg[1].gates == ("leader:primary",)
    (standby,) = plan.by_role("postgres", "dr")
    assert standby.gates == ("etcd:dr", "leader:primary")  # it clones from the primary's leader
    dr_dcs = yaml.safe_load(standby.env["PATRONI_CONFIGURATION"])["bootstrap"]["dcs"]
    alb_wan_ip = next(a.ip for a in plan.container("primary/alb").networks if a.network == "wan")
    assert dr_dcs["standby_cluster"] == {
        "host": alb_wan_ip, "port": 5432, "primary_slot_name": "dr",
        "create_replica_methods": ["basebackup"],
    }  # fmt: skip
    assert "slots" not in dr_dcs
    assert {a.network for a in standby.networks} == {"dr", "wan"}
    members = [
        yaml.safe_load(c.env["PATRONI_CONFIGURATION"])["name"] for c in plan.by_role("postgres")
    ]
    assert len(set(members)) == len(members)  # application_name must be unique across regions


def test_alb_and_global_configs(plan):
    alb = plan.container("primary/alb").env["HAPROXY_CONFIG"]
    assert "http-check send meth GET uri /primary" in alb
    assert "on-marked-down shutdown-sessions" in alb
    assert "init-addr last,libc,none resolvers docker" in alb
    assert "nameserver dns 127.0.0.11:53" in alb
    assert "use_backend svc_payments if { path_beg /payments /_lookup }" in alb
    assert "server-template payments- 1-9 payments:8080" in alb
    assert "uri /leader" in plan.container("dr/alb").env["HAPROXY_CONFIG"]
    entry = plan.container("global/entry")
    config = entry.env["HAPROXY_CONFIG"]
    assert "weight 100" in config.split("server primary")[1].splitlines()[0]
    assert "weight 0" in config.split("server dr")[1].splitlines()[0]
    assert "stats socket ipv4@0.0.0.0:9999 level admin" in config
    assert entry.ports == (8080, 9999)


def test_services_spread_and_pilot_light(plan):
    primary = plan.by_role("service", "primary")
    assert {c.extra["service"] for c in primary} == {
        "payments",
        "auth",
        "users",
        "storefront",
        "analytics",
    }
    payments = [c.az for c in primary if c.extra["service"] == "payments"]
    assert len(set(payments)) == 2
    dr = plan.by_role("service", "dr")
    assert sorted(c.extra["service"] for c in dr) == ["auth", "payments", "users"]
    assert all(c.networks[0].aliases[0] == c.extra["service"] for c in primary)


def test_plan_without_services_and_with_one_region():
    topology = parse_topology(
        {"services": {"command": "none"}, "regions": {"primary": {"database": ["a"]}}}, "mini"
    )
    plan = plan_mirror(topology, "mini", {"wan": SUBNETS["wan"], "primary": SUBNETS["primary"]},
                       "img", "none")  # fmt: skip
    assert plan.by_role("service") == []
    (pg,) = plan.by_role("postgres")
    assert "slots" not in yaml.safe_load(pg.env["PATRONI_CONFIGURATION"])["bootstrap"]["dcs"]
    assert [n.key for n in plan.networks] == ["wan", "primary"]


def test_effective_ttl_is_patronis_minimum():
    assert load_topology().patroni.effective_ttl == 20  # Patroni 4 raises ttl 10 to 20


def test_cli_exit_codes(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["bogus"])
    assert info.value.code == 254
    with pytest.raises(SystemExit) as info:
        cli.main(["down", "--id", "x", "--all"])
    assert info.value.code == 254
    broken = tmp_path / "t.yaml"
    broken.write_text("regions: {}\n")
    assert cli.main(["up", "--topology", str(broken)]) == 254
    assert "regions: needs at least the primary region" in capsys.readouterr().err
    assert cli.main(["status", "--state", str(tmp_path / "none.json")]) == 3
    assert cli.main(["down", "--state", str(tmp_path / "none.json")]) == 0


# ----------------------------------------------------------------------------------------- Docker


def record(name: str, value: float) -> None:
    print(f"\n[figure] {name} = {value:.2f}")
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    figures = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    figures[name] = round(value, 2)
    FIGURES.write_text(json.dumps(figures, indent=2) + "\n")


def labelled(client, mirror_id):
    selector = {"label": f"{LABEL}={mirror_id}"}
    return client.containers.list(all=True, filters=selector), client.networks.list(
        filters=selector
    )


@pytest.mark.docker
def test_mirror_comes_up_healthy_within_bound(shared_mirror, mirror):
    up_s = shared_mirror.up_s  # the session's mirror, brought up from built images (conftest)
    record("time_to_healthy_s", mirror.data["timings_s"]["healthy"])
    assert up_s < UP_BOUND_S
    assert mirror.path.exists()
    saved = json.loads(mirror.path.read_text())
    assert saved["mirror_id"] == mirror.mirror_id
    for region in saved["regions"].values():
        assert region["sql"]["host"] == "127.0.0.1"
        assert region["http"].startswith("http://127.0.0.1:")
        assert region["redis"].startswith("redis://127.0.0.1:")
        assert all(m["rest"].startswith("http://127.0.0.1:") for m in region["patroni"].values())
    assert saved["global"]["http"].startswith("http://127.0.0.1:")


@pytest.mark.docker
def test_everything_is_labelled_and_published_on_localhost_only(mirror, docker_client):
    containers, networks = labelled(docker_client, mirror.mirror_id)
    assert len(containers) == len(mirror.data["containers"])
    assert len(networks) == len(mirror.data["networks"])
    mirror_nets = {n.name for n in networks}
    for thing in [*containers, *networks]:
        labels = thing.attrs.get("Labels") or thing.attrs["Config"]["Labels"]
        assert all(labels.get(k) for k in REQUIRED_LABELS), thing.name
    for container in containers:
        bindings = container.attrs["HostConfig"]["PortBindings"] or {}
        for port, binds in bindings.items():
            assert all(b["HostIp"] == "127.0.0.1" for b in binds), (container.name, port)
        attached = set(container.attrs["NetworkSettings"]["Networks"])
        assert attached <= mirror_nets, (container.name, attached)
    for container in containers:
        if container.labels["drdrill.role"] == "postgres":
            assert container.attrs["Config"]["User"] == "postgres"
            assert container.attrs["Config"]["Entrypoint"] == ["/usr/bin/tini", "--"]


@pytest.mark.docker
def test_patroni_has_a_leader_and_a_sync_standby(mirror):
    from drdrill.mirror import status

    report = status.status(mirror)
    assert report.leaders["primary"] == "primary-pg-a"
    assert report.leaders["dr"] == "dr-pg-a"
    members = {
        r["name"]: r for r in report.rows if r["role"] == "postgres" and r["region"] == "primary"
    }
    assert members["pg-a"]["health"].startswith("leader/running")
    roles = [
        r["health"] for r in report.rows if r["region"] == "primary" and r["role"] == "postgres"
    ]
    assert any(h.startswith("sync_standby/streaming") for h in roles), roles
    assert report.lag["dr"]["state"].startswith("streaming")
    assert report.serving == ["primary"]
    table = str(report)
    assert "REGION" in table and "patroni leader  primary: primary-pg-a" in table


@pytest.mark.docker
def test_write_through_primary_sql_port_reaches_the_dr_standby(mirror):
    key = f"k-{uuid.uuid4().hex[:8]}"
    with mirror.connect() as conn:
        conn.execute(
            "create table if not exists mirror_probe (k text primary key, t timestamptz default now())"
        )
        conn.execute(f"insert into mirror_probe (k) values ('{key}')")
        assert conn.execute(f"select k from mirror_probe where k = '{key}'").fetchone()[0] == key
    t0 = time.monotonic()
    found = None
    while time.monotonic() - t0 < 10:
        try:
            with mirror.connect(mirror.dr_region, timeout_s=2) as conn:
                assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is True
                row = conn.execute(f"select k from mirror_probe where k = '{key}'").fetchone()
                found = row[0] if row else None
        except Exception:
            found = None
        if found:
            break
        time.sleep(0.1)
    assert found == key
    record("dr_replication_visible_s", time.monotonic() - t0)


def _serving_region(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.headers["X-Drdrill-Region"]
    except urllib.error.HTTPError as exc:  # a 404/503 still says which region's ALB answered
        return exc.headers["X-Drdrill-Region"]


@pytest.mark.docker
def test_global_entry_answers_and_a_weight_switch_moves_traffic(mirror):
    from drdrill.mirror import operations, status

    url = mirror.global_http + "/storefront"
    if mirror.data["service_mode"] != "none":
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
    assert {_serving_region(url) for _ in range(5)} == {"primary"}
    try:
        assert operations.set_weights({"primary": 0, "dr": 100}, mirror) == {"primary": 0, "dr": 100}
        assert {_serving_region(url) for _ in range(5)} == {"dr"}
        assert status.status(mirror).serving == ["dr"]
    finally:
        operations.set_weights({"primary": 100, "dr": 0}, mirror)
    assert {_serving_region(url) for _ in range(5)} == {"primary"}


@pytest.mark.docker
def test_scaling_a_pilot_light_service(mirror, docker_client):
    """The runbook's scale-up: new replicas are labelled, spread, and found by the region's ALB."""
    from drdrill.mirror import operations, status

    names = operations.scale("dr", "storefront", 2, mirror, progress=print)
    assert len(names) == 2
    containers = [docker_client.containers.get(name) for name in names]
    assert {c.labels["drdrill.az"] for c in containers} == {"a", "b"}
    assert all(c.labels[LABEL] == mirror.mirror_id and c.labels["drdrill.service"] == "storefront"
               for c in containers)  # fmt: skip
    t0 = time.monotonic()
    rows = []
    while time.monotonic() - t0 < 10:  # resolved through Docker's DNS (ready or not: a standby DB)
        rows = [r for r in status.status(mirror).rows
                if r["region"] == "dr" and r["name"].startswith("storefront-")]  # fmt: skip
        if len(rows) == 2 and all(
            r["health"].startswith("ALB UP") or r["health"] == "ALB DOWN" for r in rows
        ):
            break
        time.sleep(0.2)
    assert len(rows) == 2 and all("not resolved" not in r["health"] for r in rows), rows
    assert operations.scale("dr", "storefront", 0, mirror, progress=print) == []
    assert mirror.containers(region="dr", service="storefront") == []
    assert (
        json.loads(mirror.path.read_text())["regions"]["dr"]["services"]["storefront"]["replicas"]
        == 0
    )


@pytest.mark.docker
@pytest.mark.mirror_teardown
def test_down_removes_everything_labelled(shared_mirror, mirror, docker_client):
    """The session's last mirror test: the local target brought the mirror up, so ``stop`` takes it
    down (as after a drill that brought it up): nothing labelled is left, the state file is gone
    and the global entry no longer answers."""
    t0 = time.monotonic()
    removed = stop(shared_mirror.target)
    down_s = time.monotonic() - t0
    record("teardown_s", down_s)
    containers, networks = labelled(docker_client, mirror.mirror_id)
    assert containers == []
    if removed:
        assert networks == []
    else:  # only networks Docker refused to delete (moby#42119), and none has a container in it
        assert all(not n.attrs.get("Containers") for n in networks)
    assert not mirror.path.exists()
    assert down_s < DOWN_BOUND_S
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(mirror.global_http + "/", timeout=2)


@pytest.mark.docker
def test_down_sweeps_by_label_after_a_crash(docker_client, tmp_path):
    """No state file (the creator crashed): down(mirror_id) still finds everything by its label."""
    from drdrill.mirror import lifecycle
    from drdrill.mirror.images import build_images

    mirror_id = f"crash-{uuid.uuid4().hex[:6]}"
    labels = {
        LABEL: mirror_id,
        "drdrill.region": "primary",
        "drdrill.az": "a",
        "drdrill.role": "etcd",
    }
    network = docker_client.networks.create(f"drdrill-{mirror_id}-primary", labels=labels)
    try:
        docker_client.containers.create(
            build_images(progress=print)["node"], ["sleep", "60"], labels=labels,
            network=network.name, name=f"drdrill-{mirror_id}-primary-etcd-a",
        )  # fmt: skip
        removed = lifecycle.down(mirror_id, state_file=tmp_path / "none.json", progress=print)
        assert removed == 2
        assert labelled(docker_client, mirror_id) == ([], [])
    finally:
        lifecycle.down(mirror_id, state_file=tmp_path / "none.json", progress=print)
