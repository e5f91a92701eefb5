"""Targets: the platform under test, whatever runs it, behind one protocol and one registry.

A target offers what a drill needs from the platform (:class:`Target`):

``name``, ``tags``               its short name (``--target``), and the Gherkin tags of the scenarios
                                 meant for it (``@mirror``: the local and the aws target)
``from_options(options)``        the target for the drill's :class:`TargetOptions`, not started yet;
                                 a malformed option (an AWS config) is refused here, before anything;
                                 ``options`` then holds them resolved (what the session is told)
``prepare(say)``                 what the ``drdrill drill`` command does first, in its own process,
                                 before the session (local: a Docker engine and the images)
``start()`` / ``stop()``         bring it up (or attach to it) for the session, and take down what
                                 was brought up
``finish(say)``                  after the session, in the command's process (local: say what the
                                 mirror left behind)
``static_problems(exp)``         what an experiment names that this target cannot have, without the
                                 platform running (pre-flight, ``drdrill validate``)
``session_problems()``           what refuses every scenario before any is planned (aws: the account
                                 guardrail); read only
``plan(exp)``                    the dry run: (lines saying what ``exp`` would do, refusals)
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
``observe(writer, note)``        a context manager the drill holds while traffic flows: the platform's
                                 own view sampled into the history as ``platform`` ops (local: the DR
                                 replica's replication position, :mod:`drdrill.mirror.replication`);
                                 ``note(**meta)`` records what it measured in drill.json (``network``,
                                 ``replication_sampler``); default: nothing observed

:data:`REGISTRY` maps each name to its class (imported only when asked for, so the aws target never
imports the Docker mirror); a new target is one new module and one line there. Nothing outside this
package asks a target for its name to decide what to do.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from drdrill.errors import DrdrillError, TargetError

if TYPE_CHECKING:
    from drdrill.history import HistoryWriter

__all__ = [
    "DEFAULT_TARGET",
    "REGISTRY",
    "SUITE_TARGET",
    "TARGETS",
    "Target",
    "TargetBase",
    "TargetOptions",
    "activity_lines",
    "create",
    "target_class",
    "targets_by_tag",
]

REGISTRY: Mapping[str, str] = {  # name -> "module:Class"
    "groundtruth": "drdrill.targets.groundtruth:GroundTruthTarget",
    "local": "drdrill.targets.local:LocalTarget",
    "aws": "drdrill.targets.aws:AwsTarget",
}
TARGETS = tuple(REGISTRY)
DEFAULT_TARGET = "groundtruth"  # drdrill drill without --suite
SUITE_TARGET = "local"  # drdrill drill --suite (the DR programme's suites run on the mirror)


@dataclass(frozen=True)
class TargetOptions:
    """What a drill tells its target; each field is the pytest option ``--drdrill-<field>``.

    ``aws_config``   the AWS mirror's description (YAML path; None: ``$DRDRILL_AWS_CONFIG``)
    ``keep_mirror``  leave the local mirror up after the session
    """

    aws_config: str | None = None
    keep_mirror: bool = False

    @classmethod
    def from_pytest(cls, config: Any) -> TargetOptions:
        """The options of a pytest session (``--drdrill-aws-config``, ``--drdrill-keep-mirror``)."""
        return cls(**{f.name: config.getoption(_option(f.name)) for f in dataclasses.fields(cls)})

    def pytest_args(self) -> list[str]:
        """These options as the pytest command line of a drill session (what is set only)."""
        args = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is True:
                args.append(_option(f.name))
            elif value not in (None, False):
                args.append(f"{_option(f.name)}={value}")
        return args


def _option(field: str) -> str:
    return "--drdrill-" + field.replace("_", "-")


@runtime_checkable
class Target(Protocol):
    name: ClassVar[str]
    tags: ClassVar[tuple[str, ...]]
    uses: ClassVar[frozenset[str]]  # the TargetOptions fields it reads
    validated_offline: ClassVar[bool]  # drdrill validate checks scenarios under it
    options: TargetOptions
    base_url: str

    @classmethod
    def from_options(cls, options: TargetOptions) -> Target: ...

    def prepare(self, say: Callable[[str], None]) -> None: ...

    def start(self) -> Target: ...

    def stop(self) -> None: ...

    def finish(self, say: Callable[[str], None]) -> None: ...

    def static_problems(self, experiment: dict[str, Any]) -> list[str]: ...

    def session_problems(self) -> list[str]: ...

    def plan(self, experiment: dict[str, Any]) -> tuple[list[str], list[str]]: ...

    def healthy(self) -> bool: ...

    def final_read(self, prefix: str) -> dict[str, list[str]]: ...

    def experiment_configuration(self) -> dict[str, Any]: ...

    def experiment_problems(self, experiment: dict[str, Any]) -> list[str]: ...

    def pending_payments(self) -> dict[str, Any] | None: ...

    def describe(self) -> dict[str, str]: ...

    def observe(self, writer: HistoryWriter,
                note: Callable[..., None]) -> contextlib.AbstractContextManager[Any]: ...


class TargetBase:
    """What most targets do for the drill-level parts of :class:`Target`: nothing to prepare or
    finish, no session-wide refusal, and a dry run that lists the method's activities."""

    tags: ClassVar[tuple[str, ...]] = ()
    uses: ClassVar[frozenset[str]] = frozenset()
    validated_offline: ClassVar[bool] = True

    options: TargetOptions = TargetOptions()

    def prepare(self, say: Callable[[str], None]) -> None:
        """Nothing to prepare before the session."""

    def finish(self, say: Callable[[str], None]) -> None:
        """Nothing to check after the session."""

    def session_problems(self) -> list[str]:
        return []

    def plan(self, experiment: dict[str, Any]) -> tuple[list[str], list[str]]:
        """The method's activities and the functions they call; nothing is refused."""
        return activity_lines(experiment), []

    def pending_payments(self) -> dict[str, Any] | None:
        """None: no sagas on this target."""
        return None

    def observe(self, writer: HistoryWriter,
                note: Callable[..., None]) -> contextlib.AbstractContextManager[Any]:
        """Nothing of the platform's own view is sampled on this target."""
        return contextlib.nullcontext()

    def degrade_link(self, link: str, **spec: Any) -> dict[str, Any]:
        """Refused: only the local mirror's links can be shaped (a real WAN cannot be)."""
        raise TargetError(f"the {getattr(self, 'name', '?')} target cannot degrade a link ({link}): "
                          "only the local mirror's links are shaped; run this scenario with --target local")

    def restore_links(self) -> dict[str, Any]:
        """Nothing was degraded."""
        return {}


def activity_lines(experiment: Mapping[str, Any]) -> list[str]:
    """``name: func`` of every activity of the experiment's method (a plan that asks nothing)."""
    return [f"{a.get('name')}: {(a.get('provider') or {}).get('func', '')}"
            for a in experiment.get("method") or []]  # fmt: skip


def target_class(name: str) -> type[Target]:
    """The class registered as ``name`` (imported now); DrdrillError naming the known ones."""
    try:
        module, _, attribute = REGISTRY[name].partition(":")
    except KeyError:
        raise DrdrillError(f"unknown target {name!r}; targets are {', '.join(TARGETS)}") from None
    return getattr(importlib.import_module(module), attribute)


def create(name: str, options: TargetOptions | None = None) -> Target:
    """The target ``name`` for ``options`` (not started); an option it does not read is refused.

    A flag it does not read (``--keep-mirror`` without a mirror) is ignored, as it always was.
    """
    options = options or TargetOptions()
    cls = target_class(name)
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        if value is not None and not isinstance(value, bool) and f.name not in cls.uses:
            users = [n for n in TARGETS if f.name in target_class(n).uses]
            raise DrdrillError(f"--{f.name.replace('_', '-')} is for --target {' or '.join(users)}")
    return cls.from_options(options)


def targets_by_tag() -> dict[str, set[str]]:
    """Gherkin tag -> the targets its scenarios run on (``mirror`` -> local and aws)."""
    found: dict[str, set[str]] = {}
    for name in TARGETS:
        for tag in target_class(name).tags:
            found.setdefault(tag, set()).add(name)
    return found
