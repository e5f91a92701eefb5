"""Builders of hand-written histories for checker tests: traffic with outages of exactly known length."""

from __future__ import annotations

from collections.abc import Iterable

T0 = 1_800_000_000.0  # an arbitrary epoch second all test histories start from


def reads(
    service: str,
    start_s: float,
    end_s: float,
    rate_per_s: float,
    down: Iterable[tuple[float, float]] = (),
    failed_type: str = "fail",
    process: str = "client-1",
) -> list[dict]:
    """Read ops of ``service`` every 1/rate s in [start_s, end_s); ops starting inside a ``down`` window fail."""
    windows = list(down)
    ops = []
    step = 1.0 / rate_per_s
    i = 0
    while (t := start_s + i * step) < end_s:
        failed = any(a <= t < b for a, b in windows)
        ops.append({
            "process": process, "type": failed_type if failed else "ok", "f": f"{service}.read",
            "service": service, "time_s": t, "end_s": t + 0.002, "latency_ms": 2.0,
            "status": None if failed else 200, "error": "refused" if failed else None,
        })
        i += 1
    return ops


def write(service: str, key: str, time_s: float, outcome: str = "ok", latency_s: float = 0.003,
          process: str = "client-2") -> list[dict]:
    """A write: its invoke and (unless ``outcome`` is None) its completion."""
    ops = [{"process": process, "type": "invoke", "f": f"{service}.create", "service": service,
            "key": key, "time_s": time_s}]
    if outcome is not None:
        ops.append({"process": process, "type": outcome, "f": f"{service}.create", "service": service,
                    "key": key, "time_s": time_s, "end_s": time_s + latency_s,
                    "latency_ms": latency_s * 1000})
    return ops


def fault(time_s: float, name: str = "kill-primary", duration_s: float = 0.01) -> list[dict]:
    """Nemesis ops of one fault action of the method: start and stop."""
    return [
        {"process": "nemesis", "type": "info", "f": f"start:{name}", "time_s": time_s,
         "phase": "method", "kind": "action"},
        {"process": "nemesis", "type": "ok", "f": f"stop:{name}", "time_s": time_s,
         "end_s": time_s + duration_s, "phase": "method", "kind": "action"},
    ]


def runbook_step(step: str, time_s: float, duration_s: float, outcome: str = "ok",
                 mode: str = "auto", operator_s: float = 0.0, name: str | None = None,
                 phase: str = "method") -> list[dict]:
    """Nemesis ops of one runbook step (as the recorder writes them): start and stop."""
    name = name or f"runbook-{step}"
    base = {"process": "nemesis", "phase": phase, "kind": "action", "runbook_step": step}
    stop = {**base, "type": outcome, "f": f"stop:{name}", "time_s": time_s,
            "end_s": time_s + duration_s}
    if outcome == "ok":
        stop.update(mode=mode, operator_s=operator_s)
    elif outcome == "fail":
        stop["error"] = f"{step} went wrong"
    return [{**base, "type": "info", "f": f"start:{name}", "time_s": time_s}, stop]


def replication(start_s: float, end_s: float, commits_s: Iterable[float], replayed_until_s: float,
                promoted_s: float | None = None, period_s: float = 0.1, bytes_per_commit: int = 500,
                primary_until_s: float | None = None) -> list[dict]:
    """Platform ops sampling replication every ``period_s`` in [start_s, end_s), as the sampler writes
    them: the primary has committed every commit of ``commits_s`` up to each sample (answering until
    ``primary_until_s``), the DR has replayed those up to ``replayed_until_s`` and is in recovery
    until ``promoted_s``. LSNs grow ``bytes_per_commit`` per commit."""
    commits = sorted(commits_s)
    ops = []
    i = 0
    while (t := start_s + i * period_s) < end_s:
        i += 1
        done = [c for c in commits if c <= t]
        replayed = [c for c in done if c <= replayed_until_s]
        dr = {"process": "platform", "type": "info", "f": "replication.sample", "side": "dr",
              "region": "dr", "member": "172.30.2.11", "time_s": t, "end_s": t + 0.002,
              "in_recovery": promoted_s is None or t < promoted_s,
              "replay_lsn": len(replayed) * bytes_per_commit,
              "receive_lsn": len(replayed) * bytes_per_commit,
              "last_replay_s": replayed[-1] if replayed else None}
        ops.append(dr)
        if primary_until_s is None or t < primary_until_s:
            lag_bytes = (len(done) - len(replayed)) * bytes_per_commit
            ops.append({"process": "platform", "type": "info", "f": "replication.sample", "side": "primary",
                        "region": "primary", "member": "172.30.1.11", "time_s": t, "end_s": t + 0.002,
                        "in_recovery": False, "current_lsn": len(done) * bytes_per_commit,
                        "replay_lsn": len(replayed) * bytes_per_commit, "lag_bytes": lag_bytes,
                        "replay_lag_s": max(0.0, t - replayed_until_s) if lag_bytes else 0.0})
    return ops
