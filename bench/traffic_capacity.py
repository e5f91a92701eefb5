"""Traffic capacity: requests/s one Locust process (one core) drives, with and without drdrill's recorder.

Run from the repository root::

    .venv/bin/python bench/traffic_capacity.py
    .venv/bin/python bench/traffic_capacity.py --duration-s 10 --repeats 1   # a quick look
    .venv/bin/python bench/traffic_capacity.py --json bench/out/traffic_capacity.json

What it does
------------
* Starts the ground-truth service (:class:`drdrill.testing.groundtruth.GroundTruthService`) and pins it
  to one core (``--server-core``, default 1); Locust runs pinned to the other (``--locust-core``, 0).
  Both processes' CPU use is reported, so the reader sees who saturated (Locust at ~100 % of its core
  and the server below: the figures are Locust's capacity).
* Runs ``python -m locust -f drdrill/traffic/locustfile.py --headless`` (FastHttpUser) with ``--users``
  users at ``--drdrill-rate`` requests/s each (1000: effectively unthrottled) for ``--duration-s``,
  in two modes: recorder OFF (no ``--drdrill-history``) and ON (recording into a history file).
  Each mode ``--repeats`` times, alternating ABBA (off, on, on, off, off, on), the server's state
  reset between runs, after one discarded warm-up run.
* Requests/s from Locust's own stats: ``--json-file`` (final totals: requests / (last request -
  start)) and, as a cross-check, the Aggregated row of ``--csv``'s ``*_stats.csv`` (written every
  second, so its count can trail the final one). For recorded runs, the number of completion ops in
  the history must equal Locust's request count, and the history's own rate is shown.
* Overhead % = 1 - median(on) / median(off). Goal: <= 10 %. When missed (or with ``--profile``), one
  more recorded run uses a wrapper locustfile (generated under ``bench/out/``) that times the
  recorder's hooks inside Locust and, at the end, replays captured real requests through the
  recorder under cProfile: where the recorder's time per request goes.

Table on stdout, progress on stderr; outputs under ``bench/out/traffic_capacity/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "traffic_capacity"
LOCUSTFILE = ROOT / "drdrill" / "traffic" / "locustfile.py"
GOAL_OVERHEAD = 0.10

sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    print(f"[traffic_capacity {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# CPU accounting
# ------------------------------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def core_busy_s() -> dict[int, tuple[float, float]]:
    """(busy, steal) CPU seconds per core so far (from /proc/stat; busy excludes steal)."""
    busy = {}
    with open("/proc/stat") as handle:
        for line in handle:
            name, *values = line.split()
            if name.startswith("cpu") and name != "cpu":
                numbers = [int(v) for v in values] + [0] * 8
                idle = numbers[3] + numbers[4]
                busy[int(name[3:])] = ((sum(numbers[:7]) - idle) / TICK, numbers[7] / TICK)
    return busy


def cpu_between(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """CPU seconds a process used between two epoch instants, interpolated from (time, cpu) samples."""
    def at(instant: float) -> float:
        previous = samples[0]
        for sample in samples:
            if sample[0] >= instant:
                span = sample[0] - previous[0]
                share = (instant - previous[0]) / span if span > 0 else 1.0
                return previous[1] + share * (sample[1] - previous[1])
            previous = sample
        return samples[-1][1]

    return at(end) - at(start) if samples else 0.0


def pin(pid: int, core: int) -> None:
    """Pin every thread of ``pid`` to ``core``."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {core})
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------------------------------------
# One Locust run
# ------------------------------------------------------------------------------------------------


def locust_command(args: argparse.Namespace, host: str, prefix: Path, duration_s: float,
                   history: Path | None, locustfile: Path = LOCUSTFILE) -> list[str]:
    cmd = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "-u", str(args.users), "-r", str(args.users), "-H", host, "-t", f"{int(duration_s)}s",
        "--stop-timeout", "2", "--exit-code-on-error", "0", "--only-summary", "--loglevel", "WARNING",
        "--csv", str(prefix), "--json-file", str(prefix),  # Locust appends .json
        "--drdrill-rate", str(args.rate), "--drdrill-timeout", "5",
    ]
    if history is not None:
        cmd += ["--drdrill-history", str(history), "--drdrill-run-id", f"rtc{prefix.name.replace('-', '')}"]
    return cmd


def run_locust(args: argparse.Namespace, service: Any, name: str, record: bool, duration_s: float,
               locustfile: Path = LOCUSTFILE, env: dict[str, str] | None = None) -> dict[str, Any]:
    """One headless Locust run pinned to the Locust core; its figures."""
    prefix = OUT / name
    for stale in OUT.glob(f"{name}_*.csv"):
        stale.unlink()
    history = OUT / f"{name}.history.jsonl" if record else None
    if history is not None and history.exists():
        history.unlink()
    cmd = locust_command(args, service.base_url, prefix, duration_s, history, locustfile)
    service.reset()
    log_path = OUT / f"{name}.log"
    core = args.locust_core
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = process_cpu_s(service.pid)
    cores_before = core_busy_s()
    started = time.perf_counter()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            preexec_fn=lambda: os.sched_setaffinity(0, {core}), start_new_session=True)
        # Sample Locust's CPU every 0.25 s, to know how much it used within the load window alone.
        cpu_samples: list[tuple[float, float]] = []
        deadline = time.monotonic() + duration_s + 60
        try:
            while True:
                cpu_samples.append((time.time(), process_cpu_s(process.pid)))
                try:
                    code = process.wait(timeout=0.25)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"Locust did not stop in time; see {log_path}") from None
        except BaseException:  # Ctrl-C or the deadline: do not leave Locust running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    wall_s = time.perf_counter() - started
    cores_after = core_busy_s()
    server_s = process_cpu_s(service.pid) - server_before
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    locust_s = (children_after.ru_utime + children_after.ru_stime
                - children_before.ru_utime - children_before.ru_stime)
    if code != 0:
        raise SystemExit(f"Locust exited with {code}; see {log_path}")

    stats_json = json.loads(Path(str(prefix) + ".json").read_text())
    entries = stats_json if isinstance(stats_json, list) else stats_json.get("stats", [])
    requests = sum(e["num_requests"] for e in entries)
    failures = sum(e["num_failures"] for e in entries)
    first = min(e["start_time"] for e in entries)
    last = max(e["last_request_timestamp"] for e in entries)
    rps = requests / (last - first) if last > first else 0.0
    aggregated = next(row for row in csv.DictReader(open(f"{prefix}_stats.csv"))
                      if row["Name"] == "Aggregated")
    window_cpu_s = cpu_between(cpu_samples, first, last)
    figures: dict[str, Any] = {
        "name": name, "mode": "on" if record else "off", "rps": rps, "requests": requests,
        "window_cpu_s": window_cpu_s,
        "cpu_us_per_request": 1e6 * window_cpu_s / requests if requests else float("nan"),
        "failures": failures, "window_s": last - first,
        "csv_rps": float(aggregated["Requests/s"]), "csv_requests": int(aggregated["Request Count"]),
        "wall_s": wall_s, "locust_cpu_s": locust_s, "server_cpu_s": server_s,
        # The server's busy share is over the load window; Locust's includes its ~1-2 s of start-up.
        "server_cpu_pct": 100.0 * server_s / (last - first) if last > first else 0.0,
        "locust_cpu_pct": 100.0 * locust_s / wall_s,
        "foreign_cpu_s": {
            "locust core": max(0.0, cores_after[core][0] - cores_before[core][0] - locust_s),
            "server core": max(0.0, cores_after[args.server_core][0] - cores_before[args.server_core][0]
                               - server_s),
        },
        "steal_s": {
            "locust core": cores_after[core][1] - cores_before[core][1],
            "server core": cores_after[args.server_core][1] - cores_before[args.server_core][1],
        },
    }
    if history is not None:
        import numpy as np

        from drdrill.history import INVOKE, load_history

        recorded = load_history(history)
        completions = recorded.type != INVOKE
        figures["history_completions"] = int(completions.sum())
        figures["history_invokes"] = int((~completions).sum())
        span = float(np.nanmax(recorded.end_s[completions]) - recorded.time_s[completions].min())
        figures["history_rps"] = figures["history_completions"] / span if span > 0 else 0.0
        figures["history_matches_locust"] = figures["history_completions"] == requests
        if not args.keep_histories:
            history.unlink()
    return figures


# ------------------------------------------------------------------------------------------------
# Profiling the recorder inside Locust
# ------------------------------------------------------------------------------------------------

PROFILED_LOCUSTFILE = r'''"""Generated by bench/traffic_capacity.py: the synthetic locustfile, with drdrill's recorder timed."""

import cProfile
import gc
import importlib.util
import io
import json
import os
import pstats
import tempfile
import time

import orjson
from locust import User, events

from drdrill.history import HistoryWriter
from drdrill.traffic.outcome import classify, error_kind

_spec = importlib.util.spec_from_file_location("drdrill_synthetic_locustfile", os.environ["BENCH_LOCUSTFILE"])
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
globals().update({name: value for name, value in vars(_module).items()
                  if isinstance(value, type) and issubclass(value, User) and not value.abstract})

recorder = _module.recorder
perf = time.perf_counter
SAMPLE_CAP = int(os.environ.get("BENCH_SAMPLE_CAP", "300"))  # real calls kept for the replay
TIMES = {name: [0.0, 0] for name in ("on_request", "invoke", "append", "flush_write", "periodic_flush")}
SAMPLES = {"on_request": [], "invoke": []}
STATE = {}
GC = {"seconds": 0.0, "collections": [0, 0, 0], "started": 0.0}


def _gc_callback(phase, info):
    if phase == "start":
        GC["started"] = perf()
    else:
        GC["seconds"] += perf() - GC["started"]
        GC["collections"][info["generation"]] += 1


gc.callbacks.append(_gc_callback)


def _timed(name, fn, sample=None):
    times = TIMES[name]

    def wrapper(*args, **kwargs):
        started = perf()
        try:
            return fn(*args, **kwargs)
        finally:
            times[0] += perf() - started
            times[1] += 1
            if sample is not None and len(SAMPLES[sample]) < SAMPLE_CAP:
                SAMPLES[sample].append((args, kwargs))
    return wrapper


_original_on_request = recorder.on_request
_original_invoke = recorder.invoke
_handlers = events.request._handlers
_handlers[_handlers.index(_original_on_request)] = _timed("on_request", _original_on_request, "on_request")
recorder.invoke = _timed("invoke", _original_invoke, "invoke")
recorder.flush = _timed("periodic_flush", recorder.flush)


def _suggested_on_request(request_type="", name="", response_time=0.0, response=None, context=None,
                          exception=None, start_time=None, **kwargs):
    """Recorder.on_request with the suggested changes and the same output: response headers
    read without truth-testing the Headers object (its __len__ sums over every header), the op
    dict built without None values (no dict comprehension in append), appended without the
    (gevent-patched) lock and without the per-append clock check (the periodic greenlet flushes)."""
    writer = recorder.writer
    if writer is None:
        return
    context = context or {}
    status = getattr(response, "status_code", None) or None
    headers = getattr(response, "headers", None)
    served_by = region = None
    if headers is not None:
        served_by = headers.get("x-served-by") or None
        region = headers.get("x-region") or None
    kind = error_kind(getattr(response, "error", None) or exception) if status is None else None
    if status is not None and exception is not None and status < 400:
        kind = error_kind(exception)
    op_type = classify(status, kind, served_by is not None, lookup=bool(context.get("lookup")))
    error = kind if kind else (f"http {status}" if status and status >= 400 else None)
    if error and exception is not None and kind in ("other",):
        error = f"other: {type(exception).__name__}: {str(exception)[:120]}"
    time_s = start_time if start_time is not None else 0.0
    op = {"process": context.get("process", "client-0"), "type": op_type, "f": context.get("f", name)}
    service = context.get("service")
    if service is not None:
        op["service"] = service
    key = context.get("key")
    if key is not None:
        op["key"] = key
    op["time_s"] = time_s
    op["end_s"] = time_s + response_time / 1000.0
    op["latency_ms"] = round(response_time, 3)
    if status is not None:
        op["status"] = status
    if error is not None:
        op["error"] = error
    if region is not None:
        op["region"] = region
    writer._buffer.append(orjson.dumps(op) + b"\n")


@events.init.add_listener
def _wrap_writer(environment, **kwargs):
    writer = recorder.writer
    if writer is not None:
        writer.append = _timed("append", writer.append)
        writer._flush_locked = _timed("flush_write", writer._flush_locked)


@events.test_start.add_listener
def _start(**kwargs):
    STATE["cpu0"], STATE["wall0"] = time.process_time(), perf()
    GC["seconds"], GC["collections"] = 0.0, [0, 0, 0]


@events.quitting.add_listener
def _report(environment, **kwargs):
    if "done" in STATE:
        return
    STATE["done"] = True
    cpu, wall = time.process_time() - STATE.get("cpu0", 0.0), perf() - STATE.get("wall0", perf())
    gc_figures = {"seconds": GC["seconds"], "collections": list(GC["collections"])}
    gc.callbacks.remove(_gc_callback)
    original_writer = recorder.writer
    if original_writer is None:  # recorder off: only the CPU and GC figures
        with open(os.environ["BENCH_PROFILE_OUT"], "w") as handle:
            json.dump({"process_cpu_s": cpu, "wall_s": wall, "gc": gc_figures,
                       "times": {name: {"seconds": t, "calls": n} for name, (t, n) in TIMES.items()}}, handle)
        return
    # Replay captured real requests (their real response objects) through the untimed recorder,
    # into a scratch history, under cProfile.
    scratch = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False)
    scratch.close()
    recorder.writer = HistoryWriter(scratch.name, flush_interval_s=0.5)
    requests, invokes = SAMPLES["on_request"], SAMPLES["invoke"]
    rounds = max(1, 60000 // max(1, len(requests)))
    profiler = cProfile.Profile()
    started = perf()
    profiler.enable()
    for _ in range(rounds):
        for args, kwargs in requests:
            _original_on_request(*args, **kwargs)
        for args, kwargs in invokes:
            _original_invoke(*args, **kwargs)
    profiler.disable()
    replay_s = perf() - started
    recorder.writer.close()
    os.unlink(scratch.name)
    recorder.writer = original_writer
    # The same replay without the profiler: per-call cost without profiling overhead.
    scratch = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False)
    scratch.close()
    recorder.writer = HistoryWriter(scratch.name, flush_interval_s=0.5)
    started = perf()
    for args, kwargs in requests * rounds:
        _original_on_request(*args, **kwargs)
    plain_request_s = perf() - started
    started = perf()
    for args, kwargs in invokes * rounds:
        _original_invoke(*args, **kwargs)
    plain_invoke_s = perf() - started
    # What-if: the current on_request against the suggested one, alternating blocks, same samples.
    recorder.writer.flush_interval_s = 1e9  # neither variant writes here (the greenlet would)
    best = {"current": float("inf"), "suggested": float("inf")}
    same_output = True
    for _ in range(5):
        for label, fn in (("current", _original_on_request), ("suggested", _suggested_on_request)):
            recorder.writer._buffer.clear()
            started = perf()
            for _ in range(max(1, rounds // 5)):
                for args, kwargs in requests:
                    fn(*args, **kwargs)
            elapsed = (perf() - started) / (max(1, rounds // 5) * max(1, len(requests)))
            best[label] = min(best[label], elapsed)
    for args, kwargs in requests[:200]:
        recorder.writer._buffer.clear()
        _original_on_request(*args, **kwargs)
        current_line = bytes(recorder.writer._buffer[-1]) if recorder.writer._buffer else b""
        recorder.writer._buffer.clear()
        _suggested_on_request(*args, **kwargs)
        suggested_line = bytes(recorder.writer._buffer[-1]) if recorder.writer._buffer else b""
        same_output = same_output and current_line == suggested_line
    recorder.writer._buffer.clear()
    recorder.writer.close()
    os.unlink(scratch.name)
    recorder.writer = original_writer
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(16)
    own = {}
    for (filename, line, function), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        own[f"{os.path.basename(filename)}:{line}({function})"] = tottime
    total_own = sum(own.values())
    top = sorted(own.items(), key=lambda item: -item[1])[:16]
    with open(os.environ["BENCH_PROFILE_OUT"], "w") as handle:
        json.dump({
            "process_cpu_s": cpu, "wall_s": wall, "gc": gc_figures,
            "times": {name: {"seconds": t, "calls": n} for name, (t, n) in TIMES.items()},
            "replay": {"rounds": rounds, "requests": len(requests) * rounds, "invokes": len(invokes) * rounds,
                       "seconds_profiled": replay_s, "request_seconds": plain_request_s,
                       "invoke_seconds": plain_invoke_s},
            "what_if": {"current_us": 1e6 * best["current"], "suggested_us": 1e6 * best["suggested"],
                        "same_output": same_output},
            "top_own_time": [[name, seconds, seconds / total_own if total_own else 0.0] for name, seconds in top],
            "pstats": text.getvalue(),
        }, handle)
'''


def profile_recorder(args: argparse.Namespace, service: Any) -> dict[str, Any]:
    """Two more runs with the timing wrapper locustfile, recorder off and on."""
    locustfile = OUT / "profiled_locustfile.py"
    locustfile.write_text(PROFILED_LOCUSTFILE)
    result: dict[str, Any] = {}
    for mode in ("off", "on"):
        out = OUT / f"recorder-profile-{mode}.json"
        if out.exists():
            out.unlink()
        log(f"  profiled run, recorder {mode} ...")
        figures = run_locust(args, service, f"profile-{mode}", mode == "on", args.duration_s, locustfile,
                             env={"BENCH_LOCUSTFILE": str(LOCUSTFILE), "BENCH_PROFILE_OUT": str(out)})
        result[mode] = {"run": figures, **json.loads(out.read_text())}
    return result


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------


def table(rows: list[list[str]], header: list[str]) -> str:
    from drdrill.tables import table as drdrill_table

    return drdrill_table(header, rows, align="right", rule=True)


def print_profile(profile: dict[str, Any]) -> None:
    on, off = profile["on"], profile["off"]
    times = on["times"]
    cpu = on["process_cpu_s"]
    requests = on["run"]["requests"]
    print()
    print("Recorder profile: two more runs with a wrapper locustfile that times the recorder's hooks and "
          "Python's GC (CPU = Locust's process time from test start to quit):")
    rows = []
    for mode, data in (("off", off), ("on", on)):
        run = data["run"]
        n = max(run["requests"], 1)
        gc_data = data["gc"]
        rows.append([mode, f"{run['rps']:,.0f}", f"{run['requests']:,}", f"{data['process_cpu_s']:.2f}",
                     f"{1e6 * data['process_cpu_s'] / n:.0f}", f"{gc_data['seconds']:.2f}",
                     f"{1e6 * gc_data['seconds'] / n:.1f}", "/".join(str(c) for c in gc_data["collections"])])
    print(table(rows, ["recorder", "req/s", "requests", "CPU s", "CPU µs/request", "GC s", "GC µs/request",
                       "GC runs gen0/1/2"]))
    print()
    rows = []
    for name, label in (("on_request", "Recorder.on_request (request event listener; includes append)"),
                        ("invoke", "Recorder.invoke (writes: invoke op, flush=True)"),
                        ("append", "  HistoryWriter.append (inside the two above)"),
                        ("flush_write", "  HistoryWriter._flush_locked (os.write; inside the above)"),
                        ("periodic_flush", "Recorder.flush (periodic greenlet, every 0.25 s)")):
        seconds, calls = times[name]["seconds"], times[name]["calls"]
        rows.append([label, f"{calls:,}", f"{seconds:.2f}", f"{1e6 * seconds / max(calls, 1):.1f}",
                     f"{1e6 * seconds / max(requests, 1):.1f}", f"{100 * seconds / cpu:.1f}"])
    print(table(rows, ["hook (recorder on)", "calls", "seconds", "µs/call", "µs/request", "% of Locust CPU"]))
    hooks_s = times["on_request"]["seconds"] + times["invoke"]["seconds"] + times["periodic_flush"]["seconds"]
    per_on = 1e6 * cpu / max(requests, 1)
    per_off = 1e6 * off["process_cpu_s"] / max(off["run"]["requests"], 1)
    gc_delta = (1e6 * on["gc"]["seconds"] / max(requests, 1)
                - 1e6 * off["gc"]["seconds"] / max(off["run"]["requests"], 1))
    print(f"CPU per request: {per_off:.0f} µs off, {per_on:.0f} µs on (+{per_on - per_off:.0f} µs); of that, "
          f"recorder hooks {1e6 * hooks_s / max(requests, 1):.1f} µs (wall time inside them, timing "
          f"wrappers included), extra GC {gc_delta:+.1f} µs, the rest elsewhere (allocator/cache effects, "
          "the wrappers).")
    replay = on["replay"]
    print(f"Replay of {len(on.get('top_own_time', []))and replay['requests']:,} captured real requests through "
          f"the recorder without the profiler: on_request "
          f"{1e6 * replay['request_seconds'] / max(replay['requests'], 1):.1f} µs/call, invoke "
          f"{1e6 * replay['invoke_seconds'] / max(replay['invokes'], 1):.1f} µs/call.")
    what_if = on.get("what_if")
    if what_if:
        print(f"What-if (same captured requests, alternating blocks, best of 5): current on_request "
              f"{what_if['current_us']:.2f} µs/call, with the suggested changes {what_if['suggested_us']:.2f} "
              f"µs/call ({100 * (1 - what_if['suggested_us'] / what_if['current_us']):.0f} % less; identical "
              f"lines: {'yes' if what_if['same_output'] else 'NO'}).")
    print()
    print("cProfile of that replay, top functions by own time (share of the replay's profiled time):")
    print(table([[name, f"{seconds:.3f}", f"{100 * share:.1f}"] for name, seconds, share in on["top_own_time"]],
                ["function", "own s", "%"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Requests/s one Locust process pinned to one core drives against the ground-truth "
                    "service, with drdrill's recorder off and on; overhead = 1 - on/off (goal <= 10 %).")
    parser.add_argument("--duration-s", type=float, default=20.0, help="seconds per run (default 20)")
    parser.add_argument("--users", type=int, default=100, help="simulated users (default 100)")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="--drdrill-rate, requests/s per user (default 1000: unthrottled)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (default 3)")
    parser.add_argument("--locust-core", type=int, default=0, help="core Locust is pinned to (default 0)")
    parser.add_argument("--server-core", type=int, default=1, help="core the server is pinned to (default 1)")
    parser.add_argument("--profile", action="store_true", help="profile the recorder even if the goal is met")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument("--keep-histories", action="store_true", help="keep the recorded history files")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    from drdrill.testing.groundtruth import GroundTruthService

    cores = sorted(os.sched_getaffinity(0))
    if args.locust_core not in cores or args.server_core not in cores or args.locust_core == args.server_core:
        parser.error(f"need two distinct usable cores for Locust and the server; usable: {cores}")
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)

    runs: list[dict[str, Any]] = []
    profile = None
    with GroundTruthService() as service:
        pin(service.pid, args.server_core)
        log(f"ground-truth service pid {service.pid} at {service.base_url}, pinned to core "
            f"{args.server_core}; Locust pinned to core {args.locust_core}")
        log("warm-up run (5 s, recorder on; discarded) ...")
        run_locust(args, service, "warmup", True, 5.0)
        order = [m for i in range(args.repeats) for m in (("off", "on") if i % 2 == 0 else ("on", "off"))]
        for index, mode in enumerate(order, start=1):
            log(f"run {index}/{len(order)}: recorder {mode}, {args.users} users, {args.duration_s:g} s ...")
            figures = run_locust(args, service, f"run{index}-{mode}", mode == "on", args.duration_s)
            runs.append(figures)
            extra = (f", history {figures['history_completions']:,} completions "
                     f"({'=' if figures['history_matches_locust'] else '!='} Locust)") if mode == "on" else ""
            log(f"  {figures['rps']:,.0f} req/s ({figures['requests']:,} requests), Locust CPU "
                f"{figures['locust_cpu_pct']:.0f} %, server CPU {figures['server_cpu_pct']:.0f} %{extra}")
        medians = {mode: statistics.median(r["rps"] for r in runs if r["mode"] == mode) for mode in ("off", "on")}
        overhead = 1 - medians["on"] / medians["off"] if medians["off"] else float("nan")
        pairs = [runs[i : i + 2] for i in range(0, len(runs) - 1, 2)]
        pair_overheads = [1 - next(r["rps"] for r in pair if r["mode"] == "on")
                          / next(r["rps"] for r in pair if r["mode"] == "off") for pair in pairs]
        goal_met = overhead <= GOAL_OVERHEAD
        if (args.profile or not goal_met) and not args.no_profile:
            log("profiling the recorder inside one more recorded run ...")
            profile = profile_recorder(args, service)

    header = ["run", "recorder", "req/s (Locust)", "requests", "failures", "req/s (csv)", "CPU µs/req", "Locust CPU %",
              "server CPU %", "foreign CPU s", "steal s", "history ops", "req/s (history)"]
    rows = []
    for r in runs:
        foreign = r["foreign_cpu_s"]
        rows.append([
            r["name"], r["mode"], f"{r['rps']:,.0f}", f"{r['requests']:,}", f"{r['failures']:,}",
            f"{r['csv_rps']:,.0f}", f"{r['cpu_us_per_request']:.0f}", f"{r['locust_cpu_pct']:.0f}",
            f"{r['server_cpu_pct']:.0f}",
            f"{foreign['locust core']:.1f}/{foreign['server core']:.1f}",
            f"{r['steal_s']['locust core']:.1f}/{r['steal_s']['server core']:.1f}",
            (f"{r['history_completions']:,}{'' if r['history_matches_locust'] else ' (!)'}"
             if r["mode"] == "on" else "-"),
            f"{r['history_rps']:,.0f}" if r["mode"] == "on" else "-",
        ])
    print(f"Traffic capacity: one Locust process (FastHttpUser) pinned to core {args.locust_core}, "
          f"ground-truth service pinned to core {args.server_core}; {args.users} users at "
          f"--drdrill-rate {args.rate:g}, {args.duration_s:g} s per run, ABBA order")
    print("req/s (Locust) = requests / (last request - start) from --json-file; req/s (csv) = "
          "Aggregated Requests/s of *_stats.csv;")
    print("CPU µs/req = Locust's CPU within the load window / requests (immune to CPU taken by other processes);")
    print("foreign CPU s = CPU other processes used on the Locust/server core during the run; steal s = "
          "hypervisor steal on those cores; history ops = completion ops recorded (must equal Locust's requests)")
    print()
    print(table(rows, header))
    print()
    spreads = {mode: [r["rps"] for r in runs if r["mode"] == mode] for mode in ("off", "on")}
    cpu_medians = {mode: statistics.median(r["cpu_us_per_request"] for r in runs if r["mode"] == mode)
                   for mode in ("off", "on")}
    cpu_overhead = 1 - cpu_medians["off"] / cpu_medians["on"] if cpu_medians["on"] else float("nan")
    print(table([[mode, f"{medians[mode]:,.0f}", ", ".join(f"{v:,.0f}" for v in spreads[mode]),
                  f"{cpu_medians[mode]:.0f}",
                  f"{statistics.median(r['locust_cpu_pct'] for r in runs if r['mode'] == mode):.0f}",
                  f"{statistics.median(r['server_cpu_pct'] for r in runs if r['mode'] == mode):.0f}"]
                 for mode in ("off", "on")],
                ["recorder", "median req/s", "runs", "median CPU µs/req", "Locust CPU %", "server CPU %"]))
    print()
    saturated = statistics.median(r["locust_cpu_pct"] for r in runs)
    server = max(r["server_cpu_pct"] for r in runs)
    contended = [r["name"] for r in runs
                 if r["foreign_cpu_s"]["locust core"] > 0.03 * r["window_s"]]
    who = ("the SERVER saturated its core: the figures are the server's capacity, not Locust's"
           if server >= 90 else "Locust saturated its core; the server had headroom" if saturated >= 90
           else "Locust's core was shared with other processes (foreign CPU), so Locust got less than a "
           "core: req/s is contaminated, CPU µs/req is not" if contended
           else "neither core was saturated (check --users)")
    print(f"Saturation: {who} (Locust median {saturated:.0f} % of its core, server max {server:.0f} %).")
    if contended:
        print(f"WARNING: other processes took > 3 % of the Locust core during {', '.join(contended)}; "
              "prefer the CPU-normalised overhead, or re-run on a quiet machine.")
    matches = all(r["history_matches_locust"] for r in runs if r["mode"] == "on")
    print(f"History cross-check: completion ops == Locust requests in every recorded run: "
          f"{'YES' if matches else 'NO'}")
    print(f"Recorder overhead: 1 - {medians['on']:,.0f} / {medians['off']:,.0f} = {100 * overhead:.1f} % "
          f"(goal <= {100 * GOAL_OVERHEAD:.0f} %: {'MET' if goal_met else 'MISSED'})")
    print(f"CPU-normalised overhead (throughput lost per Locust CPU-second): 1 - {cpu_medians['off']:.0f} / "
          f"{cpu_medians['on']:.0f} µs = {100 * cpu_overhead:.1f} %")
    spread = {mode: (max(v) - min(v)) / medians[mode] if medians[mode] else 0.0 for mode, v in spreads.items()}
    print(f"Run-to-run spread (max - min) / median: off {100 * spread['off']:.1f} %, on {100 * spread['on']:.1f} % "
          "(when it is near the overhead, the verdict is within noise: add --repeats)")
    print("Per adjacent off/on pair (ABBA pairs, less sensitive to drift): "
          + ", ".join(f"{100 * p:.1f} %" for p in pair_overheads)
          + f"; median {100 * statistics.median(pair_overheads):.1f} %")
    if profile is not None:
        print_profile(profile)

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "params": vars(args), "runs": runs, "median_rps": medians, "overhead": overhead,
            "pair_overheads": pair_overheads, "spread": spread, "cpu_us_per_request_median": cpu_medians,
            "cpu_overhead": cpu_overhead,
            "goal_met": goal_met, "history_matches_locust": matches, "profile": profile,
        }, indent=2, default=str) + "\n")
        log(f"wrote {args.json}")
    return 0 if matches else 1


if __name__ == "__main__":
    sys.exit(main())
