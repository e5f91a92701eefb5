"""Whose word on the Patroni cluster counts: the leader's, not a member just back from a partition."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from drdrill.mirror import patroni
from drdrill.mirror.state import MirrorState

STALE = {"members": [{"name": "pg-a", "role": "leader", "state": "running"},
                     {"name": "pg-b", "role": "sync_standby", "state": "streaming"}]}
FRESH = {"members": [{"name": "pg-b", "role": "leader", "state": "running"},
                     {"name": "pg-a", "role": "replica", "state": "starting"}]}


def member(cluster: dict, own: dict) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = json.dumps(cluster if self.path == "/cluster" else own).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def partitioned_region():
    # pg-a is back from a partition: its cached view still names it leader, but it demoted itself
    a = member(STALE, {"role": "replica", "state": "running"})
    b = member(FRESH, {"role": "primary", "state": "running"})
    state = MirrorState({"mirror_id": "m1", "regions": {"primary": {"role": "primary", "patroni": {
        "pg-a": {"rest": f"http://127.0.0.1:{a.server_port}"},
        "pg-b": {"rest": f"http://127.0.0.1:{b.server_port}"}}}}})
    yield state
    a.shutdown()
    b.shutdown()


def test_the_leaders_own_view_wins_over_a_stale_member(partitioned_region):
    assert patroni.leader(partitioned_region, "primary") == "pg-b"
    assert patroni.cluster(partitioned_region, "primary") == FRESH
