"""How drdrill checks a YAML description: pydantic models whose every problem reads ``file: a.b[0].c: problem``.

The drill config (:mod:`drdrill.config`), the mirror topology (:mod:`drdrill.mirror.topology`) and the
AWS mirror description (:mod:`drdrill.aws.config`) declare their shapes as :class:`Schema` models and
read a parsed document with :func:`validate`. A :class:`Schema` refuses unknown keys, naming the key
and the known ones (a typo is an error, never silently ignored); a missing mapping (``patroni:`` with
nothing under it) counts as an empty one. The field types below (:func:`integer`, :func:`text`,
:func:`choice`, :func:`seconds`, ...) say what they expected and what they got. A validator that
judges several fields at once raises :class:`Problem` with the path below it (``Problem("...",
"database", 0)``). :func:`validate` turns pydantic's :class:`~pydantic.ValidationError` into one
:class:`~drdrill.errors.ConfigError` with one line per problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainValidator,
    ValidationError,
    model_validator,
)

from drdrill.errors import ConfigError

__all__ = [
    "Problem",
    "Schema",
    "boolean",
    "choice",
    "field_path",
    "given",
    "integer",
    "kind",
    "mapping",
    "names",
    "non_empty",
    "seconds",
    "text",
    "validate",
]

M = TypeVar("M", bound=BaseModel)


class Problem(ValueError):
    """What a validator found wrong; ``at`` continues the field path below where it was raised."""

    def __init__(self, message: str, *at: str | int) -> None:
        super().__init__(message)
        self.at = at


class Schema(BaseModel):
    """A mapping of known keys: unknown ones are refused by name; nothing (``key:``) reads as ``{}``."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if data is None:
            return {}
        if isinstance(data, Mapping):
            known = [f.alias or name for name, f in cls.model_fields.items()]
            for key in data:
                if not isinstance(key, str):
                    raise Problem(f"keys must be strings, got {key!r}")
                if key not in known:
                    raise Problem(f"unknown field; expected one of {', '.join(known)}", key)
        return data


def validate(model: type[M], data: Any, source: str) -> M:
    """``data`` read as ``model``; ConfigError with a ``source: field: problem`` line per problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: {field_path(loc)}: {problem}" for loc, problem in _problems(exc)]
        raise ConfigError("\n".join(lines)) from None


def field_path(loc: Sequence[str | int]) -> str:
    """``("regions", "dr", "database", 0)`` -> ``regions.dr.database[0]``; ``()`` -> ``(top level)``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's marker of a mapping key's own error: the key names it
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _problems(exc: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    out = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        cause = (error.get("ctx") or {}).get("error")
        value = error.get("input")
        if loc[-1:] == ("[key]",) and error["type"] == "string_type":
            out.append((loc[:-2], f"keys must be strings, got {value!r}"))
        elif isinstance(cause, Problem):
            out.append((loc + cause.at, str(cause)))
        elif isinstance(cause, Exception):
            out.append((loc, str(cause)))
        elif error["type"] == "missing":
            out.append((loc, "required"))
        elif error["type"] in ("model_type", "model_attributes_type", "dict_type"):
            out.append((loc, f"expected a mapping, got {kind(value)}"))
        elif error["type"] in ("list_type", "tuple_type"):
            out.append((loc, f"expected a list, got {kind(value)}"))
        elif error["type"] == "extra_forbidden":
            out.append((loc, "unknown field"))
        else:
            out.append((loc, error["msg"]))
    return out


def kind(value: Any) -> str:
    """What a value is, for messages: ``str 'ten'``, ``boolean True``, ``list``, ``nothing``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, int | float | str):
        return f"{type(value).__name__} {value!r}"
    return type(value).__name__


# ----------------------------------------------------------------------------------- field types
# Each returns the pydantic validator of a field: ``ttl: Annotated[int, integer(2, 3600)] = 10``.


def integer(low: int, high: int | None = None) -> PlainValidator:
    """An integer (not a boolean) in ``[low, high]``."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Problem(f"expected an integer, got {kind(value)}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise Problem(f"must be {bound}, got {value}")
        return value

    return PlainValidator(check)


def boolean() -> PlainValidator:
    """``true`` or ``false``."""

    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise Problem(f"expected true or false, got {kind(value)}")
        return value

    return PlainValidator(check)


def text(pattern: re.Pattern[str] | None = None, *, required: str | None = None) -> PlainValidator:
    """A non-empty string (a number written without quotes counts: ``15``, ``3.4``).

    With ``required`` (a hint, may be ``""``), nothing or ``""`` is refused as ``required<hint>``.
    """

    def check(value: Any) -> str:
        if required is not None and (value is None or value == ""):
            raise Problem(f"required{required}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise Problem(f"expected a non-empty string, got {kind(value)}")
        if pattern is not None and not pattern.fullmatch(value):
            raise Problem(f"{value!r} is not valid (expected {pattern.pattern})")
        return value

    return PlainValidator(check)


def choice(choices: Sequence[str]) -> PlainValidator:
    """One of ``choices``."""

    def check(value: Any) -> str:
        if value is None:
            raise Problem(f"required: one of {', '.join(choices)}")
        if value not in choices:
            raise Problem(f"{value!r} is not one of {', '.join(choices)}")
        return value

    return PlainValidator(check)


def seconds(condition: Callable[[float], bool] = lambda v: v > 0,
            requirement: str = "expected a positive number of seconds") -> PlainValidator:
    """A finite number (not ``.nan``/``.inf``, not a boolean) meeting ``condition``; as a float."""

    def check(value: Any) -> float:
        if (isinstance(value, bool) or not isinstance(value, int | float)
                or not math.isfinite(value) or not condition(value)):  # fmt: skip
            raise Problem(f"{requirement}, got {value!r}")
        return float(value)

    return PlainValidator(check)


def names(what: str = "names") -> PlainValidator:
    """A list of names (strings or numbers, e.g. account ids), as a tuple of strings; nothing is ``()``."""

    def check(value: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str | int) and not isinstance(v, bool)
                                                  for v in value):  # fmt: skip
            raise Problem(f"expected a list of {what}, got {value!r}")
        return tuple(str(v) for v in value)

    return PlainValidator(check)


def given(problem: str) -> BeforeValidator:
    """Refuse nothing (an absent field whose default is None, with ``validate_default=True``)."""

    def check(value: Any) -> Any:
        if value is None:
            raise Problem(problem)
        return value

    return BeforeValidator(check)


def non_empty(problem: str) -> AfterValidator:
    """Refuse an empty mapping or list."""

    def check(value: Any) -> Any:
        if not value:
            raise Problem(problem)
        return value

    return AfterValidator(check)


def mapping(value: Any) -> dict[Any, Any]:
    """A ``BeforeValidator`` of a ``dict`` field: nothing (``key:``) reads as ``{}``."""
    return {} if value is None else value
