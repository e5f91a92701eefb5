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
traffic (``payments_per_s``, ``ramp_s``)
    A production write rate every drill's synthetic traffic adds unless its step names one: payment
    writers creating ``payments_per_s`` payments a second, reached over ``ramp_s`` seconds (see
    :mod:`drdrill.traffic.load`). Absent: the synthetic users alone.

The defaults are the DR plan's (``docs/dr-plan.md``, §2): the services of :mod:`drdrill.catalog`
(payments, auth and users critical with RTO < 1 h; other services non-critical with RTO < 4 h;
payments data financial with RPO < 5 min; other data RPO < 1 h). A YAML file (``drdrill.yaml``) can
override any part; see :func:`load_config`. Problems are reported as ``file: field: problem`` lines
(:mod:`drdrill.validation`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, PlainValidator, create_model

from drdrill.catalog import CATALOG, DATA_CLASSES, TIERS
from drdrill.errors import ConfigError
from drdrill.traffic.load import MAX_PAYMENTS_PER_S, MAX_RAMP_S
from drdrill.validation import Schema, choice, integer, non_empty, seconds, validate

__all__ = ["DrillConfig", "RecoveryWindow", "Service", "TrafficDefaults", "default_config", "load_config"]



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
class TrafficDefaults:
    """The payment rate synthetic traffic adds unless a step names one (None: no payment writers)."""

    payments_per_s: float | None = None
    ramp_s: float = 0.0


@dataclass(frozen=True)
class DrillConfig:
    """Services, objectives (seconds) and checker parameters of a drill."""

    services: tuple[Service, ...]
    rto_objective_s: Mapping[str, float]
    rpo_objective_s: Mapping[str, float]
    recovery: RecoveryWindow = field(default_factory=RecoveryWindow)
    source: str = "<defaults>"
    traffic: TrafficDefaults = field(default_factory=TrafficDefaults)

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
            "traffic": asdict(self.traffic),
        }


DEFAULT_RTO_OBJECTIVE_S = {"critical": 3600.0, "non-critical": 14400.0}
DEFAULT_RPO_OBJECTIVE_S = {"financial": 300.0, "other": 3600.0}


def default_config() -> DrillConfig:
    """The DR plan's services (the catalogue's) and objectives."""
    return config_from_dict({}, "<defaults>")


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
    Each part given replaces the default's: ``services`` (all of them), ``objectives.rto_s`` (every
    tier), ``objectives.rpo_s`` (every data class), each ``recovery`` value.
    """
    if path is None:
        candidate = Path("drdrill.yaml")
        if not candidate.is_file():
            return default_config()
        path = candidate
    return config_from_dict(read_yaml(path, "drill config"), str(path))


def config_from_dict(data: Mapping[str, Any], source: str) -> DrillConfig:
    """Validate and build a DrillConfig from its dict form (see :meth:`DrillConfig.to_dict`)."""
    schema = validate(_ConfigSchema, data, source)
    services = schema.services
    return DrillConfig(
        services=tuple(Service(name, s.tier, s.data_class) for name, s in services.items())
        if services is not None
        else tuple(Service(s.name, s.tier, s.data_class) for s in CATALOG),
        rto_objective_s=_seconds(schema.objectives.rto_s, DEFAULT_RTO_OBJECTIVE_S),
        rpo_objective_s=_seconds(schema.objectives.rpo_s, DEFAULT_RPO_OBJECTIVE_S),
        recovery=RecoveryWindow(**schema.recovery.model_dump()),
        source=source,
        traffic=TrafficDefaults(**schema.traffic.model_dump()),
    )


# ------------------------------------------------------------------------------------ the schema


def _seconds_table(name: str, keys: tuple[str, ...]) -> type[Schema]:
    """A schema of exactly ``keys`` -> a positive number of seconds each."""
    fields: dict[str, Any] = {
        key.replace("-", "_"): (Annotated[float, seconds()], Field(alias=key)) for key in keys
    }
    return create_model(name, __base__=Schema, **fields)


def _seconds(table: Schema | None, default: Mapping[str, float]) -> dict[str, float]:
    return dict(default) if table is None else table.model_dump(by_alias=True)


class _ServiceSchema(Schema):
    tier: Annotated[str, choice(TIERS)] = Field(None, validate_default=True)
    data_class: Annotated[str, choice(DATA_CLASSES)] = Field(None, validate_default=True)


_RtoSeconds = _seconds_table("RtoSeconds", TIERS)
_RpoSeconds = _seconds_table("RpoSeconds", DATA_CLASSES)


class _ObjectivesSchema(Schema):
    rto_s: _RtoSeconds | None = None
    rpo_s: _RpoSeconds | None = None


class _RecoverySchema(Schema):
    window_s: Annotated[float, seconds(requirement="must be a positive number of seconds")] = (
        RecoveryWindow.window_s
    )
    threshold: Annotated[float, seconds(lambda v: 0 < v <= 1, "must be in (0, 1]")] = (
        RecoveryWindow.threshold
    )
    min_ops: Annotated[int, integer(1)] = RecoveryWindow.min_ops


_payment_rate = seconds(lambda v: 0 < v <= MAX_PAYMENTS_PER_S,
                        f"must be a number of payments per second in (0, {MAX_PAYMENTS_PER_S:g}]")


class _TrafficSchema(Schema):
    # nothing (null) is no payment writers, as when the key is absent
    payments_per_s: Annotated[float | None, PlainValidator(
        lambda v: None if v is None else _payment_rate.func(v))] = None
    ramp_s: Annotated[float, seconds(
        lambda v: 0 <= v <= MAX_RAMP_S, f"must be a number of seconds in [0, {MAX_RAMP_S:g}]")] = 0.0


class _ConfigSchema(Schema):
    services: (
        Annotated[
            dict[str, _ServiceSchema],
            non_empty("expected a non-empty mapping of service name -> {tier, data_class}"),
        ]
        | None
    ) = None  # None: the catalogue's
    objectives: _ObjectivesSchema = _ObjectivesSchema()
    recovery: _RecoverySchema = _RecoverySchema()
    traffic: _TrafficSchema = _TrafficSchema()
