"""Targets: the platform under test, whatever runs it, behind one small protocol.

A target offers what a drill needs from the platform:

``name``                         short name (``groundtruth``, ``local``, ``aws``)
``base_url``                     where synthetic traffic goes (always on 127.0.0.1 for local targets)
``healthy() -> bool``            whether every service answers its health check now
``final_read(prefix)``           the write keys starting with ``prefix`` found in the recovered system,
                                 per service: ``{"payments": [...], "users": [...], ...}``
``experiment_configuration()``   configuration values handed to every experiment (endpoints), so
                                 experiments never hard-code where the target is
``experiment_problems(exp)``     what an experiment names that this target does not have (unknown
                                 region, AZ, service...): checked before the experiment runs
``pending_payments()``           ``{"pending": N, "oldest_pending_age_s": S}``: payments a saga has
                                 not settled yet (None when the target has no sagas)
``describe()``                   what the platform is, for the report's environment: topology and
                                 component versions, ``{name: text}``
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["TARGETS", "Target"]

TARGETS = ("groundtruth", "local", "aws")


@runtime_checkable
class Target(Protocol):
    name: str
    base_url: str

    def healthy(self) -> bool: ...

    def final_read(self, prefix: str) -> dict[str, list[str]]: ...

    def experiment_configuration(self) -> dict[str, Any]: ...

    def experiment_problems(self, experiment: dict[str, Any]) -> list[str]: ...

    def pending_payments(self) -> dict[str, Any] | None: ...

    def describe(self) -> dict[str, str]: ...
