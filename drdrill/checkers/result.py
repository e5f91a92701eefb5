"""Checker results: a three-state verdict with metrics, evidence and plain-sentence explanations.

Terms
-----
validity
    ``valid`` (the objective was met, and the history proves it), ``invalid`` (the history proves it
    was missed: a product defect), ``unknown`` (the history cannot tell: too little traffic, no final
    read, a checker error). Combining results, ``invalid`` wins over ``unknown``, which wins over
    ``valid`` (Jepsen's rule): one proven failure fails the drill; one gap makes it indeterminate.
metrics
    Numbers with their unit in their name (``measured_rto_s``, ``lost_count``).
evidence
    What backs the verdict: lost keys as ranges, sample ops, timestamps.
explanation
    Sentences a stakeholder can read without knowing the checker.
"""

from __future__ import annotations

import enum
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CheckResult", "Validity", "merge_validity", "run_checker"]


class Validity(enum.StrEnum):
    """Three-state verdict."""

    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


_RANK = {Validity.VALID: 0, Validity.UNKNOWN: 1, Validity.INVALID: 2}


def merge_validity(validities: list[Validity] | tuple[Validity, ...]) -> Validity:
    """Invalid beats unknown beats valid; nothing to merge is unknown."""
    if not validities:
        return Validity.UNKNOWN
    return max(validities, key=_RANK.__getitem__)


@dataclass
class CheckResult:
    """One checker's verdict on one subject (a service, a tier, a data class, or a composition)."""

    name: str
    validity: Validity
    metrics: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    explanation: list[str] = field(default_factory=list)
    children: list[CheckResult] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.validity is Validity.VALID

    def find(self, name: str) -> CheckResult:
        """The result called ``name`` in this tree (depth first); KeyError naming what exists."""
        stack = [self]
        seen = []
        while stack:
            result = stack.pop(0)
            if result.name == name:
                return result
            seen.append(result.name)
            stack.extend(result.children)
        raise KeyError(f"no result {name!r}; results: {', '.join(seen)}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (results.json)."""
        return {
            "name": self.name,
            "validity": self.validity.value,
            "metrics": self.metrics,
            "evidence": self.evidence,
            "explanation": self.explanation,
            "children": [child.to_dict() for child in self.children],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckResult:
        return cls(
            name=data["name"],
            validity=Validity(data["validity"]),
            metrics=dict(data.get("metrics", {})),
            evidence=dict(data.get("evidence", {})),
            explanation=list(data.get("explanation", [])),
            children=[cls.from_dict(child) for child in data.get("children", [])],
        )

    def summary(self) -> str:
        """One line: name, verdict and the first explanation."""
        first = self.explanation[0] if self.explanation else ""
        return f"{self.name}: {self.validity.value.upper()}" + (f" — {first}" if first else "")


def run_checker(name: str, checker: Callable[[], CheckResult]) -> CheckResult:
    """Run ``checker``; an exception becomes UNKNOWN carrying the error, never a pass."""
    try:
        return checker()
    except Exception as exc:  # noqa: BLE001 - any checker bug must surface as UNKNOWN, not crash
        return CheckResult(
            name=name,
            validity=Validity.UNKNOWN,
            evidence={"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()},
            explanation=[f"The {name} checker failed with {type(exc).__name__}: {exc}; "
                         "the verdict is unknown until it is fixed and the run re-checked."],
        )


def compose(name: str, results: list[CheckResult], explanation: list[str] | None = None) -> CheckResult:
    """A parent result whose validity merges its children's."""
    validity = merge_validity([r.validity for r in results])
    lines = explanation if explanation is not None else [r.summary() for r in results]
    return CheckResult(name=name, validity=validity, explanation=lines, children=list(results))
