"""Helpers of the shared mirror (see conftest.py): its record, taking it down, its layout, restoring it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

RESTORE_BOUND_S = 300.0


@dataclass
class SharedMirror:
    """The session's mirror: the target that brought it up, its state file, its time to healthy."""

    target: object  # drdrill.targets.local.LocalTarget
    path: Path
    up_s: float

    @property
    def mirror_id(self) -> str:
        return self.target.state.mirror_id


def stop(target) -> bool:
    """``target.stop()`` (down, as a drill that brought the mirror up does), tolerating only Docker
    20.10's stale-endpoint bug (moby#42119): after isolation churn it sometimes refuses to delete a
    network no container uses; every container is gone."""
    from drdrill.errors import TargetError

    try:
        target.stop()
        return True
    except TargetError as exc:
        if "moby#42119" not in str(exc):
            raise
        print(f"engine bug, left an empty network: {exc}")
        return False


def layout_problems(state) -> list[str]:
    """How the mirror differs from its healthy topology layout: :func:`drdrill.mirror.health.problems`, then the
    region roles, the serving region, the leader's AZ, the weights, DR streaming and DR's sizes."""
    from drdrill.mirror import health, patroni, probes, sql
    from drdrill.mirror.topology import load_topology

    found = health.problems(state)
    if found:
        return found
    topology = load_topology(state.data["topology"])
    for region in topology.regions:
        if state.regions[region.name]["role"] != region.role:
            found.append(f"{region.name} has role {state.regions[region.name]['role']}")
        sizes = {s: v["replicas"] for s, v in state.regions[region.name]["services"].items()}
        if sizes != dict(region.replicas):
            found.append(f"{region.name} runs {sizes}, not {dict(region.replicas)}")
    home = next(r for r in topology.regions if r.role == "primary")
    if probes.serving_region(state) != home.name:
        found.append(f"{home.name} is not serving")
    leader = patroni.leader(state, home.name)
    wanted = f"{home.name}-pg-{home.database[0]}"
    if leader != wanted:
        found.append(f"{home.name}'s leader is {leader}, not {wanted}")
    weights = {r.name: r.weight for r in topology.regions}
    if state.data["global"].get("weights") != weights:
        found.append(f"weights {state.data['global'].get('weights')}, not {weights}")
    for name, lag in sql.replication_lag(state).items():
        if name in state.regions and not str(lag.get("state", "")).startswith("streaming"):
            found.append(f"{name} is not streaming ({lag})")
    return found


def restore(shared: SharedMirror) -> None:
    """The experiments' rollback (undo logged faults, fail back, leader back, weights, sizes, healthy)."""
    from drdrill.chaos.local.actions import restore_mirror

    restore_mirror(RESTORE_BOUND_S, configuration={"mirror_state": str(shared.path)})


def assert_restored(state_file) -> None:
    """Healthy, in the topology's layout: primary writable and serving with its leader in AZ a, dr a
    streaming standby at pilot-light size."""
    from drdrill.mirror import health, patroni, probes, sql
    from drdrill.mirror.state import load_state

    state = load_state(state_file)
    problems = health.problems(state)
    assert problems == [], problems
    assert state.regions["primary"]["role"] == "primary" and state.regions["dr"]["role"] == "dr"
    assert probes.serving_region(state) == "primary"
    assert patroni.leader(state, "primary") == "primary-pg-a"  # back in AZ a
    assert state.data["global"]["weights"] == {"primary": 100, "dr": 0}
    assert sql.replication_lag(state)["dr"]["state"].startswith("streaming")
    assert {s: v["replicas"] for s, v in state.regions["dr"]["services"].items()} == {
        "payments": 1, "auth": 1, "users": 1, "storefront": 0, "analytics": 0}


def lost_directly(run_dir: Path) -> set[str]:
    """Acknowledged writes of a drill's run missing from its final read, independently of the
    checkers (acknowledged − present)."""
    from drdrill.history import read_ops

    ops = list(read_ops(run_dir / "history.jsonl"))
    final = json.loads((run_dir / "final-read.json").read_text())
    present = {k for keys in final["present"].values() for k in keys}
    acked = {op["key"] for op in ops if op.get("type") == "ok" and op.get("key")
             and op.get("process", "").startswith("client")}  # fmt: skip
    assert acked, f"{run_dir}: no acknowledged write to judge"
    return acked - present


def payments_on_every_member(state, region: str, keys: set[str], timeout_s: float = 20.0) -> dict[str, set[str]]:
    """member -> which of ``keys`` its own PostgreSQL holds in ``payments``, asked of each Patroni
    member directly (not through the ALB, not through the platform); replicas are waited for until
    they agree with the leader or ``timeout_s`` passes."""
    import psycopg

    from drdrill.mirror.sql import connect
    from drdrill.waiting import wait_until

    members = state.patroni(region)

    def found_on(member: dict) -> set[str]:
        with connect(member["sql"]["host"], member["sql"]["port"], timeout_s=5.0) as conn:
            rows = conn.execute("select key from payments where key = any(%s)", (sorted(keys),))
            return {row[0] for row in rows}

    seen: dict[str, set[str]] = {}

    def agree() -> bool:
        seen.update({name: found_on(member) for name, member in members.items()})
        return len({frozenset(v) for v in seen.values()}) == 1

    wait_until(agree, timeout_s=timeout_s, interval_s=0.5, what=f"{region}'s members agreeing",
               errors=(OSError, psycopg.Error))
    return seen


def loss_two_ways(result, data_class: str = "financial") -> tuple[float, float, bool]:
    """(the users' loss window s, the database's s, whether they agree) of a drill's ``rpo:<data_class>``
    result (:func:`drdrill.checkers.db_loss.loss_figures`), asserting the database's side was measured:
    replication samples were recorded and the DR database was promoted after the fault."""
    from drdrill.checkers.db_loss import loss_figures

    node = result.find(f"rpo:{data_class}")
    users_s, db_s, agree = loss_figures(node)
    assert db_s is not None and agree is not None, (
        f"the database's view of the loss was not measured: {node.metrics.get('db_samples')} samples; "
        f"{' '.join(node.explanation)}")
    return users_s, db_s, agree
