"""The mirror's shaped links: measured round trip against the configured one, per link and WAN delay.

One command, real Docker (hold the mirror lock: it brings a mirror up)::

    .venv/bin/python bench/wan_rtt.py [--wan-delays 35,100] [--samples 21] [--state FILE] [--json PATH]

Brings a mirror up with the DR plan's topology (or uses the one ``--state`` names, and leaves it
up), then for each one-way WAN delay (the first is the topology's own when it equals it, the others
through :func:`drdrill.mirror.links.degrade`) measures each link's RTT
(:func:`drdrill.mirror.links.measure_rtt_ms`: median TCP connect time of ``--samples`` connections,
inside a container: the DR Patroni member to the primary ALB's wan address; two AZs of a region) and
prints configured, measured and the error. Goal: |error| <= 10 % on the WAN. The links are restored
and a mirror brought up here is taken down at the end.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from _common import OUT, parse_floats, progress, table, write_json

from drdrill.mirror import lifecycle, links
from drdrill.mirror.state import load_state

GOAL_ERROR_PCT = 10.0


def measure(state, wan_delay_ms: float, samples: int) -> list[dict[str, Any]]:
    configured = links.configured(state)
    if wan_delay_ms != configured["wan"].delay_ms:
        links.degrade(state, "wan", delay_ms=wan_delay_ms, source="bench")
    else:
        links.restore(state)
    time.sleep(0.5)
    specs = links.configured(state)
    degradation = links.degraded(state)
    rows = []
    for name, rtt in links.measure_rtt_ms(state, count=samples).items():
        link, _, region = name.partition(":")
        spec = links.effective(link, specs, degradation, [region] if region else list(state.regions))
        error = 100 * (rtt - spec.rtt_ms) / spec.rtt_ms if spec.rtt_ms else float("nan")
        rows.append({"wan_delay_ms": wan_delay_ms, "link": name, "configured_rtt_ms": spec.rtt_ms,
                     "measured_rtt_ms": rtt, "error_pct": round(error, 1),
                     "goal": "ok" if link != "wan" or abs(error) <= GOAL_ERROR_PCT else "MISSED"})  # fmt: skip
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wan-delays", type=parse_floats, default=[35.0, 100.0], metavar="MS,MS",
                        help="one-way WAN delays to measure (default 35,100)")
    parser.add_argument("--samples", type=int, default=21, help="connections per measurement (median)")
    parser.add_argument("--state", help="use the mirror of this state file (left up)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    own = args.state is None
    state_file = OUT / "wan_rtt" / "state.json"
    if own:
        progress("bringing a mirror up")
        t0 = time.monotonic()
        state = lifecycle.up(None, lambda m: None, state_file=state_file, timeout_s=180)
        progress(f"mirror {state.mirror_id} healthy in {time.monotonic() - t0:.1f} s")
    else:
        state = load_state(args.state)
    rows: list[dict[str, Any]] = []
    try:
        for delay in args.wan_delays:
            progress(f"one-way WAN delay {delay:g} ms")
            rows += measure(state, delay, args.samples)
    finally:
        links.restore(state)
        if own:
            lifecycle.down(state_file=state_file, progress=progress)
    print(table(["wan delay ms", "link", "configured RTT ms", "measured RTT ms", "error %", "goal"],
                [[r["wan_delay_ms"], r["link"], r["configured_rtt_ms"], r["measured_rtt_ms"], r["error_pct"],
                  r["goal"]] for r in rows],
                title=f"Measured vs configured RTT (median of {args.samples} TCP connects; WAN goal "
                      f"|error| <= {GOAL_ERROR_PCT:g} %)"))  # fmt: skip
    if args.json:
        write_json(args.json, rows)
    return 0 if all(r["goal"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
