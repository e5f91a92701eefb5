"""Chaos Toolkit actions on the local mirror: inject faults and undo them (rollbacks).

Every fault an action injects is appended to the fault log (``faults.json`` beside the mirror's
state file), so that :func:`undo_faults`, the rollback, reverses exactly what was done — also when
the run was interrupted. The mirror is found through the experiment's ``mirror_state``
configuration (a state file path; empty = ``$DRDRILL_MIRROR_STATE`` or ``reports/mirror/state.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chaoslib.types import Configuration, Secrets

from drdrill.mirror import faults
from drdrill.mirror.lifecycle import MirrorState, load_state

__all__ = ["crash", "crash_patroni_leader", "hang", "hang_patroni_leader", "isolate", "undo_faults"]


def _state(configuration: Configuration) -> MirrorState:
    path = (configuration or {}).get("mirror_state") or None
    return load_state(path)


def _log_path(state: MirrorState) -> Path:
    return Path(state.path).with_name("faults.json")


def _record(state: MirrorState, fault: faults.Fault) -> dict[str, Any]:
    path = _log_path(state)
    log = json.loads(path.read_text()) if path.is_file() else []
    log.append(fault.to_dict())
    path.write_text(json.dumps(log, indent=2))
    return fault.to_dict()


def crash(target: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Kill the containers ``target`` selects (e.g. ``primary/az:a``, ``primary/pg-a``, ``primary``)."""
    state = _state(configuration)
    return _record(state, faults.crash(target, state))


def hang(target: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Freeze (docker pause) the containers ``target`` selects."""
    state = _state(configuration)
    return _record(state, faults.hang(target, state))


def isolate(target: str, configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Disconnect the containers ``target`` selects from every mirror network."""
    state = _state(configuration)
    return _record(state, faults.isolate(target, state))


def crash_patroni_leader(region: str = "primary", configuration: Configuration = None,
                         secrets: Secrets = None) -> dict[str, Any]:
    """Kill the current Patroni leader of ``region``."""
    return crash(f"{region}/leader", configuration, secrets)


def hang_patroni_leader(region: str = "primary", configuration: Configuration = None,
                        secrets: Secrets = None) -> dict[str, Any]:
    """Freeze the current Patroni leader of ``region``."""
    return hang(f"{region}/leader", configuration, secrets)


def undo_faults(configuration: Configuration = None, secrets: Secrets = None) -> list[str]:
    """Undo every fault in the fault log that is not undone yet (newest first); returns what was undone."""
    state = _state(configuration)
    path = _log_path(state)
    if not path.is_file():
        return []
    log = json.loads(path.read_text())
    undone = []
    for entry in reversed(log):
        fault = faults.Fault(**entry)
        if fault.undone_s is None and fault.mirror_id == state.mirror_id:
            faults.undo(fault, state)
            entry["undone_s"] = fault.undone_s
            undone.append(repr(fault))
    path.write_text(json.dumps(log, indent=2))
    return undone
