"""Checker scaling: time and peak memory of ``load_history`` + ``check_run`` on 1M- and 10M-op histories.

Run from the repository root::

    .venv/bin/python bench/checker_scaling.py                 # sizes 1M and 10M
    .venv/bin/python bench/checker_scaling.py --sizes 200000  # a quick smoke run
    .venv/bin/python bench/checker_scaling.py --json bench/out/checker_scaling.json

What it does
------------
1. Generates (or reuses, when the parameters match) a realistic history per size under ``bench/out/``:
   5 services, many ``client-<n>`` processes, reads and writes in the synthetic locustfile's mix (writes
   as ``invoke`` + completion, keys like ``r123-payments-7-00001234``), Poisson arrivals over
   ``--duration-s``, log-normal latencies, a background error rate, and in the middle a failover:
   nemesis ``start:``/``stop:`` ops, every request started during the ``--outage-s`` outage refused
   (``fail``), requests in flight at the fault reset (``info``), and the writes acknowledged in the
   last ``--lose-s`` seconds before the fault lost. A ``final-read.json`` (present keys = acknowledged
   minus the lost set, plus some ``info`` writes that made it) goes next to it, and a ``.meta.json``
   with the known truth. Lines are built column-wise with pyarrow compute kernels (no per-line Python).
2. For each size, in a FRESH subprocess (so the peak RSS is that run's own), times
   ``load_history(path)``, loading the final read (``json.loads``, as ``drdrill.run`` does) and
   ``check_run(history, default_config(), final_read)``, and reads ``ru_maxrss``.
3. Asserts the checkers measured the known truth: every service's RTO within 0.1 s of the outage
   length, exactly the known number of lost writes per data class, the data loss window, no split
   brain, no unexpected / failed-but-present keys.
4. Prints a table (stdout); progress goes to stderr. When the largest size misses the goal
   (<= 30 s, <= 2 GB, linear) or with ``--profile``, a profiling child reports where time and memory go.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from drdrill.catalog import CATALOG, SERVICES

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
GENERATOR_VERSION = 3

DATA_CLASS = {s.name: s.data_class for s in CATALOG}
# (f, write?, share of the service's requests, ok status): the synthetic locustfile's mix.
OPERATIONS = {
    "payments": (("payments.create", True, 0.5, 201), ("payments.read", False, 0.5, 200)),
    "auth": (("auth.login", False, 1.0, 200),),
    "users": (("users.read", False, 0.75, 200), ("users.update", True, 0.25, 200)),
    "storefront": (("storefront.browse", False, 1.0, 200),),
    "analytics": (("analytics.event", True, 1.0, 202),),
}
T0 = 1_800_000_000.0
GOAL_SECONDS = 30.0
GOAL_RSS_MB = 2048.0
GOAL_LINEARITY = 1.25  # 10M time / 1M time / 10 above this counts as not linear
RTO_TOLERANCE_S = 0.1
PARSE_ONLY = "pyarrow JSON parse only (as load_history: OSFile stream, threads)"


def log(message: str) -> None:
    print(f"[checker_scaling {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------


def generation_params(args: argparse.Namespace, ops: int) -> dict[str, Any]:
    return {
        "version": GENERATOR_VERSION, "ops": ops, "duration_s": args.duration_s,
        "clients": args.clients, "outage_s": args.outage_s, "lose_s": args.lose_s,
        "error_rate": args.error_rate, "seed": args.seed, "run_id": args.run_id,
    }


def paths_for(params: dict[str, Any]) -> tuple[Path, Path, Path]:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
    stem = OUT / f"history-{params['ops']}-{digest}"
    return (stem.with_suffix(".jsonl"), stem.with_name(stem.name + ".final-read.json"),
            stem.with_name(stem.name + ".meta.json"))


def ensure_history(args: argparse.Namespace, ops: int) -> tuple[Path, Path, dict[str, Any]]:
    """The history, final read and truth for ``ops`` lines: reused when present with the same params."""
    params = generation_params(args, ops)
    history_path, final_path, meta_path = paths_for(params)
    if not args.regenerate and meta_path.is_file() and history_path.is_file() and final_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("params") == params and meta.get("history_bytes") == history_path.stat().st_size:
            log(f"reusing {history_path.relative_to(ROOT)} ({meta['lines']:,} ops, "
                f"{meta['history_bytes'] / 1e6:.0f} MB; generated in {meta['generate_s']:.1f} s)")
            return history_path, final_path, meta
    OUT.mkdir(parents=True, exist_ok=True)
    log(f"generating {ops:,} ops into {history_path.relative_to(ROOT)} ...")
    started = time.perf_counter()
    # In its own process: the generator's memory never inflates this process (whose RSS the measuring
    # children would otherwise inherit in ru_maxrss) and is freed before measuring.
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child-generate", json.dumps(params),
         str(history_path), str(final_path)], stdout=subprocess.PIPE, cwd=ROOT, check=False)
    if done.returncode != 0:
        raise SystemExit(f"generating {history_path} failed ({done.returncode})")
    truth = json.loads(done.stdout)
    generate_s = time.perf_counter() - started
    meta = {"params": params, "generate_s": generate_s, "history_bytes": history_path.stat().st_size,
            **truth}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    log(f"generated {meta['lines']:,} ops ({meta['history_bytes'] / 1e6:.0f} MB) in {generate_s:.1f} s")
    return history_path, final_path, meta


def generate(params: dict[str, Any], history_path: Path, final_path: Path) -> dict[str, Any]:
    """Write a history of exactly ``params['ops']`` lines and its final read; return the known truth."""
    import numpy as np
    import orjson
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(params["seed"])
    n_lines = int(params["ops"])
    duration_s = float(params["duration_s"])
    n_clients = int(params["clients"])
    fault_s = T0 + duration_s / 2
    outage_end_s = fault_s + float(params["outage_s"])
    lose_s = float(params["lose_s"])
    run_id = params["run_id"]

    # Operations table: op code -> (service code, f, write?, ok status).
    op_service, op_f, op_write, op_status = [], [], [], []
    for s, service in enumerate(SERVICES):
        for f, is_write, _share, status in OPERATIONS[service]:
            op_service.append(s)
            op_f.append(f)
            op_write.append(is_write)
            op_status.append(status)
    op_write_a = np.array(op_write)
    op_status_a = np.array(op_status, dtype=np.int16)

    # Nemesis ops (emitted at their start / end time): probe, the failover action, probe.
    nemesis: list[tuple[float, bytes]] = []

    def nemesis_pair(name: str, phase: str, kind: str, at_s: float, took_s: float) -> None:
        base = {"process": "nemesis", "phase": phase, "kind": kind}
        nemesis.append((at_s, orjson.dumps({**base, "type": "info", "f": f"start:{name}", "time_s": at_s})))
        nemesis.append((at_s + took_s, orjson.dumps({
            **base, "type": "ok", "f": f"stop:{name}", "time_s": at_s, "end_s": at_s + took_s,
            "latency_ms": round(took_s * 1000, 3)})))

    nemesis_pair("platform-answers", "steady-state", "probe", T0 + 1.0, 0.004)
    nemesis_pair("lossy-failover", "method", "action", fault_s, 0.003)
    nemesis_pair("platform-answers", "steady-state", "probe", outage_end_s + 15.0, 0.004)
    nemesis_pair("platform-answers", "rollback", "probe", T0 + duration_s - 5.0, 0.004)

    # Requests: client, op, start time. Clients are bound to one service (client i -> service i % 5),
    # each op picked by the service's mix; a write takes two lines (invoke + completion).
    target = n_lines - len(nemesis)
    estimate = int(target / 1.3) + 1000
    client = rng.integers(0, n_clients, estimate).astype(np.int32)
    service = (client % len(SERVICES)).astype(np.int8)
    op = np.zeros(estimate, dtype=np.int8)
    draw = rng.random(estimate)
    code = 0
    for s, svc in enumerate(SERVICES):
        cumulative = 0.0
        mask = service == s
        for _f, _w, share, _st in OPERATIONS[svc]:
            op[mask & (draw >= cumulative)] = code
            cumulative += share
            code += 1
    lines_per_request = 1 + op_write_a[op].astype(np.int64)
    cumulative_lines = np.cumsum(lines_per_request)
    n_req = int(np.searchsorted(cumulative_lines, target, side="right"))
    if n_req >= estimate:
        raise RuntimeError("request estimate too small; raise the margin")
    short = target - (int(cumulative_lines[n_req - 1]) if n_req else 0)
    client, service, op = client[: n_req + short], service[: n_req + short], op[: n_req + short]
    if short:  # exactly one line short: one more read (a storefront browse)
        storefront = SERVICES.index("storefront")
        client[-1] = storefront + len(SERVICES) * int(rng.integers(0, n_clients // len(SERVICES)))
        service[-1] = storefront
        op[-1] = op_f.index("storefront.browse")
    n_req = client.size
    del draw, lines_per_request, cumulative_lines

    gaps = rng.exponential(size=n_req)
    start_s = T0 + np.cumsum(gaps) * (duration_s / gaps.sum())
    del gaps
    latency_ms = np.round(rng.lognormal(np.log(4.0), 0.5, n_req), 3)
    is_write = op_write_a[op]

    # Outcomes. 0 invoke, 1 ok, 2 fail, 3 info.
    otype = np.ones(n_req, dtype=np.int8)
    status = op_status_a[op].astype(np.int16)
    error = np.zeros(n_req, dtype=np.int8)  # 0 none, 1 refused, 2 reset, 3 http 500, 4 http 404
    region = np.ones(n_req, dtype=np.int8)  # 0 none, 1 primary, 2 secondary
    lookup_miss = (op == op_f.index("payments.read")) & (rng.random(n_req) < 0.05)
    status[lookup_miss] = 404
    error[lookup_miss] = 4
    background = rng.random(n_req) < float(params["error_rate"])
    otype[background] = 3
    status[background] = 500
    error[background] = 3
    in_outage = (start_s >= fault_s) & (start_s < outage_end_s)
    latency_ms[in_outage] = np.round(rng.lognormal(np.log(1.0), 0.3, int(in_outage.sum())), 3)
    end_s = start_s + latency_ms / 1000.0
    in_flight = (start_s < fault_s) & (end_s >= fault_s)
    otype[in_outage] = 2
    error[in_outage] = 1
    otype[in_flight] = 3
    error[in_flight] = 2
    no_response = in_outage | in_flight
    status[no_response] = -1
    region[no_response] = 0
    region[(start_s >= outage_end_s) & (region == 1)] = 2

    # Write keys: <run>-<service>-<client>-<per-client sequence, 8 digits>.
    write_rows = np.flatnonzero(is_write)
    write_clients = client[write_rows]
    by_client = np.argsort(write_clients, kind="stable")
    sorted_clients = write_clients[by_client]
    group_start = np.searchsorted(sorted_clients, sorted_clients, side="left")
    sequence = np.empty(write_rows.size, dtype=np.int64)
    sequence[by_client] = np.arange(write_rows.size) - group_start + 1
    del by_client, sorted_clients, group_start, write_clients
    write_index = np.full(n_req, -1, dtype=np.int64)
    write_index[write_rows] = np.arange(write_rows.size)

    service_names = pa.array(SERVICES)
    process_names = pa.array([f"client-{i + 1}" for i in range(n_clients)])
    client_numbers = pa.array([str(i + 1) for i in range(n_clients)])

    def keys_of(rows: np.ndarray) -> Any:
        """Key strings of the write requests ``rows``."""
        return pc.binary_join_element_wise(
            f"{run_id}-", service_names.take(pa.array(service[rows])), "-",
            client_numbers.take(pa.array(client[rows])), "-",
            pc.utf8_lpad(pc.cast(pa.array(sequence[write_index[rows]]), pa.string()), width=8,
                         padding="0"), "")

    # Lost / present writes, and the truth the checkers must find.
    acked = is_write & (otype == 1)
    lost = acked & (end_s >= fault_s - lose_s) & (end_s < fault_s)
    info_write = is_write & (otype == 3)
    info_present = info_write & (rng.random(n_req) < 0.5)
    present = (acked & ~lost) | info_present
    truth: dict[str, Any] = {"lines": n_lines, "requests": int(n_req), "writes": int(write_rows.size),
                             "fault_s": fault_s, "outage_s": float(params["outage_s"]),
                             "lose_s": lose_s, "per_service": {}, "per_data_class": {}}
    for s, svc in enumerate(SERVICES):
        mine = service == s
        after = mine & (start_s >= outage_end_s) & (otype == 1)
        first_ok = float(start_s[np.flatnonzero(after)[0]]) if after.any() else None
        truth["per_service"][svc] = {
            "requests": int(mine.sum()), "failed_in_outage": int((mine & in_outage).sum()),
            "first_ok_after_outage_s": first_ok,
            "exact_rto_s": None if first_ok is None else first_ok - fault_s,
        }
    for data_class in sorted(set(DATA_CLASS.values())):
        codes = [s for s, svc in enumerate(SERVICES) if DATA_CLASS[svc] == data_class]
        mine = np.isin(service, codes)
        class_lost = lost & mine
        truth["per_data_class"][data_class] = {
            "acknowledged": int((acked & mine).sum()),
            "lost": int(class_lost.sum()),
            "data_loss_window_s": float(fault_s - end_s[class_lost].min()) if class_lost.any() else 0.0,
            "recovered": int((info_present & mine).sum()),
        }
    truth["lost_total"] = int(lost.sum())

    # Final read: surviving keys per service (commit order), written with one join per service.
    read_at_s = T0 + duration_s + 2.0
    parts = [f'{{"read_at_s": {read_at_s!r}, "prefix": "{run_id}", "present": {{'.encode()]
    first = True
    for s, svc in enumerate(SERVICES):
        if not any(w for _f, w, _sh, _st in OPERATIONS[svc]):
            continue
        rows = np.flatnonzero(present & (service == s))
        rows = rows[np.argsort(end_s[rows], kind="stable")]
        quoted = pc.binary_join_element_wise('"', keys_of(rows), '"', "")
        joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(quoted)], pa.int32()), quoted),
                                ", ")
        parts.append((b"" if first else b", ") + f'"{svc}": ['.encode()
                     + joined[0].as_buffer().to_pybytes() + b"]")
        first = False
    parts.append(b"}}\n")
    final_path.write_bytes(b"".join(parts))
    del parts

    # Lines in emit order: an invoke at its start, a completion at its end, a nemesis op at its time.
    n_nem = len(nemesis)
    emit_s = np.concatenate([end_s, start_s[write_rows], np.array([t for t, _ in nemesis])])
    order = np.argsort(emit_s, kind="stable")
    del emit_s
    n_writes = write_rows.size
    type_names = pa.array(["invoke", "ok", "fail", "info"])
    f_names = pa.array(op_f)
    error_pieces = pa.array([None, ',"error":"refused"', ',"error":"reset"', ',"error":"http 500"',
                             ',"error":"http 404"'])
    region_pieces = pa.array([None, ',"region":"primary"', ',"region":"secondary"'])
    nemesis_lines = pa.array([line + b"\n" for _, line in nemesis], pa.binary())

    def piece(prefix: str, values: np.ndarray, absent: np.ndarray) -> Any:
        return pc.binary_join_element_wise(prefix, pc.cast(pa.array(values, mask=absent), pa.string()), "")

    chunk = 1 << 20
    with history_path.open("wb") as out:
        for begin in range(0, n_lines, chunk):
            ids = order[begin : begin + chunk]
            is_nem = ids >= n_req + n_writes
            client_ids = ids[~is_nem]
            invoke = client_ids >= n_req
            rows = np.where(invoke, write_rows[np.clip(client_ids - n_req, 0, max(n_writes - 1, 0))],
                            client_ids)
            line_type = np.where(invoke, 0, otype[rows]).astype(np.int8)
            has_key = is_write[rows]
            key_piece = pa.nulls(rows.size, pa.string())
            if has_key.any():
                key_rows = rows[has_key]
                keys = pc.binary_join_element_wise(',"key":"', keys_of(key_rows), '"', "")
                positions = np.full(rows.size, -1, dtype=np.int64)
                positions[has_key] = np.arange(key_rows.size)
                key_piece = keys.take(pa.array(positions, mask=~has_key))
            line_status = np.where(invoke, -1, status[rows])
            text = pc.binary_join_element_wise(
                '{"process":"', process_names.take(pa.array(client[rows])),
                '","type":"', type_names.take(pa.array(line_type)),
                '","f":"', f_names.take(pa.array(op[rows])),
                '","service":"', service_names.take(pa.array(service[rows])), '"',
                key_piece,
                ',"time_s":', pc.cast(pa.array(start_s[rows]), pa.string()),
                piece(',"end_s":', end_s[rows], invoke),
                piece(',"latency_ms":', latency_ms[rows], invoke),
                piece(',"status":', line_status, line_status < 0),
                error_pieces.take(pa.array(np.where(invoke, 0, error[rows]))),
                region_pieces.take(pa.array(np.where(invoke, 0, region[rows]))),
                "}\n", "", null_handling="skip").cast(pa.binary())
            if is_nem.any():
                placed = np.empty(ids.size, dtype=np.int64)
                placed[~is_nem] = np.arange(client_ids.size)
                placed[is_nem] = client_ids.size + (ids[is_nem] - n_req - n_writes)
                text = pa.concat_arrays([text, nemesis_lines]).take(pa.array(placed))
            _, offsets, data = text.buffers()
            first_offset, last_offset = np.frombuffer(offsets, dtype=np.int32)[[text.offset, text.offset + len(text)]]
            out.write(memoryview(data)[first_offset:last_offset])
            log(f"  wrote {min(begin + chunk, n_lines):,} / {n_lines:,} ops")
    assert n_req + n_writes + n_nem == n_lines, (n_req, n_writes, n_nem, n_lines)
    return truth


# ------------------------------------------------------------------------------------------------
# The measuring child
# ------------------------------------------------------------------------------------------------


def rss_mb() -> float:
    """Peak RSS of this process in MB: VmHWM (the high-water mark of this exec's address space).

    ``ru_maxrss`` is reported too (``ru_maxrss_mb``) but it also carries the RSS the process had when it
    was forked (Linux keeps it across execve), so it can overstate a child of a big parent.
    """
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return ru_maxrss_mb()


def ru_maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def current_rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child_measure(history_path: str, final_path: str) -> dict[str, Any]:
    """Time load + final read + check_run in this (fresh) process; extract the checkers' figures."""
    from drdrill.checkers import check_run
    from drdrill.config import default_config
    from drdrill.history import load_history

    config = default_config()
    out: dict[str, Any] = {"rss_baseline_mb": rss_mb()}
    started = time.perf_counter()
    history = load_history(history_path)
    out["load_s"] = time.perf_counter() - started
    out["peak_after_load_mb"] = rss_mb()
    out["rss_holding_history_mb"] = current_rss_mb()
    started = time.perf_counter()
    final_read = json.loads(Path(final_path).read_text())
    out["final_read_s"] = time.perf_counter() - started
    out["peak_after_final_read_mb"] = rss_mb()
    started = time.perf_counter()
    result = check_run(history, config, final_read)
    out["check_s"] = time.perf_counter() - started
    out["peak_rss_mb"] = rss_mb()
    out["ru_maxrss_mb"] = ru_maxrss_mb()
    out["client_ops"] = history.n
    out["nemesis_ops"] = len(history.nemesis)
    out["validity"] = result.validity.value
    out["results"] = {}
    stack = [result]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.name.startswith(("rto:", "rpo:", "availability:")) or node.name in ("rto", "rpo", "availability"):
            out["results"][node.name] = {
                "validity": node.validity.value,
                "metrics": {k: v for k, v in node.metrics.items() if isinstance(v, int | float | None)},
                "error": node.evidence.get("error"),
            }
    return out


def proc_status(pid: int | str = "self") -> dict[str, float]:
    """VmRSS / VmHWM / RssAnon / RssFile of a process, MB."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[name] = int(value.split()[0]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


class Sampler:
    """Polls /proc/<pid>/status in a thread; peaks of anonymous (heap) and file-backed RSS since reset()."""

    def __init__(self, pid: int | str = "self", interval_s: float = 0.005) -> None:
        import threading

        self.pid, self.interval_s = pid, interval_s
        self.peak_anon = self.peak_file = self.peak_rss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            status = proc_status(self.pid)
            if status:
                self.peak_anon = max(self.peak_anon, status.get("RssAnon", 0.0))
                self.peak_file = max(self.peak_file, status.get("RssFile", 0.0))
                self.peak_rss = max(self.peak_rss, status.get("VmRSS", 0.0))
            self._stop.wait(self.interval_s)

    def reset(self) -> None:
        self.peak_anon = self.peak_file = self.peak_rss = 0.0

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def child_profile(part: str, history_path: str, final_path: str) -> dict[str, Any]:
    """Where the time and memory go. ``part``: ``parse`` (the pyarrow JSON parse alone, as
    load_history runs it, in its own fresh process so its memory peak is its own) or ``main``:
    load_history, the final read, each checker, the RPO checker's steps one by one, under cProfile."""
    import cProfile
    import io
    import pstats

    import numpy as np
    import pyarrow as pa
    import pyarrow.json as pajson

    from drdrill import history as history_module
    from drdrill.checkers import check_availability, check_rpo, check_rto, fault_start_s
    from drdrill.config import default_config
    from drdrill.history import FAIL, INFO, INVOKE, OK

    config = default_config()
    sampler = Sampler()
    sections: list[dict[str, Any]] = []

    def section(name: str, fn: Any) -> Any:
        time.sleep(0.02)
        sampler.reset()
        started = time.perf_counter()
        value = fn()
        seconds = time.perf_counter() - started
        time.sleep(0.02)
        now = proc_status()
        sections.append({"section": name, "seconds": seconds, "peak_anon_mb": sampler.peak_anon,
                         "peak_file_mb": sampler.peak_file, "peak_rss_mb": sampler.peak_rss,
                         "anon_after_mb": now.get("RssAnon", 0.0)})
        log(f"  profile: {name}: {seconds:.2f} s")
        return value

    if part == "parse":
        def parse_only() -> int:
            with pa.OSFile(history_path, mode="r") as source:
                reader = pajson.open_json(
                    source, read_options=pajson.ReadOptions(block_size=8 << 20, use_threads=True),
                    parse_options=pajson.ParseOptions(explicit_schema=history_module._arrow_schema(),
                                                      unexpected_field_behavior="ignore"))
                return sum(batch.num_rows for batch in reader)

        section(PARSE_ONLY, parse_only)
        sampler.stop()
        return {"sections": sections}

    profiler = cProfile.Profile()
    profiler.enable()
    history = section("load_history (parse + _build)", lambda: history_module.load_history(history_path))
    final_read = section("final read: json.loads", lambda: json.loads(Path(final_path).read_text()))
    fault_s = fault_start_s(history)
    section("check_availability", lambda: check_availability(history, config, fault_s=fault_s))
    section("check_rto", lambda: check_rto(history, config, fault_s=fault_s))
    section("check_rpo", lambda: check_rpo(history, config, final_read, fault_s=fault_s))
    profiler.disable()
    buffer = io.StringIO()
    pstats.Stats(profiler, stream=buffer).sort_stats("tottime").print_stats(14)
    sampler.stop()

    arrays = {name: getattr(history, name) for name in
              ("type", "time_s", "end_s", "latency_ms", "status", "key_row", "key_id")}
    arrays.update({name: getattr(history, name).codes for name in
                   ("process", "f", "service", "error", "region")})
    history_mb = (sum(a.nbytes for a in arrays.values()) + history.key_names.nbytes) / 2**20

    # The RPO checker's steps (as data_class_rpo does them), timed one by one.
    rpo_rows: list[dict[str, Any]] = []
    for data_class in config.rpo_objective_s:
        services = config.services_in_data_class(data_class)
        timings: dict[str, float] = {}

        def timed(name: str, fn: Any, timings: dict[str, float] = timings) -> Any:
            started = time.perf_counter()
            value = fn()
            timings[name] = time.perf_counter() - started
            return value

        codes = [history.service.code(s) for s in services]
        rows, ids, types = timed("select the class's key rows (np.isin on service codes)", lambda c=codes: (
            history.key_row[np.isin(history.service.codes[history.key_row], c)],
            history.key_id[np.isin(history.service.codes[history.key_row], c)].astype(np.int64),
            history.type[history.key_row[np.isin(history.service.codes[history.key_row], c)]]))

        def flags(selected: np.ndarray) -> np.ndarray:
            table = np.zeros(history.key_count, dtype=bool)
            table[selected] = True
            return table

        present_keys = timed("final read: dedupe present keys (dict.fromkeys over str)",
                             lambda sv=services: list(dict.fromkeys(
                                 k for s in sv for k in final_read["present"].get(s, []))))
        present_ids = timed("final read -> key ids (history.key_ids_of: pa.array + index_in)",
                            lambda pk=present_keys: history.key_ids_of(pk))
        timed("set logic on boolean tables (lost, failed, info, never completed)",
              lambda i=ids, t=types, p=present_ids: (
                  ~flags(p[p >= 0])[i[t == OK]], flags(i[t == FAIL]), flags(i[t == INFO]),
                  flags(i[t == INVOKE]) & ~flags(i[t != INVOKE])))
        rpo_rows.append({"data_class": data_class, "key_rows": int(rows.size),
                         "present": len(present_keys), "timings_s": timings})
        log(f"  profile: rpo steps {data_class}: {sum(timings.values()):.2f} s")

    return {"sections": sections, "history_arrays_mb": history_mb, "rpo_steps": rpo_rows,
            "cprofile_tottime": buffer.getvalue()}


def cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_child(mode: str, history_path: Path, final_path: Path, *extra: str) -> dict[str, Any]:
    """Run a measuring child; adds its peak anonymous / file-backed RSS (polled from here) and how
    much CPU other processes used meanwhile (``foreign_cpu_s``: contention on this 2-core box)."""
    import resource

    cmd = [sys.executable, str(Path(__file__).resolve()), f"--child-{mode}", *extra, str(history_path),
           str(final_path)]
    before_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy_before, wall_before = cpu_busy_s(), time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
    sampler = Sampler(process.pid, interval_s=0.01)
    stdout, _ = process.communicate()
    sampler.stop()
    busy, wall = cpu_busy_s() - busy_before, time.perf_counter() - wall_before
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after_children.ru_utime + after_children.ru_stime
           - before_children.ru_utime - before_children.ru_stime)
    if process.returncode != 0:
        raise SystemExit(f"measuring child failed ({process.returncode}): {' '.join(cmd)}")
    result = json.loads(stdout)
    result.update({"peak_anon_mb": sampler.peak_anon, "peak_file_mb": sampler.peak_file,
                   "child_cpu_s": own, "child_wall_s": wall, "foreign_cpu_s": max(0.0, busy - own)})
    return result


# ------------------------------------------------------------------------------------------------
# Verification and report
# ------------------------------------------------------------------------------------------------


def verify(meta: dict[str, Any], measured: dict[str, Any]) -> list[str]:
    """Compare the checkers' figures with the known truth; return failure messages (empty: all good)."""
    failures: list[str] = []
    results = measured["results"]
    outage_s = meta["outage_s"]
    for name, result in results.items():
        if result.get("error"):
            failures.append(f"{name} crashed: {result['error']}")
    for service in SERVICES:
        rto = results.get(f"rto:{service}", {})
        got = rto.get("metrics", {}).get("measured_rto_s")
        if got is None or abs(got - outage_s) > RTO_TOLERANCE_S:
            failures.append(f"rto:{service} measured {got} s, outage was {outage_s} s")
        if rto.get("validity") != "valid":
            failures.append(f"rto:{service} is {rto.get('validity')}, expected valid")
        avail = results.get(f"availability:{service}", {})
        if avail.get("validity") != "valid":
            failures.append(f"availability:{service} is {avail.get('validity')}, expected valid")
    total = 0
    for data_class, expected in meta["per_data_class"].items():
        metrics = results.get(f"rpo:{data_class}", {}).get("metrics", {})
        total += metrics.get("lost_count") or 0
        checks = {
            "lost_count": expected["lost"], "acknowledged_count": expected["acknowledged"],
            "recovered_count": expected["recovered"], "lost_after_fault_count": 0,
            "unexpected_count": 0, "failed_but_present_count": 0,
        }
        for key, want in checks.items():
            if metrics.get(key) != want:
                failures.append(f"rpo:{data_class} {key} = {metrics.get(key)}, expected {want}")
        window = metrics.get("data_loss_window_s")
        if window is None or abs(window - expected["data_loss_window_s"]) > 1e-6:
            failures.append(f"rpo:{data_class} data_loss_window_s = {window}, expected "
                            f"{expected['data_loss_window_s']}")
    if total != meta["lost_total"]:
        failures.append(f"lost writes {total}, expected {meta['lost_total']}")
    if measured["validity"] != "valid":
        failures.append(f"drill verdict {measured['validity']}, expected valid")
    return failures


def table(rows: list[list[str]], header: list[str]) -> str:
    from drdrill.tables import table as drdrill_table

    return drdrill_table(header, rows, align="right", rule=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time and peak RSS of load_history + check_run on generated 1M/10M-op histories "
                    "(each size measured in a fresh subprocess). Table on stdout, progress on stderr.")
    parser.add_argument("--sizes", default="1000000,10000000",
                        help="comma-separated history sizes in ops (default 1000000,10000000)")
    parser.add_argument("--duration-s", type=float, default=900.0,
                        help="seconds of traffic in each history (default 900)")
    parser.add_argument("--clients", type=int, default=500, help="client processes (default 500)")
    parser.add_argument("--outage-s", type=float, default=37.25,
                        help="known outage length in the middle, seconds (default 37.25)")
    parser.add_argument("--lose-s", type=float, default=2.5,
                        help="writes acknowledged this many seconds before the fault are lost (default 2.5)")
    parser.add_argument("--error-rate", type=float, default=0.0005,
                        help="background share of requests answered 500 (default 0.0005)")
    parser.add_argument("--seed", type=int, default=20261129, help="random seed")
    parser.add_argument("--run-id", default="r123", help="key prefix (default r123)")
    parser.add_argument("--regenerate", action="store_true", help="regenerate even if files exist")
    parser.add_argument("--profile", action="store_true",
                        help="profile the largest size even when the goal is met")
    parser.add_argument("--no-profile", action="store_true", help="never profile")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    parser.add_argument("--child-generate", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--child-measure", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_generate:
        params_text, history_arg, final_arg = args.child_generate
        truth = generate(json.loads(params_text), Path(history_arg), Path(final_arg))
        sys.stdout.write(json.dumps(truth) + "\n")
        return 0
    if args.child_measure:
        sys.stdout.write(json.dumps(child_measure(*args.child_measure)) + "\n")
        return 0
    if args.child_profile:
        sys.stdout.write(json.dumps(child_profile(*args.child_profile)) + "\n")
        return 0

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    figures: list[dict[str, Any]] = []
    all_failures: list[str] = []
    for ops in sizes:
        history_path, final_path, meta = ensure_history(args, ops)
        log(f"measuring {ops:,} ops in a fresh subprocess ...")
        measured = run_child("measure", history_path, final_path)
        total_s = measured["load_s"] + measured["check_s"]
        failures = verify(meta, measured)
        all_failures += [f"{ops:,} ops: {f}" for f in failures]
        rtos = {s: measured["results"][f"rto:{s}"]["metrics"].get("measured_rto_s") for s in SERVICES}
        lost = {c: measured["results"][f"rpo:{c}"]["metrics"].get("lost_count")
                for c in meta["per_data_class"]}
        figures.append({
            "ops": meta["lines"], "file_mb": meta["history_bytes"] / 1e6,
            "final_read_mb": final_path.stat().st_size / 1e6, "generate_s": meta["generate_s"],
            "load_s": measured["load_s"], "check_s": measured["check_s"], "total_s": total_s,
            "final_read_s": measured["final_read_s"], "peak_rss_mb": measured["peak_rss_mb"],
            "peak_anon_mb": measured["peak_anon_mb"], "peak_file_mb": measured["peak_file_mb"],
            "peak_after_load_mb": measured["peak_after_load_mb"],
            "rss_holding_history_mb": measured["rss_holding_history_mb"],
            "rss_baseline_mb": measured["rss_baseline_mb"], "ru_maxrss_mb": measured["ru_maxrss_mb"],
            "foreign_cpu_s": measured["foreign_cpu_s"], "child_wall_s": measured["child_wall_s"],
            "ops_per_s": meta["lines"] / total_s, "outage_s": meta["outage_s"],
            "measured_rto_s": rtos, "lost_expected": meta["lost_total"],
            "lost_measured": sum(v or 0 for v in lost.values()), "lost_by_class": lost,
            "correct": not failures, "failures": failures, "history": str(history_path),
            "final_read": str(final_path),
        })
        log(f"{ops:,} ops: load {measured['load_s']:.2f} s, check {measured['check_s']:.2f} s, "
            f"peak RSS {measured['peak_rss_mb']:.0f} MB, checkers {'correct' if not failures else 'WRONG'}")
        if measured["foreign_cpu_s"] > 0.1 * measured["child_wall_s"]:
            log(f"WARNING: other processes used {measured['foreign_cpu_s']:.1f} CPU s during this "
                f"{measured['child_wall_s']:.1f} s measurement; timings may be inflated")

    base = figures[0]
    for fig in figures:
        factor = fig["ops"] / base["ops"]
        fig["linearity"] = (fig["total_s"] / base["total_s"]) / factor if factor != 1 else 1.0
        fig["load_linearity"] = (fig["load_s"] / base["load_s"]) / factor if factor != 1 else 1.0
        fig["check_linearity"] = (fig["check_s"] / base["check_s"]) / factor if factor != 1 else 1.0

    largest = figures[-1]
    goal = {
        "seconds_ok": largest["total_s"] <= GOAL_SECONDS,
        "rss_ok": largest["peak_rss_mb"] <= GOAL_RSS_MB,
        "linear_ok": largest["linearity"] <= GOAL_LINEARITY,
    }
    goal_met = all(goal.values())
    profile = None
    if (args.profile or not goal_met) and not args.no_profile:
        log(f"profiling {largest['ops']:,} ops (sections, RPO set operations, cProfile) in a fresh "
            "subprocess ...")
        parts = [run_child("profile", Path(largest["history"]), Path(largest["final_read"]), part)
                 for part in ("parse", "main")]
        profile = {**parts[1], "sections": parts[0]["sections"] + parts[1]["sections"]}

    header = ["ops", "file MB", "load s", "check s", "total s", "final-read s", "peak RSS MB",
              "(anon MB)", "(file MB)", "ops/s", "linearity", "RTO err max s", "lost (expected)",
              "correct"]
    rows = []
    for fig in figures:
        delta = max(abs((v if v is not None else float("inf")) - fig["outage_s"])
                    for v in fig["measured_rto_s"].values())
        fig["rto_error_max_s"] = delta
        rows.append([f"{fig['ops']:,}", f"{fig['file_mb']:.0f}", f"{fig['load_s']:.2f}",
                     f"{fig['check_s']:.2f}", f"{fig['total_s']:.2f}", f"{fig['final_read_s']:.2f}",
                     f"{fig['peak_rss_mb']:.0f}", f"{fig['peak_anon_mb']:.0f}", f"{fig['peak_file_mb']:.0f}",
                     f"{fig['ops_per_s']:,.0f}", f"{fig['linearity']:.2f}", f"{delta:.4f}",
                     f"{fig['lost_measured']} ({fig['lost_expected']})", "yes" if fig["correct"] else "NO"])
    print("Checker scaling: load_history + check_run(default_config()), each size in a fresh process")
    print("total = load + check; final-read = json.loads of final-read.json, timed apart (not in total);")
    print("peak RSS = VmHWM of the child (= ru_maxrss of a fresh exec); (anon MB) = peak heap, (file MB) = "
          "peak file-backed pages (libraries; a memory-mapped input would show here), both polled every 10 ms;")
    print(f"linearity = (t / t at {base['ops']:,}) / (ops / {base['ops']:,}): 1.00 = linear; "
          f"RTO err = |measured RTO - known outage| over the 5 services")
    print()
    print(table(rows, header))
    print()
    for fig in figures:
        rto_text = ", ".join(f"{s} {v:.3f}" if v is not None else f"{s} -"
                             for s, v in fig["measured_rto_s"].items())
        print(f"{fig['ops']:,} ops: known outage {fig['outage_s']} s, measured RTO s: {rto_text}")
        print(f"    lost writes {fig['lost_measured']} (expected {fig['lost_expected']}; by class "
              f"{fig['lost_by_class']}); load x{fig['load_linearity']:.2f}, check x{fig['check_linearity']:.2f} "
              f"of linear; RSS after imports {fig['rss_baseline_mb']:.0f} MB, holding the History "
              f"{fig['rss_holding_history_mb']:.0f} MB, ru_maxrss {fig['ru_maxrss_mb']:.0f} MB; "
              f"other processes' CPU during it {fig['foreign_cpu_s']:.1f} s; generated in "
              f"{fig['generate_s']:.1f} s")
    print()
    print(f"Goal for {largest['ops']:,} ops: total <= {GOAL_SECONDS:g} s: "
          f"{'MET' if goal['seconds_ok'] else 'MISSED'} ({largest['total_s']:.1f} s); peak RSS <= "
          f"{GOAL_RSS_MB:g} MB: {'MET' if goal['rss_ok'] else 'MISSED'} ({largest['peak_rss_mb']:.0f} MB); "
          f"linear (<= {GOAL_LINEARITY}): {'MET' if goal['linear_ok'] else 'MISSED'} "
          f"({largest['linearity']:.2f})")
    print(f"Checkers correct on every size (RTO within {RTO_TOLERANCE_S} s of the outage, exact lost "
          f"writes, data loss window, no split brain / unexpected keys): "
          f"{'YES' if not all_failures else 'NO'}")
    for failure in all_failures:
        print(f"  FAIL {failure}")
    if profile is not None:
        print_profile(largest, profile)

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "figures": figures, "goal": goal, "goal_met": goal_met, "checkers_correct": not all_failures,
            "profile": profile, "params": generation_params(args, 0) | {"sizes": sizes},
        }, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0 if not all_failures else 1


def print_profile(largest: dict[str, Any], profile: dict[str, Any]) -> None:
    print()
    print(f"Profile of {largest['ops']:,} ops (the parse-only row in a fresh process, the rest in one more; "
          "peaks polled every 5 ms within each section; cProfile on from load_history to check_rpo):")
    print(table([[r["section"], f"{r['seconds']:.2f}", f"{r['peak_anon_mb']:.0f}", f"{r['peak_file_mb']:.0f}",
                  f"{r['peak_rss_mb']:.0f}", f"{r['anon_after_mb']:.0f}"] for r in profile["sections"]],
                ["section", "seconds", "peak anon MB", "peak file MB", "peak RSS MB", "anon after MB"]))
    print(f"History arrays (all columns, key ids and the key dictionary): {profile['history_arrays_mb']:.0f} MB")
    print()
    print("RPO checker steps, timed one by one as data_class_rpo does them:")
    rows = []
    for entry in profile["rpo_steps"]:
        for name, seconds in entry["timings_s"].items():
            rows.append([entry["data_class"], name, f"{seconds:.2f}"])
        rows.append([entry["data_class"], f"TOTAL ({entry['key_rows']:,} key rows, {entry['present']:,} "
                     "present keys)", f"{sum(entry['timings_s'].values()):.2f}"])
    print(table(rows, ["data class", "step", "seconds"]))
    print()
    print("cProfile, top functions by own time:")
    print(profile["cprofile_tottime"].rstrip())
    by_name = {r["section"]: r for r in profile["sections"]}
    load = by_name["load_history (parse + _build)"]
    parse = by_name[PARSE_ONLY]
    print()
    print("Where it goes:")
    print(f"  * load_history {load['seconds']:.1f} s = JSON parse {parse['seconds']:.1f} s + _build "
          f"{load['seconds'] - parse['seconds']:.1f} s; heap peak during load {load['peak_anon_mb']:.0f} MB for "
          f"{profile['history_arrays_mb']:.0f} MB of History arrays.")
    checks = ", ".join(f"{name} {by_name[name]['seconds']:.1f} s"
                       for name in ("check_availability", "check_rto", "check_rpo"))
    print(f"  * checkers: {checks}; final read json.loads {by_name['final read: json.loads']['seconds']:.1f} s.")


if __name__ == "__main__":
    sys.exit(main())
