"""The mirror's state file is read without the Docker SDK (a chaos run, Locust or a report only read it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from drdrill.errors import TargetError
from drdrill.mirror.state import MirrorState, load_state

ROOT = Path(__file__).resolve().parents[2]

STATE = {
    "version": 1, "mirror_id": "m1", "topology": "topology.yaml", "image": "drdrill/node:x",
    "service_mode": "stub",
    "global": {"http": "http://127.0.0.1:1", "admin": {"host": "127.0.0.1", "port": 2},
               "backend": "regions", "weights": {"primary": 100, "dr": 0}},
    "regions": {"primary": {"role": "primary", "azs": ["a"], "network": "n", "patroni": {},
                            "services": {}},
                "dr": {"role": "dr", "azs": ["a"], "network": "n2", "patroni": {}, "services": {}}},
    "containers": [{"key": "primary/pg-a", "name": "c", "id": "1", "region": "primary", "az": "a",
                    "role": "postgres", "member": "pg-a"}],
    "networks": [{"key": "wan", "name": "drdrill-m1-wan", "id": "9", "subnet": "172.30.0.0/24"}],
}  # fmt: skip

READ = """
import sys
from drdrill.mirror.state import load_state
state = load_state(sys.argv[1])
assert state.primary_region == "primary" and state.dr_region == "dr", state
assert state.network("wan") == "drdrill-m1-wan"
print(sorted(m for m in ("docker", "psycopg") if m in sys.modules))
"""


def test_reading_the_state_file_imports_no_docker_sdk(tmp_path):
    path = tmp_path / "state.json"
    path.write_text(json.dumps(STATE))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", READ, str(path)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"  # neither the Docker SDK nor the SQL driver


def test_the_state_model(tmp_path):
    state = MirrorState(json.loads(json.dumps(STATE)))
    assert state.containers(role="postgres")[0]["member"] == "pg-a"
    with pytest.raises(TargetError, match="regions are primary, dr"):
        state.check_region("moon")
    with pytest.raises(TargetError, match="has no primary network"):
        state.network("primary")
    saved = state.save(tmp_path / "state.json")
    assert load_state(saved).data == state.data


def test_a_missing_or_foreign_state_file_says_what_to_do(tmp_path):
    with pytest.raises(TargetError, match="drdrill mirror up"):
        load_state(tmp_path / "none.json")
    (tmp_path / "other.json").write_text('{"version": 99}')
    with pytest.raises(TargetError, match="not a drdrill mirror state file"):
        load_state(tmp_path / "other.json")
