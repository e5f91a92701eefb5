"""The local mirror's foundations: a Docker engine (bootstrapped if absent) and the offline images."""

from __future__ import annotations

import re
import socket
import time
import uuid

import pytest

from drdrill.mirror.engine import ensure_docker
from drdrill.mirror.images import PLATFORM_REQUIREMENTS, build_images

pytestmark = [pytest.mark.docker]

LABEL = "drdrill.mirror"


@pytest.fixture(scope="module")
def client():
    return ensure_docker(progress=print)


@pytest.fixture(scope="module")
def tags(client):
    return build_images(progress=print)


@pytest.fixture
def mirror_id(client):
    """A label value for everything one test creates; all of it is removed afterwards."""
    value = f"test-images-{uuid.uuid4().hex[:8]}"
    yield value
    selector = {"label": f"{LABEL}={value}"}
    for container in client.containers.list(all=True, filters=selector):
        container.remove(force=True)
    for network in client.networks.list(filters=selector):
        network.remove()


def run(client, image, command, mirror_id, **kwargs):
    """Run ``command`` to completion in a labelled container; (exit code, output)."""
    container = client.containers.run(
        image, command, detach=True, labels={LABEL: mirror_id}, **kwargs
    )
    status = container.wait(timeout=120)
    return status["StatusCode"], container.logs().decode(errors="replace")


def test_an_engine_answers(client):
    assert client.ping()
    assert ensure_docker(progress=print).ping()  # idempotent: a second call just answers


def test_images_are_built_and_tagged_by_their_inputs(client, tags):
    assert set(tags) == {"base", "node"}
    assert re.fullmatch(r"drdrill/node:[0-9a-f]{12}", tags["node"])
    for tag in tags.values():
        assert client.images.get(tag)


def test_a_second_build_is_instant_and_gives_the_same_tags(tags):
    t0 = time.monotonic()
    again = build_images(progress=print)
    assert time.monotonic() - t0 < 5
    assert again == tags


def test_the_node_image_carries_the_platform_components(client, tags, mirror_id):
    command = [
        "sh", "-c",
        "patroni --version; postgres --version; etcd --version; haproxy -v; redis-server --version; "
        "/opt/patroni/bin/python -c 'import redis; print(\"redis-py\", redis.__version__)'",
    ]  # fmt: skip
    code, out = run(client, tags["node"], command, mirror_id)
    assert code == 0, out
    assert re.search(r"^patroni 4\.\d+", out, re.M), out
    assert re.search(r"^postgres \(PostgreSQL\) 15\.\d+", out, re.M), out
    assert re.search(r"^etcd Version: 3\.\d+", out, re.M), out
    assert re.search(r"^HAProxy version \d+\.\d+", out, re.M), out
    assert re.search(r"^Redis server v=\d+\.\d+", out, re.M), out
    redis_py = next(r for r in PLATFORM_REQUIREMENTS if r.startswith("redis=="))
    assert f"redis-py {redis_py.removeprefix('redis==')}" in out, out  # the platform's client


def test_containers_talk_on_a_user_network_and_publish_on_loopback(client, tags, mirror_id):
    network = client.networks.create(
        f"drdrill-{mirror_id}", driver="bridge", labels={LABEL: mirror_id}
    )
    redis = client.containers.run(
        tags["node"],
        ["redis-server", "--protected-mode", "no", "--save", ""],
        detach=True,
        name=f"redis-{mirror_id}",
        network=network.name,
        ports={"6379/tcp": ("127.0.0.1", None)},
        labels={LABEL: mirror_id},
    )
    redis.reload()
    binding = redis.ports["6379/tcp"][0]
    assert binding["HostIp"] == "127.0.0.1"
    port = int(binding["HostPort"])
    assert _redis_ping("127.0.0.1", port, timeout_s=20) == b"+PONG"
    # a second container on the same network reaches it by name through Docker's DNS
    code, out = run(
        client, tags["node"], ["redis-cli", "-h", redis.name, "ping"], mirror_id,
        network=network.name,
    )  # fmt: skip
    assert (code, out.strip()) == (0, "PONG")


PATRONI_SMOKE = r"""
set -e
etcd --data-dir /tmp/etcd --listen-client-urls http://0.0.0.0:2379 \
     --advertise-client-urls http://127.0.0.1:2379 > /tmp/etcd.log 2>&1 &
cat > /tmp/patroni.yml <<YAML
scope: smoke
name: n1
restapi: {listen: 0.0.0.0:8008, connect_address: 127.0.0.1:8008}
etcd3: {hosts: 127.0.0.1:2379}
bootstrap: {dcs: {ttl: 10, loop_wait: 2, retry_timeout: 4}}
postgresql:
  listen: 0.0.0.0:5432
  connect_address: 127.0.0.1:5432
  data_dir: /tmp/pgdata
  bin_dir: /usr/lib/postgresql/15/bin
  authentication:
    superuser: {username: postgres, password: smoke}
    replication: {username: replicator, password: smoke}
  pg_hba: ["local all all trust", "host all all 0.0.0.0/0 md5"]
YAML
patroni /tmp/patroni.yml > /tmp/patroni.log 2>&1 &
for i in $(seq 1 120); do curl -sf localhost:8008/primary > /dev/null && break; sleep 0.5; done
psql -qtA -h /var/run/postgresql -U postgres -c 'create table t(k int); insert into t values (42); select k from t'
ETCDCTL_API=3 etcdctl get /service/smoke/leader --print-value-only
"""


def test_patroni_bootstraps_a_leader_through_debians_etcd_v3_api(client, tags, mirror_id):
    code, out = run(client, tags["node"], ["bash", "-c", PATRONI_SMOKE], mirror_id, user="postgres")
    assert code == 0, out
    assert out.split() == ["42", "n1"], out


def _redis_ping(host: str, port: int, timeout_s: float) -> bytes:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as conn:
                conn.sendall(b"PING\r\n")
                reply = conn.recv(64).strip()
            if reply:  # empty: the proxy accepted before redis listened
                return reply
        except OSError as exc:
            last = exc
            time.sleep(0.2)
    raise AssertionError(f"redis on {host}:{port} did not answer within {timeout_s} s: {last}")


def test_every_test_container_is_gone(client):
    """Runs last in this module: nothing labelled by these tests is left behind."""
    selector = {"label": LABEL}
    leftovers = [
        c.name
        for c in client.containers.list(all=True, filters=selector)
        if c.labels.get(LABEL, "").startswith("test-images-")
    ]
    assert leftovers == []
