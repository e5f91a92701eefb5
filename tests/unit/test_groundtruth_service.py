"""The ground-truth service does exactly what its truth says: outages, failovers and data loss."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest

from drdrill.testing.groundtruth import GroundTruthError, GroundTruthService


@pytest.fixture(scope="module")
def gt() -> Iterator[GroundTruthService]:
    with GroundTruthService(region="test-region") as service:
        yield service


@pytest.fixture(autouse=True)
def clean(gt: GroundTruthService) -> Iterator[None]:
    gt.reset()
    yield
    gt.reset()


def request(port: int, method: str, path: str, body: dict | None = None, timeout_s: float = 2.0,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request (on ``conn`` if given, kept open); returns status, headers, body."""
    own = conn is None
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        c.request(method, path, body=data, headers=headers)
        resp = c.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        if own:
            c.close()


def pay(port: int, key: str, amount_cents: int = 100) -> int:
    return request(port, "POST", "/payments", {"key": key, "amount_cents": amount_cents})[0]


def test_writes_are_found_by_prefix_and_payments_are_idempotent(gt: GroundTruthService) -> None:
    status, headers, body = request(gt.port, "POST", "/payments", {"key": "a-p1", "amount_cents": 250})
    assert status == 201
    assert json.loads(body) == {"key": "a-p1", "status": "captured", "amount_cents": 250}
    assert headers["X-Served-By"] == "payments" and headers["X-Region"] == "test-region"
    assert pay(gt.port, "a-p1") == 200  # same key again: no duplicate
    assert request(gt.port, "PUT", "/users/42", {"key": "a-u1", "display_name": "Ann"})[0] == 200
    assert request(gt.port, "POST", "/analytics/events", {"key": "a-e1", "name": "view"})[0] == 202
    assert pay(gt.port, "b-p1") == 201

    status, _, body = request(gt.port, "GET", "/payments/a-p1")
    assert status == 200 and json.loads(body)["amount_cents"] == 250
    assert request(gt.port, "GET", "/payments/nope")[0] == 404
    status, _, body = request(gt.port, "POST", "/auth/login", {"user": "ann"})
    assert status == 200 and json.loads(body)["token"]
    assert request(gt.port, "GET", "/users/7")[0] == 200
    assert isinstance(json.loads(request(gt.port, "GET", "/storefront")[2]), list)
    assert json.loads(request(gt.port, "GET", "/healthz")[2]) == {"ok": True}

    assert gt.lookup("a-") == {"payments": ["a-p1"], "users": ["a-u1"], "analytics": ["a-e1"]}
    assert json.loads(request(gt.port, "GET", "/_lookup?prefix=b-")[2])["payments"] == ["b-p1"]
    assert gt.truth()["writes_committed"] == 4


def test_keep_alive_connection_serves_many_requests(gt: GroundTruthService) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gt.port, timeout=2.0)
    try:
        for i in range(20):
            assert request(gt.port, "POST", "/payments", {"key": f"k-{i}", "amount_cents": i}, conn=conn)[0] == 201
        sock = conn.sock
        assert request(gt.port, "GET", "/healthz", conn=conn)[0] == 200
        assert conn.sock is sock  # still the same connection
    finally:
        conn.close()
    assert len(gt.lookup("k-")["payments"]) == 20


def test_refuse_outage_refuses_connections_for_exactly_its_duration(gt: GroundTruthService) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gt.port, timeout=2.0)
    assert request(gt.port, "GET", "/healthz", conn=conn)[0] == 200

    called_s = time.time()
    answer = gt.outage(0.5, mode="refuse")
    assert answer["planned_end_s"] - answer["start_s"] == pytest.approx(0.5)

    with pytest.raises((ConnectionError, http.client.HTTPException)):  # established one was closed
        request(gt.port, "GET", "/healthz", conn=conn)
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", gt.port), timeout=1.0).close()
    assert gt.lookup("")["payments"] == []  # the control port still answers

    first_ok_s = None
    while time.time() - called_s < 3.0:
        try:
            if request(gt.port, "GET", "/healthz", timeout_s=1.0)[0] == 200:
                first_ok_s = time.time()
                break
        except ConnectionRefusedError:
            time.sleep(0.005)
    assert first_ok_s is not None, "service never came back"
    assert first_ok_s - called_s == pytest.approx(0.5, abs=0.1)

    [outage] = gt.truth()["outages"]
    assert outage["mode"] == "refuse" and outage["services"] is None
    assert outage["end_s"] - outage["start_s"] == pytest.approx(0.5, abs=0.05)
    assert outage["start_s"] >= called_s and outage["end_s"] <= first_ok_s


def test_503_outage_of_payments_only(gt: GroundTruthService) -> None:
    gt.outage(0.4, mode="503", services=["payments"])
    status, headers, body = request(gt.port, "POST", "/payments", {"key": "c-1", "amount_cents": 1})
    assert status == 503 and body == b"no server available"
    assert "X-Served-By" not in headers
    status, headers, _ = request(gt.port, "GET", "/users/1")
    assert status == 200 and headers["X-Served-By"] == "users"
    assert gt.lookup("c-")["payments"] == []  # the refused write was not stored

    time.sleep(0.45)
    assert pay(gt.port, "c-2") == 201
    [outage] = gt.truth()["outages"]
    assert outage["mode"] == "503" and outage["services"] == ["payments"]
    assert outage["end_s"] - outage["start_s"] == pytest.approx(0.4, abs=0.05)


def test_failover_loses_exactly_the_writes_in_its_window(gt: GroundTruthService) -> None:
    early = ["f-early-1", "f-early-2"]
    for key in early:
        assert pay(gt.port, key) == 201
    assert request(gt.port, "PUT", "/users/1", {"key": "f-early-u", "display_name": "x"})[0] == 200
    time.sleep(0.5)
    assert pay(gt.port, "f-late-1") == 201
    assert request(gt.port, "POST", "/analytics/events", {"key": "f-late-e", "name": "n"})[0] == 202
    assert request(gt.port, "PUT", "/users/2", {"key": "f-late-u", "display_name": "y"})[0] == 200

    answer = gt.failover(duration_s=0.2, lose_last_s=0.3, mode="503")
    expected_lost = {("payments", "f-late-1"), ("analytics", "f-late-e"), ("users", "f-late-u")}
    assert {(e["service"], e["key"]) for e in answer["lost"]} == expected_lost

    assert gt.lookup("f-") == {"payments": early, "users": ["f-early-u"], "analytics": []}
    [failover] = gt.truth()["failovers"]
    assert {(e["service"], e["key"]) for e in failover["lost"]} == expected_lost
    assert all(e["commit_s"] >= failover["time_s"] - 0.3 for e in failover["lost"])
    assert failover["lose_last_s"] == 0.3
    [outage] = gt.truth()["outages"]
    assert outage["mode"] == "503" and outage["start_s"] >= failover["time_s"]
    assert request(gt.port, "GET", "/payments/f-late-1")[0] == 503
    time.sleep(0.25)
    assert request(gt.port, "GET", "/payments/f-late-1")[0] == 404  # back, but the write is gone
    assert request(gt.port, "GET", "/payments/f-early-1")[0] == 200
    assert gt.truth()["writes_committed"] == 6


def test_hang_outage_times_clients_out_then_closes_without_response(gt: GroundTruthService) -> None:
    gt.outage(0.6, mode="hang")
    started_s = time.time()
    with pytest.raises(TimeoutError):
        request(gt.port, "GET", "/healthz", timeout_s=0.3)
    assert time.time() - started_s == pytest.approx(0.3, abs=0.1)

    with pytest.raises((ConnectionError, http.client.HTTPException)):  # closed, never answered
        request(gt.port, "GET", "/storefront", timeout_s=2.0)
    assert time.time() - started_s == pytest.approx(0.6, abs=0.1)
    assert request(gt.port, "GET", "/storefront")[0] == 200


def test_bad_control_requests_are_rejected(gt: GroundTruthService) -> None:
    with pytest.raises(GroundTruthError, match="400"):
        gt.outage(1.0, mode="refuse", services=["payments"])
    with pytest.raises(GroundTruthError, match="400"):
        gt.outage(1.0, mode="sideways")
    with pytest.raises(GroundTruthError, match="400"):
        gt.outage(-1.0, mode="503")
    assert gt.truth()["outages"] == []
    assert request(gt.port, "POST", "/payments", {"key": "x"})[0] == 400  # no amount_cents
    assert request(gt.port, "GET", "/_control/truth")[0] == 404  # control only on its own port


def test_reset_ends_outages_and_forgets_everything(gt: GroundTruthService) -> None:
    assert pay(gt.port, "r-1") == 201
    gt.outage(30.0, mode="refuse")
    with pytest.raises(ConnectionRefusedError):
        request(gt.port, "GET", "/healthz")
    gt.reset()
    assert request(gt.port, "GET", "/healthz")[0] == 200
    assert gt.truth() == {"outages": [], "failovers": [], "writes_committed": 0}
    assert gt.lookup("r-")["payments"] == []
