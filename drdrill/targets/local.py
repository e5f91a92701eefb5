"""The local target: the embedded Docker mirror of the platform (see :mod:`drdrill.mirror`)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from drdrill.chaos import http
from drdrill.errors import TargetError
from drdrill.targets import TargetBase, TargetOptions

if TYPE_CHECKING:
    from drdrill.history import HistoryWriter

__all__ = ["REPLICATION_INTERVAL_ENV", "LocalTarget"]

log = logging.getLogger("drdrill")

REPLICATION_INTERVAL_ENV = "DRDRILL_REPLICATION_SAMPLE_S"  # seconds between replication samples; 0: none


class LocalTarget(TargetBase):
    """A :class:`~drdrill.targets.Target` backed by the local mirror (brought up unless one is up)."""

    name = "local"
    tags = ("mirror",)
    uses = frozenset({"keep_mirror"})

    def __init__(self, keep: bool = False, state_file: str | None = None,
                 replication_interval_s: float | None = None) -> None:
        self.keep = keep
        self.state_file = state_file
        text = os.environ.get(REPLICATION_INTERVAL_ENV, "")
        if replication_interval_s is None and text:
            try:
                replication_interval_s = float(text)
            except ValueError:
                raise TargetError(f"${REPLICATION_INTERVAL_ENV}={text!r} is not a number of seconds; "
                                  "give e.g. 0.1 (0 samples nothing)") from None
        # None: drdrill.mirror.replication's default (resolved when sampling starts: no psycopg import here)
        self.replication_interval_s = replication_interval_s
        self.state: Any = None
        self._started_here = False
        self._mirrors_before: set[str] = set()
        self.options = TargetOptions(keep_mirror=keep)

    @classmethod
    def from_options(cls, options: TargetOptions) -> LocalTarget:
        return cls(keep=options.keep_mirror)

    def prepare(self, say: Callable[[str], None]) -> None:
        """A Docker engine (installed and started if none answers) and the mirror's images (built if
        missing); the mirrors already there, so that :meth:`finish` names only what this drill left."""
        from drdrill.mirror.engine import ensure_docker
        from drdrill.mirror.images import build_images
        from drdrill.mirror.lifecycle import leftovers

        say("drdrill: the local target needs a Docker engine and the mirror's images")
        ensure_docker(progress=say)
        build_images(progress=say)
        self._mirrors_before = set(leftovers())

    def finish(self, say: Callable[[str], None]) -> None:
        """Say so when the mirror this drill brought up left containers or networks behind."""
        if self.keep:
            return
        from drdrill.mirror.lifecycle import leftovers

        try:
            left = {m: n for m, n in leftovers().items() if m not in self._mirrors_before}
        except Exception as exc:  # noqa: BLE001 - a check, never a reason to lose the verdicts
            say(f"drdrill: could not check for leftover mirror resources: {exc}")
            return
        for mirror, counts in left.items():
            say(f"drdrill: WARNING: mirror {mirror} left {counts['containers']} container(s) and "
                f"{counts['networks']} network(s) behind (see the teardown error above); remove them with "
                "`drdrill mirror down --all` (a network Docker refuses to remove needs a Docker engine "
                "restart first, moby#42119). The verdicts above stand.")  # fmt: skip

    def __repr__(self) -> str:
        return f"LocalTarget({self.state.mirror_id if self.state else 'down'})"

    def start(self) -> LocalTarget:
        """Attach to the mirror of the state file if it is up; otherwise bring one up."""
        from drdrill.mirror import lifecycle
        from drdrill.mirror.state import load_state

        try:
            state = load_state(self.state_file)
            self.state = state
            if self.healthy():
                log.info("mirror %s is up; attaching to it", state.mirror_id)
                return self
            log.info("mirror %s in %s is not healthy; taking it down", state.mirror_id, state.path)
            lifecycle.down(state.mirror_id, state_file=self.state_file)
        except TargetError:
            pass
        log.info("bringing the local mirror up")
        self.state = lifecycle.up(progress=lambda line: log.info("%s", line), state_file=self.state_file)
        self._started_here = True
        return self

    def stop(self) -> None:
        """Take the mirror down if this target brought it up (unless ``keep``)."""
        if self.state is None or self.keep or not self._started_here:
            return
        from drdrill.mirror import lifecycle

        lifecycle.down(self.state.mirror_id, state_file=self.state_file)

    @property
    def base_url(self) -> str:
        if self.state is None:
            raise TargetError("the local mirror is not up")
        return self.state.global_http

    def _get(self, path: str, timeout_s: float = 3.0) -> tuple[int, dict[str, str], bytes]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.base_url + path, timeout=timeout_s) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def healthy(self) -> bool:
        """Every service answers through the global entry (a response from the service itself, < 500)."""
        return http.every_service_served(self.base_url)

    def final_read(self, prefix: str) -> dict[str, list[str]]:
        """Every key with ``prefix`` in the serving region's database (through the global entry)."""
        status, _, body = self._get(f"/_lookup?prefix={urllib.request.quote(prefix)}", timeout_s=30)
        if status != 200:
            raise TargetError(f"final read through {self.base_url}/_lookup failed with HTTP {status}")
        return json.loads(body)

    def pending_payments(self) -> dict[str, Any] | None:
        """The payments saga's unsettled payments, through the global entry (``GET /payments/_pending``)."""
        status, _, body = self._get("/payments/_pending", timeout_s=10)
        if status != 200:
            raise TargetError(f"{self.base_url}/payments/_pending answered HTTP {status}")
        return json.loads(body)

    def static_problems(self, experiment: dict[str, Any]) -> list[str]:
        """What ``experiment`` names that the DR plan's topology does not have (no mirror needed)."""
        from drdrill.chaos.local.control import experiment_problems

        return experiment_problems(experiment)

    def experiment_problems(self, experiment: dict[str, Any]) -> list[str]:
        """What ``experiment`` names that this mirror's topology does not have."""
        from drdrill.chaos.local.control import experiment_problems
        from drdrill.mirror.topology import load_topology

        topology = load_topology(self.state.data["topology"]) if self.state is not None else None
        return experiment_problems(experiment, topology, self.experiment_configuration())

    def describe(self) -> dict[str, str]:
        """The mirror's topology (regions, AZs, database members) and component versions."""
        from drdrill.mirror.topology import load_topology

        if self.state is None:
            return {"topology": "local mirror (down)"}
        topology = load_topology(self.state.data["topology"])
        out = {"topology": f"{topology.name} (local Docker mirror {self.state.mirror_id})"}
        for region in topology.regions:
            out[f"region.{region.name}"] = (
                f"{region.role}, AZs {', '.join(region.azs)}; Patroni members in AZs "
                f"{', '.join(region.database)}; weight {region.weight}")
        out.update({f"version.{name}": str(v) for name, v in topology.versions.items()})
        timings = topology.patroni
        out["patroni.timings"] = (f"ttl {timings.ttl} s, loop_wait {timings.loop_wait} s, retry_timeout "
                                  f"{timings.retry_timeout} s, synchronous_mode {timings.synchronous_mode}")
        return out

    @contextlib.contextmanager
    def observe(self, writer: HistoryWriter, note: Callable[..., None]) -> Iterator[Any]:
        """While held: the DR replica's replication position sampled into the history every
        ``replication_interval_s`` (:mod:`drdrill.mirror.replication`). Records in drill.json the
        links' measured round trips (``network``) and, at the end, the sampler's cost
        (``replication_sampler``). Never raises for what it could not measure."""
        if self.state is None:
            yield None
            return
        self._note_network(note)
        from drdrill.mirror.replication import DEFAULT_INTERVAL_S, ReplicationSampler

        interval_s = DEFAULT_INTERVAL_S if self.replication_interval_s is None else self.replication_interval_s
        if interval_s <= 0 or self.state.dr_region is None:
            yield None
            return
        sampler = ReplicationSampler(self.state, writer, interval_s).start()
        try:
            yield sampler
        finally:
            stats = sampler.stop()
            note(replication_sampler=stats)
            log.info("replication sampler: %s", ", ".join(
                f"{side} {stats[side]['achieved_per_s']:g}/s of {stats['asked_per_s']:g}/s asked"
                for side in ("dr", "primary") if side in stats))

    def _note_network(self, note: Callable[..., None]) -> None:
        """The links' measured round trips into drill.json (``network.rtt_ms``), when the mirror can measure them."""
        from drdrill.mirror.links import measure_rtt_ms

        try:
            note(network={"rtt_ms": dict(measure_rtt_ms(self.state))})
        except Exception as exc:  # noqa: BLE001 - a measurement, never a reason to fail the drill
            log.warning("could not measure the mirror's link round trips: %s", exc)

    def degrade_link(self, link: str, **spec: Any) -> dict[str, Any]:
        """Degrade one of the mirror's links (:func:`drdrill.mirror.links.degrade`) until :meth:`restore_links`."""
        from drdrill.mirror import links

        if self.state is None:
            raise TargetError("the local mirror is not up")
        return links.degrade(self.state, link, source="drill", **spec)

    def restore_links(self) -> dict[str, Any]:
        """The topology's links again (:func:`drdrill.mirror.links.restore`)."""
        from drdrill.mirror import links

        return links.restore(self.state) if self.state is not None else {}

    def experiment_configuration(self) -> dict[str, Any]:
        path = self.state.path if self.state is not None else None
        return {"mirror_state": str(path) if path else ""}
