"""The drill configuration: the platform's services, their tiers and data classes, and its DR objectives.

Terms and units
---------------
tier
    ``critical`` or ``non-critical``: which RTO objective a service is judged against.
data class
    ``financial`` (core financial data) or ``other``: which RPO objective a service's writes are
    judged against.
RTO objective (``rto_objective_s``)
    Seconds within which a tier must be restored after a fault ("< 1 hour" = 3600). A measured RTO
    must be strictly below it.
RPO objective (``rpo_objective_s``)
    Seconds of acknowledged writes a data class may lose ("< 5 minutes" = 300). A measured data
    loss window must be strictly below it.
recovery window (``window_s``, ``threshold``, ``min_ops``)
    How the RTO checker decides users are served again: a window of ``window_s`` seconds of client
    ops whose ok-ratio is at least ``threshold`` with at least ``min_ops`` ops in it.

The defaults are the DR plan's (``docs/dr-plan.md``, §2): payments, auth and users critical with RTO < 1 h;
other services non-critical with RTO < 4 h; payments data financial with RPO < 5 min; other data
RPO < 1 h. A YAML file (``drdrill.yaml``) can override any part; see :func:`load_config`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from drdrill.errors import ConfigError

__all__ = ["DrillConfig", "RecoveryWindow", "Service", "default_config", "load_config"]

TIERS = ("critical", "non-critical")
DATA_CLASSES = ("financial", "other")


@dataclass(frozen=True)
class Service:
    """A platform service: its tier (RTO) and the data class of its writes (RPO)."""

    name: str
    tier: str
    data_class: str


@dataclass(frozen=True)
class RecoveryWindow:
    """When users count as served again: ``window_s`` seconds at ok-ratio ≥ ``threshold``, ≥ ``min_ops`` ops."""

    window_s: float = 10.0
    threshold: float = 0.99
    min_ops: int = 10


@dataclass(frozen=True)
class DrillConfig:
    """Services, objectives (seconds) and checker parameters of a drill."""

    services: tuple[Service, ...]
    rto_objective_s: Mapping[str, float]
    rpo_objective_s: Mapping[str, float]
    recovery: RecoveryWindow = field(default_factory=RecoveryWindow)
    source: str = "<defaults>"

    def service(self, name: str) -> Service:
        """The service called ``name``; ConfigError naming the valid ones otherwise."""
        for service in self.services:
            if service.name == name:
                return service
        raise ConfigError(
            f"unknown service {name!r} (config {self.source}); known: "
            + ", ".join(s.name for s in self.services)
        )

    def services_in_tier(self, tier: str) -> list[str]:
        """Names of the services of ``tier``."""
        return [s.name for s in self.services if s.tier == tier]

    def services_in_data_class(self, data_class: str) -> list[str]:
        """Names of the services whose writes are of ``data_class``."""
        return [s.name for s in self.services if s.data_class == data_class]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form that :func:`config_from_dict` reads back (stored in every run directory)."""
        return {
            "services": {s.name: {"tier": s.tier, "data_class": s.data_class} for s in self.services},
            "objectives": {
                "rto_s": dict(self.rto_objective_s),
                "rpo_s": dict(self.rpo_objective_s),
            },
            "recovery": asdict(self.recovery),
        }


_DEFAULTS: dict[str, Any] = {
    "services": {
        "payments": {"tier": "critical", "data_class": "financial"},
        "auth": {"tier": "critical", "data_class": "other"},
        "users": {"tier": "critical", "data_class": "other"},
        "storefront": {"tier": "non-critical", "data_class": "other"},
        "analytics": {"tier": "non-critical", "data_class": "other"},
    },
    "objectives": {
        "rto_s": {"critical": 3600.0, "non-critical": 14400.0},
        "rpo_s": {"financial": 300.0, "other": 3600.0},
    },
    "recovery": {"window_s": 10.0, "threshold": 0.99, "min_ops": 10},
}


def default_config() -> DrillConfig:
    """The DR plan's services and objectives."""
    return config_from_dict(_DEFAULTS, "<defaults>")


def read_yaml(path: str | os.PathLike[str], what: str) -> Any:
    """The YAML document in ``path`` ({} when empty); ConfigError naming ``what`` and the file otherwise."""
    import yaml

    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def load_config(path: str | os.PathLike[str] | None = None) -> DrillConfig:
    """Read a YAML drill config over the defaults; ConfigError naming the file and field when malformed.

    With no path, ``drdrill.yaml`` in the current directory is used when it exists, else the defaults.
    """
    if path is None:
        candidate = Path("drdrill.yaml")
        if not candidate.is_file():
            return default_config()
        path = candidate
    path = Path(path)
    data = read_yaml(path, "drill config")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    merged = {
        "services": data.get("services", _DEFAULTS["services"]),
        "objectives": {**_DEFAULTS["objectives"], **(data.get("objectives") or {})},
        "recovery": {**_DEFAULTS["recovery"], **(data.get("recovery") or {})},
    }
    unknown = set(data) - {"services", "objectives", "recovery"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
                          "expected services, objectives, recovery")
    return config_from_dict(merged, str(path))


def config_from_dict(data: Mapping[str, Any], source: str) -> DrillConfig:
    """Validate and build a DrillConfig from its dict form (see :meth:`DrillConfig.to_dict`)."""

    def fail(where: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: {where}: {message}")

    services_data = data.get("services")
    if not isinstance(services_data, Mapping) or not services_data:
        raise fail("services", "expected a non-empty mapping of service name -> {tier, data_class}")
    services = []
    for name, spec in services_data.items():
        if not isinstance(spec, Mapping):
            raise fail(f"services.{name}", "expected a mapping with tier and data_class")
        tier = spec.get("tier")
        data_class = spec.get("data_class")
        if tier not in TIERS:
            raise fail(f"services.{name}.tier", f"{tier!r} is not one of {', '.join(TIERS)}")
        if data_class not in DATA_CLASSES:
            raise fail(f"services.{name}.data_class",
                       f"{data_class!r} is not one of {', '.join(DATA_CLASSES)}")
        services.append(Service(str(name), tier, data_class))

    objectives = data.get("objectives") or {}

    def seconds_table(key: str, names: tuple[str, ...]) -> dict[str, float]:
        table = objectives.get(key)
        if not isinstance(table, Mapping):
            raise fail(f"objectives.{key}", "expected a mapping of " + " / ".join(names) + " -> seconds")
        out = {}
        for name in names:
            value = table.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise fail(f"objectives.{key}.{name}", f"expected a positive number of seconds, got {value!r}")
            out[name] = float(value)
        extra = set(table) - set(names)
        if extra:
            raise fail(f"objectives.{key}", f"unknown key(s) {', '.join(sorted(map(str, extra)))}")
        return out

    recovery_data = data.get("recovery") or {}
    try:
        recovery = RecoveryWindow(
            window_s=float(recovery_data.get("window_s", 10.0)),
            threshold=float(recovery_data.get("threshold", 0.99)),
            min_ops=int(recovery_data.get("min_ops", 10)),
        )
    except (TypeError, ValueError) as exc:
        raise fail("recovery", f"expected numbers for window_s, threshold, min_ops ({exc})") from exc
    if recovery.window_s <= 0:
        raise fail("recovery.window_s", "must be positive")
    if not 0 < recovery.threshold <= 1:
        raise fail("recovery.threshold", "must be in (0, 1]")
    if recovery.min_ops < 1:
        raise fail("recovery.min_ops", "must be at least 1")
    return DrillConfig(
        services=tuple(services),
        rto_objective_s=seconds_table("rto_s", TIERS),
        rpo_objective_s=seconds_table("rpo_s", DATA_CLASSES),
        recovery=recovery,
        source=source,
    )
