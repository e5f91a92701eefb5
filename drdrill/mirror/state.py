"""The mirror's state file and its model (:class:`MirrorState`): where every part of a mirror is reached.

Reading it imports no Docker SDK (a chaos run, Locust or a report only read it). ``up`` writes it
(:mod:`drdrill.mirror.lifecycle`); default ``reports/mirror/state.json``, env
``DRDRILL_MIRROR_STATE``. Every address in it is 127.0.0.1::

    {
      "version": 1, "mirror_id": "m3f9a1c", "created_at": "...", "topology": ".../topology.yaml",
      "image": "drdrill/node:...", "service_mode": "platform" | "stub" | "none",
      "global": {"http": "http://127.0.0.1:PORT", "admin": {"host": "127.0.0.1", "port": PORT},
                 "backend": "regions", "weights": {"primary": 100, "dr": 0}},
      "regions": {
        "primary": {
          "role": "primary", "azs": ["a", "b", "c"], "network": "drdrill-m3f9a1c-primary",
          "sql": {"host": "127.0.0.1", "port": PORT},
          "dsn": "host=127.0.0.1 port=PORT user=postgres password=postgres dbname=postgres",
          "http": "http://127.0.0.1:PORT", "admin": {"host": "127.0.0.1", "port": PORT},
          "redis": "redis://127.0.0.1:PORT/0",
          "patroni": {"pg-a": {"az": "a", "container": "...", "rest": "http://127.0.0.1:PORT",
                               "sql": {"host": "127.0.0.1", "port": PORT}}, ...},
          "services": {"payments": {"replicas": 2, "paths": ["/payments", "/_lookup"], "tier": "critical"}, ...}
        },
        "dr": {...}
      },
      "containers": [{"key": "primary/pg-a", "name": "...", "id": "...", "region": "primary",
                      "az": "a", "role": "postgres", "member": "pg-a"}, ...],
      "networks": [{"key": "primary", "name": "...", "id": "...", "subnet": "172.30.1.0/24"}, ...],
      "timings_s": {"images": 0.4, "create": 2.1, "healthy": 21.7}
    }
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drdrill.errors import TargetError
from drdrill.mirror.haproxy import RuntimeAPI
from drdrill.mirror.plan import ADMIN_PORT, HTTP_PORT, PATRONI_PORT, REDIS_PORT, SQL_PORT, SUPERUSER
from drdrill.settings import settings

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "PUBLISHED",
    "MirrorState",
    "Progress",
    "load_state",
    "quiet",
    "set_endpoints",
    "state_path",
]

Progress = Callable[[str], object]

STATE_ENV = "DRDRILL_MIRROR_STATE"
STATE_VERSION = 1
GLOBAL_BACKEND = "regions"
LOCALHOST = "127.0.0.1"


def quiet(_: str) -> None:
    """A progress callback that says nothing."""
    return None


def state_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The state file: ``path``, else $DRDRILL_MIRROR_STATE, else ``reports/mirror/state.json`` of the
    project directory (:mod:`drdrill.settings`: the checkout when run inside it)."""
    if path is not None:
        return Path(path)
    env = os.environ.get(STATE_ENV)
    return Path(env) if env else settings().reports / "mirror" / "state.json"


@dataclass
class MirrorState:
    """What ``up`` created and where to reach it (all on 127.0.0.1); the state file's content."""

    data: dict[str, Any]
    path: Path | None = None

    def __repr__(self) -> str:  # short: it is a fixture value in reports
        return f"MirrorState({self.mirror_id}, regions={list(self.regions)})"

    @property
    def mirror_id(self) -> str:
        return self.data["mirror_id"]

    @property
    def regions(self) -> dict[str, dict[str, Any]]:
        return self.data["regions"]

    @property
    def primary_region(self) -> str:
        return next(name for name, r in self.regions.items() if r["role"] == "primary")

    @property
    def dr_region(self) -> str | None:
        return next((name for name, r in self.regions.items() if r["role"] == "dr"), None)

    @property
    def global_http(self) -> str:
        return self.data["global"]["http"]

    def check_region(self, region: str) -> None:
        """TargetError naming the regions when ``region`` is not one of them."""
        if region not in self.regions:
            raise TargetError(
                f"no region {region!r} in mirror {self.mirror_id}; regions are "
                f"{', '.join(self.regions)}"
            )

    def sql(self, region: str) -> tuple[str, int]:
        sql = self.regions[region]["sql"]
        return sql["host"], int(sql["port"])

    def patroni(self, region: str) -> dict[str, dict[str, Any]]:
        return self.regions[region]["patroni"]

    def admin(self, region: str | None = None) -> RuntimeAPI:
        """The runtime API of ``region``'s ALB, or of the global entry when ``region`` is None."""
        where = self.data["global"] if region is None else self.regions[region]
        return RuntimeAPI(where["admin"]["host"], where["admin"]["port"])

    def containers(self, **match: str) -> list[dict[str, str]]:
        """Containers whose fields equal ``match`` (e.g. ``region="primary", role="postgres"``)."""
        return [c for c in self.data["containers"] if all(c.get(k) == v for k, v in match.items())]

    def network(self, key: str) -> str:
        """The Docker name of the mirror's network ``key`` (a region, or ``wan``)."""
        for net in self.data["networks"]:
            if net["key"] == key:
                return net["name"]
        raise TargetError(f"mirror {self.mirror_id} has no {key} network")

    def connect(self, region: str | None = None, timeout_s: float = 5.0) -> psycopg.Connection:
        """A SQL connection (psycopg, autocommit) through ``region``'s ALB (default: the primary region)."""
        from drdrill.mirror.sql import connect  # psycopg only when a query runs

        host, port = self.sql(region or self.primary_region)
        return connect(host, port, timeout_s=timeout_s)

    def save(self, path: Path | None = None) -> Path:
        target = path or self.path or state_path()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2) + "\n")
        tmp.replace(target)
        self.path = target
        return target

    def save_quietly(self) -> None:
        """Save to the state file this state came from, if any; a failing write is ignored."""
        if self.path is not None:
            try:
                self.save()
            except OSError:
                pass


def load_state(path: str | os.PathLike[str] | None = None) -> MirrorState:
    """The state file of the mirror that is up; TargetError when there is none."""
    target = state_path(path)
    try:
        data = json.loads(target.read_text())
    except FileNotFoundError:
        raise TargetError(
            f"no mirror state at {target}: bring one up with `drdrill mirror up`"
        ) from None
    except (OSError, ValueError) as exc:
        raise TargetError(f"cannot read mirror state {target}: {exc}") from exc
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise TargetError(f"{target}: not a drdrill mirror state file (version {STATE_VERSION})")
    return MirrorState(data, target)


# Container ports each role publishes on 127.0.0.1 (what :func:`set_endpoints` records).
PUBLISHED = {"postgres": (PATRONI_PORT, SQL_PORT), "alb": (SQL_PORT, HTTP_PORT, ADMIN_PORT),
             "redis": (REDIS_PORT,), "dns": (HTTP_PORT, ADMIN_PORT)}  # fmt: skip


def set_endpoints(state: MirrorState, entry: dict[str, Any], ports: dict[int, int]) -> None:
    """Record in the state where container ``entry`` (a state container entry) is reached on
    127.0.0.1, from its published ``ports`` (container port -> host port)."""
    role = entry["role"]
    if role == "dns":
        state.data["global"]["http"] = f"http://{LOCALHOST}:{ports[HTTP_PORT]}"
        state.data["global"]["admin"] = {"host": LOCALHOST, "port": ports[ADMIN_PORT]}
        return
    region = state.data["regions"][entry["region"]]
    if role == "alb":
        region["sql"] = {"host": LOCALHOST, "port": ports[SQL_PORT]}
        region["dsn"] = (
            f"host={LOCALHOST} port={ports[SQL_PORT]} user={SUPERUSER[0]} "
            f"password={SUPERUSER[1]} dbname=postgres"
        )
        region["http"] = f"http://{LOCALHOST}:{ports[HTTP_PORT]}"
        region["admin"] = {"host": LOCALHOST, "port": ports[ADMIN_PORT]}
    elif role == "redis":
        region["redis"] = f"redis://{LOCALHOST}:{ports[REDIS_PORT]}/0"
    elif role == "postgres":
        region["patroni"][entry["member"]].update(
            rest=f"http://{LOCALHOST}:{ports[PATRONI_PORT]}",
            sql={"host": LOCALHOST, "port": ports[SQL_PORT]},
        )
