"""Synthetic traffic on real Locust against the ground-truth service: recorded, flushed, stopped."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter

import pytest

from drdrill.errors import TrafficError
from drdrill.history import read_ops
from drdrill.testing.groundtruth import GroundTruthService
from drdrill.traffic.runner import DEFAULT_LOCUSTFILE, DEFAULT_SERVICES, TrafficRun

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def service():
    with GroundTruthService() as running:
        yield running


def test_every_request_is_recorded_and_flushed_while_running(service, tmp_path):
    history = tmp_path / "history.jsonl"
    with TrafficRun(service.base_url, history, "rt1", users=5, rate_per_user=10) as traffic:
        traffic.wait_until_flowing(timeout_s=20)
        time.sleep(1.0)
        seen = len(list(read_ops(history)))
        time.sleep(1.0)
        # flushed at least every 0.5 s: a second later the file holds about 50 more requests
        assert len(list(read_ops(history))) >= seen + 25
        service.outage(1.0, mode="refuse")
        time.sleep(2.5)
    assert traffic.process.returncode is not None
    ops = list(read_ops(history))
    completions = [op for op in ops if op["type"] != "invoke"]
    assert {op["service"] for op in completions} == set(DEFAULT_SERVICES)
    # five users, one per service, 10 req/s each
    per_service = Counter(op["service"] for op in completions)
    assert min(per_service.values()) >= 30
    refused = [op for op in completions if op.get("error") == "refused"]
    assert refused and all(op["type"] == "fail" for op in refused)
    assert all(op.get("region") == "primary" for op in completions if op["type"] == "ok")
    # writes: an invoke written before its completion, same key; keys unique and prefixed
    invokes = {op["key"]: i for i, op in enumerate(ops) if op["type"] == "invoke"}
    finished = [(i, op) for i, op in enumerate(ops) if op["type"] != "invoke" and op.get("key")]
    assert finished
    for i, op in finished:
        assert invokes[op["key"]] < i
        assert op["key"].startswith(f"rt1-{op['service']}-")
    assert len(invokes) == len(set(invokes))
    present = service.lookup("rt1")
    acked = {op["key"] for _, op in finished if op["type"] == "ok"}
    assert acked <= {key for keys in present.values() for key in keys}


def test_locust_that_cannot_reach_the_platform_is_a_clear_error(tmp_path):
    traffic = TrafficRun("http://127.0.0.1:9", tmp_path / "history.jsonl", "rt2", users=5)
    with traffic, pytest.raises(TrafficError, match="no successful request to .* within 3 s"):
        traffic.wait_until_flowing(timeout_s=3)


def test_traffic_refuses_hosts_other_than_loopback(tmp_path):
    with pytest.raises(TrafficError, match="127.0.0.1 only"):
        TrafficRun("http://platform.example:80", tmp_path / "h.jsonl", "x")


def test_the_locustfile_runs_with_plain_locust(service, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(DEFAULT_LOCUSTFILE), "--headless", "-u", "5", "-r", "5",
         "-t", "3s", "-H", service.base_url, "--only-summary", "--exit-code-on-error", "0"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "payments.create" in result.stdout + result.stderr
    assert not list(tmp_path.glob("*.jsonl"))  # nothing recorded without --drdrill-history


def test_a_payment_rate_is_held_beside_the_browsing_users(service, tmp_path):
    history = tmp_path / "history.jsonl"
    with TrafficRun(service.base_url, history, "rt5", users=5, rate_per_user=4,
                    payments_per_s=50, ramp_s=2) as traffic:  # 10 writers at 5/s each
        traffic.wait_until_flowing(timeout_s=20)
        time.sleep(max(0.0, traffic.started_s + 4.0 - time.time()))  # past the ramp
        t0 = time.time()
        time.sleep(8.0)
        t1 = time.time()
    ops = [op for op in read_ops(history) if op["type"] != "invoke"]
    acked = [op for op in ops if op["f"] == "payments.create" and op["type"] == "ok"
             and t0 <= op["end_s"] < t1]
    assert len(acked) / (t1 - t0) == pytest.approx(50, rel=0.10)
    # only the writers create payments (the browsing payments user reads theirs back), so the rate is the one asked
    assert len({op["process"] for op in ops if op["f"] == "payments.create"}) == 10
    assert any(op["f"] == "payments.read" and op["status"] == 200 for op in ops)
    assert {op["service"] for op in ops if op["type"] == "ok"} == set(DEFAULT_SERVICES)


def test_plain_locust_refuses_an_absurd_payment_rate_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(DEFAULT_LOCUSTFILE), "--headless", "-u", "5", "-t", "3s",
         "-H", "http://127.0.0.1:9", "--drdrill-payments-per-s", "9000"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode != 0
    assert "drdrill: payments per second must be a number in (0, 5000], got 9000.0" in result.stderr
    assert "Traceback" not in result.stderr
