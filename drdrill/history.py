"""The history: one JSON line per operation, written by clients and the fault injector, read by checkers.

Terms and units
---------------
op
    One JSON object on one line of ``history.jsonl``. Fields (all optional but ``process``, ``type``
    and ``time_s``):

    ``process``     who performed it: ``client-<n>`` for synthetic users, ``nemesis`` for the fault
                    injector (chaos experiment activities, runbook steps), ``platform`` for what the
                    platform itself reported (the database's replication position, sampled).
    ``type``        ``invoke`` (a write is about to be sent), ``ok`` (certainly took effect),
                    ``fail`` (certainly did not), ``info`` (unknown: it may or may not have).
    ``f``           the operation: ``payments.create``, ``users.read``, or for the nemesis
                    ``start:<activity>`` / ``stop:<activity>``.
    ``service``     the platform service the op was aimed at (``payments``, ``auth``...).
    ``key``         the client-generated unique key of a write (shared by its invoke and completion).
    ``time_s``      epoch seconds (``time.time()``) when the op started.
    ``end_s``       epoch seconds when it completed (absent on ``invoke``).
    ``latency_ms``  milliseconds from start to completion.
    ``status``      HTTP status code, when a response arrived.
    ``error``       short description of why it failed or is unknown.
    ``region``      which region answered, when known.
    ``phase``       nemesis only: ``method``, ``rollback`` or ``steady-state``.
    ``kind``        nemesis only: ``action`` or ``probe``.
    ``runbook_step``, ``mode``, ``operator_s``
                    nemesis only, runbook steps: the step's name, ``auto`` or ``manual``, and the
                    seconds its operator took to confirm it (see :mod:`drdrill.runbook`).
    ``maintenance_window_s``
                    nemesis only: ``[start, end]`` epoch seconds of a planned outage the activity
                    caused (traffic stopped on purpose), e.g. the rollback's automatic failback.

platform op
    An op of the ``platform`` process, always of type ``info``: what the platform said about itself,
    never what a user saw (no checker of users' experience reads them). ``f`` is
    ``replication.sample`` (one answer of one database leader; ``time_s`` when the query was sent,
    ``end_s`` when its answer arrived) or ``replication.unreachable`` (the sampler lost that leader:
    ``error`` says why; written once per outage, not per failed attempt). Their own fields, every
    LSN an integer byte position in the WAL (``pg_wal_lsn_diff(lsn, '0/0')``):

    ``side``            ``dr`` (the DR region's standby leader) or ``primary`` (the primary region's
                        leader); ``region`` names the region
    ``member``          the server that answered (its address on the region's network)
    ``in_recovery``     ``pg_is_in_recovery()``: true while the DR is a standby, false once promoted
    ``replay_lsn``      dr: ``pg_last_wal_replay_lsn()``; primary: the DR walsender's replay position
    ``receive_lsn``     dr: ``pg_last_wal_receive_lsn()``
    ``last_replay_s``   dr: epoch seconds of ``pg_last_xact_replay_timestamp()``, the primary's commit
                        time of the last transaction the DR replayed
    ``current_lsn``     primary: ``pg_current_wal_lsn()``
    ``sent_lsn``, ``flush_lsn``
                        primary: the DR walsender's sent and (DR-side) flushed positions
    ``lag_bytes``       primary: ``current_lsn - replay_lsn`` of the DR walsender
    ``replay_lag_s``    primary: the DR walsender's ``replay_lag`` (PostgreSQL's own estimate)

client op / completion
    An op of a ``client-*`` process whose type is ``ok``, ``fail`` or ``info``: what a user saw.
    Reads have only a completion; writes have an ``invoke`` and, unless the client died, a completion.

History
    The columnar, read-only form of a history file used by checkers: client ops as NumPy arrays
    (one row per op, dictionary-encoded strings), nemesis ops and platform ops as lists of dicts. Built from
    a file with :func:`load_history` or from a list of dicts with :meth:`History.from_ops`; both go
    through the same code so hand-written test histories exercise what real runs do.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from drdrill.errors import HistoryError

__all__ = [
    "FIELDS",
    "INFO",
    "INVOKE",
    "FAIL",
    "OK",
    "OP_TYPES",
    "PLATFORM",
    "History",
    "HistoryWriter",
    "load_history",
    "read_ops",
]

OP_TYPES = ("invoke", "ok", "fail", "info")
INVOKE, OK, FAIL, INFO = range(4)
FIELDS = (
    "process", "type", "f", "service", "key", "time_s", "end_s", "latency_ms", "status", "error",
    "region", "phase", "kind",
)
NEMESIS = "nemesis"
PLATFORM = "platform"

_STRING_FIELDS = ("process", "type", "f", "service", "key", "error", "region", "phase", "kind")
_FLOAT_FIELDS = ("time_s", "end_s", "latency_ms")
_NEMESIS_FIELDS = ("runbook_step", "mode", "operator_s", "maintenance_window_s")
# platform ops' own fields and their arrow types (see the module docstring)
_PLATFORM_FIELDS = {
    "side": "string", "member": "string", "in_recovery": "bool_", "replay_lsn": "int64",
    "receive_lsn": "int64", "last_replay_s": "float64", "current_lsn": "int64", "sent_lsn": "int64",
    "flush_lsn": "int64", "lag_bytes": "int64", "replay_lag_s": "float64",
}  # fmt: skip


class HistoryWriter:
    """Appends ops to a history file; thread-safe; flushes at least every ``flush_interval_s``.

    The file is opened with ``O_APPEND`` and every flush is one ``write()`` of whole lines, so
    several processes (Locust, the fault injector) can append to the same file without tearing
    lines. ``append(..., flush=True)`` writes through at once: writes log their ``invoke`` that
    way, so an attempt is on disk before the request leaves.
    """

    def __init__(self, path: str | os.PathLike[str], flush_interval_s: float = 0.5) -> None:
        self.path = Path(path)
        self.flush_interval_s = flush_interval_s
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._buffer: list[bytes] = []
        self._lock = threading.Lock()
        self._last_flush_s = time.monotonic()

    def append(self, op: Mapping[str, Any], flush: bool = False) -> None:
        """Queue one op (a mapping of the fields above; ``None`` values are dropped)."""
        line = orjson.dumps({k: v for k, v in op.items() if v is not None}) + b"\n"
        with self._lock:
            self._buffer.append(line)
            if flush or time.monotonic() - self._last_flush_s >= self.flush_interval_s:
                self._flush_locked()

    def flush(self) -> None:
        """Write every queued op to the file now."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._last_flush_s = time.monotonic()
        if not self._buffer or self._fd is None:
            return
        data = b"".join(self._buffer)
        self._buffer.clear()
        while data:
            written = os.write(self._fd, data)
            data = data[written:]

    def close(self) -> None:
        """Flush and close; later appends are dropped silently (the run is over)."""
        with self._lock:
            self._flush_locked()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_ops(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Yield every op of a history file as a dict, in file order.

    A last line without its newline (the writer died mid-write) is skipped; any other line that is
    not a JSON object raises :class:`HistoryError` naming the file and line.
    """
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise HistoryError(f"cannot read history {path}: {exc.strerror}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return
            if not line.strip():
                continue
            try:
                op = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise HistoryError(f"{path}:{number}: not a JSON object: {exc}") from exc
            if not isinstance(op, dict):
                raise HistoryError(f"{path}:{number}: expected a JSON object, got {type(op).__name__}")
            yield op


@dataclass(frozen=True)
class Codes:
    """A dictionary-encoded string column: ``names[codes[i]]`` is row i's value (``codes < 0``: absent)."""

    codes: np.ndarray
    names: tuple[str, ...]

    def code(self, name: str) -> int:
        """The code of ``name``, or -2 (matches nothing, not even absent) when it never occurs."""
        try:
            return self.names.index(name)
        except ValueError:
            return -2

    def value(self, row: int) -> str | None:
        """The string at ``row`` (None when absent)."""
        code = int(self.codes[row])
        return self.names[code] if code >= 0 else None


@dataclass(frozen=True)
class History:
    """A history in columnar form: client ops as arrays, nemesis and platform ops as dicts. See the module docstring.

    Columns (length ``n``, one row per client op, file order):
    ``type`` (int8: INVOKE/OK/FAIL/INFO), ``time_s``, ``end_s``, ``latency_ms`` (float64, NaN when
    absent), ``status`` (int32, -1 when absent), and the dictionary-encoded ``process``, ``f``,
    ``service``, ``error``, ``region``. Write keys are held only for rows that have one:
    ``key_row`` (row indices) and ``key_id`` (int32), same length; ``key_id`` indexes
    ``key_names`` (a pyarrow string array of the distinct keys), so set operations on keys are
    integer operations.
    ``nemesis``: nemesis ops as dicts, sorted by ``time_s``; ``platform``: platform ops likewise.
    """

    type: np.ndarray
    time_s: np.ndarray
    end_s: np.ndarray
    latency_ms: np.ndarray
    status: np.ndarray
    process: Codes
    f: Codes
    service: Codes
    error: Codes
    region: Codes
    key_row: np.ndarray
    key_id: np.ndarray
    key_names: Any
    nemesis: tuple[dict[str, Any], ...] = field(default=())
    platform: tuple[dict[str, Any], ...] = field(default=())
    source: str = "<memory>"

    @property
    def n(self) -> int:
        """Number of client ops."""
        return int(self.type.shape[0])

    def op(self, row: int) -> dict[str, Any]:
        """Row ``row`` as an op dict (for evidence); slow, for a handful of rows only."""
        op: dict[str, Any] = {
            "process": self.process.value(row),
            "type": OP_TYPES[int(self.type[row])],
            "f": self.f.value(row),
            "service": self.service.value(row),
            "time_s": float(self.time_s[row]),
        }
        for name in ("end_s", "latency_ms"):
            value = float(getattr(self, name)[row])
            if not np.isnan(value):
                op[name] = value
        if self.status[row] >= 0:
            op["status"] = int(self.status[row])
        for name in ("error", "region"):
            value = getattr(self, name).value(row)
            if value is not None:
                op[name] = value
        hit = np.searchsorted(self.key_row, row)
        if hit < self.key_row.shape[0] and self.key_row[hit] == row:
            op["key"] = self.key_names[int(self.key_id[hit])].as_py()
        return {k: v for k, v in op.items() if v is not None}

    @property
    def key_count(self) -> int:
        """Number of distinct write keys."""
        return len(self.key_names)

    def key_strings(self, ids: np.ndarray) -> list[str]:
        """The keys with these ids, as strings (for evidence and tests)."""
        import pyarrow as pa

        return self.key_names.take(pa.array(np.asarray(ids, dtype=np.int64))).to_pylist()

    def key_ids_of(self, keys: list[str]) -> np.ndarray:
        """Ids of ``keys`` in this history; -1 for a key the history never saw."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not keys:
            return np.zeros(0, dtype=np.int64)
        found = pc.index_in(pa.array(keys, type=pa.string()), value_set=self.key_names)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)

    @classmethod
    def from_ops(cls, ops: Iterable[Mapping[str, Any]], source: str = "<memory>") -> History:
        """Build a History from op dicts (hand-written histories in tests go through here)."""
        return _build(_ops_to_batches(ops), source)


def load_history(path: str | os.PathLike[str]) -> History:
    """Read a history file into a :class:`History`, streaming (10M ops fit in well under 2 GB).

    A truncated last line is ignored (the writer crashed); a malformed line raises
    :class:`HistoryError` naming the file and line.
    """
    import pyarrow as pa
    import pyarrow.json as pajson

    path = Path(path)
    if not path.is_file():
        raise HistoryError(f"no history file at {path}")
    size = path.stat().st_size
    if size == 0:
        return _build(iter(()), str(path))
    complete = _complete_length(path, size)
    if complete == 0:
        return _build(iter(()), str(path))
    # Stream through a plain file (a memory map would count the whole file as resident), and stop
    # at the last newline: a torn last line is what a crash mid-write leaves.
    if complete == size:
        source = pa.OSFile(str(path), mode="r")
    else:
        source = pa.PythonFile(_Prefix(path.open("rb"), complete), mode="r")
    read_options = pajson.ReadOptions(block_size=8 << 20, use_threads=True)
    parse_options = pajson.ParseOptions(
        explicit_schema=_arrow_schema(), unexpected_field_behavior="ignore"
    )
    try:
        with source:
            reader = pajson.open_json(source, read_options=read_options, parse_options=parse_options)
            return _build(iter(reader), str(path))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Let the line-by-line reader name the offending line.
        for _ in read_ops(path):
            pass
        raise HistoryError(f"{path}: not a valid history (a field has the wrong type)") from None


def _complete_length(path: Path, size: int) -> int:
    """Bytes up to and including the last newline (scans back from the end in small steps)."""
    step = 1 << 16
    with path.open("rb") as handle:
        end = size
        while end > 0:
            start = max(0, end - step)
            handle.seek(start)
            at = handle.read(end - start).rfind(b"\n")
            if at >= 0:
                return start + at + 1
            end = start
    return 0


class _Prefix(io.RawIOBase):
    """A read-only binary file that ends after its first ``length`` bytes."""

    def __init__(self, raw: Any, length: int) -> None:
        self.raw = raw
        self.remaining = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)[: self.remaining]
        count = self.raw.readinto(view)
        self.remaining -= count
        return count

    def close(self) -> None:
        self.raw.close()
        super().close()


def _arrow_schema() -> Any:
    import pyarrow as pa

    fields = []
    for name in FIELDS:
        if name in _FLOAT_FIELDS:
            fields.append(pa.field(name, pa.float64()))
        elif name == "status":
            fields.append(pa.field(name, pa.int64()))
        else:
            fields.append(pa.field(name, pa.string()))
    fields += [
        pa.field("runbook_step", pa.string()),
        pa.field("mode", pa.string()),
        pa.field("operator_s", pa.float64()),
        pa.field("maintenance_window_s", pa.list_(pa.float64())),
    ]
    fields += [pa.field(name, getattr(pa, kind)()) for name, kind in _PLATFORM_FIELDS.items()]
    return pa.schema(fields)


def _ops_to_batches(ops: Iterable[Mapping[str, Any]]) -> Iterator[Any]:
    import pyarrow as pa

    schema = _arrow_schema()
    names = (*FIELDS, *_NEMESIS_FIELDS, *_PLATFORM_FIELDS)
    rows = [{name: op.get(name) for name in names} for op in ops]
    floats = (*_FLOAT_FIELDS, *(n for n, kind in _PLATFORM_FIELDS.items() if kind == "float64"))
    for row in rows:
        for name in floats:
            if row[name] is not None:
                row[name] = float(row[name])
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=schema)


class _Encoder:
    """Grows a global string dictionary across batches."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.chunks: list[np.ndarray] = []

    def add(self, column: Any, dtype: Any = np.int16) -> None:
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(column)
        local = encoded.dictionary.to_pylist()
        mapping = np.array([self.index.setdefault(v, len(self.index)) for v in local] + [-1], dtype=dtype)
        indices = encoded.indices.fill_null(len(local)).to_numpy(zero_copy_only=False)
        self.chunks.append(mapping[indices])

    def finish(self, dtype: Any = np.int16) -> Codes:
        codes = np.concatenate(self.chunks) if self.chunks else np.zeros(0, dtype=dtype)
        self.chunks.clear()
        return Codes(codes.astype(dtype, copy=False), tuple(self.index))


def _build(batches: Iterator[Any], source: str) -> History:
    import pyarrow as pa
    import pyarrow.compute as pc

    type_codes = {name: code for code, name in enumerate(OP_TYPES)}
    encoders = {name: _Encoder() for name in ("process", "f", "service", "error", "region")}
    types: list[np.ndarray] = []
    floats: dict[str, list[np.ndarray]] = {name: [] for name in _FLOAT_FIELDS}
    statuses: list[np.ndarray] = []
    key_rows: list[np.ndarray] = []
    keys: list[Any] = []
    apart: dict[str, list[dict[str, Any]]] = {NEMESIS: [], PLATFORM: []}
    offset = 0
    for batch in batches:
        for process, kept in apart.items():
            mine = pc.fill_null(pc.equal(batch.column("process"), process), False)
            if pc.any(mine).as_py():
                kept.extend(
                    {k: v for k, v in row.items() if v is not None}
                    for row in batch.filter(mine).to_pylist()
                )
                batch = batch.filter(pc.invert(mine))
        n = batch.num_rows
        if n == 0:
            continue
        missing = pc.sum(pc.is_null(batch.column("time_s"))).as_py() or 0
        if missing or pc.sum(pc.is_null(batch.column("type"))).as_py():
            raise HistoryError(f"{source}: {missing or 'some'} client op(s) lack time_s or type")
        type_column = batch.column("type")
        unknown = pc.invert(pc.is_in(type_column, value_set=pa.array(OP_TYPES)))
        if pc.any(unknown).as_py():
            bad = type_column.filter(unknown)[0].as_py()
            raise HistoryError(f"{source}: unknown op type {bad!r} (expected one of {', '.join(OP_TYPES)})")
        encoded_types = pc.dictionary_encode(type_column)
        lookup = np.array([type_codes[v] for v in encoded_types.dictionary.to_pylist()], dtype=np.int8)
        types.append(lookup[encoded_types.indices.to_numpy()])
        for name in _FLOAT_FIELDS:
            floats[name].append(batch.column(name).to_numpy(zero_copy_only=False).astype(np.float64))
        statuses.append(batch.column("status").fill_null(-1).to_numpy().astype(np.int32))
        for name, encoder in encoders.items():
            encoder.add(batch.column(name), np.int32 if name == "error" else np.int16)
        key_column = batch.column("key")
        has_key = pc.is_valid(key_column)
        if pc.any(has_key).as_py():
            key_rows.append(np.flatnonzero(has_key.to_numpy(zero_copy_only=False)) + offset)
            keys.append(key_column.filter(has_key))
        offset += n

    def cat(chunks: list[np.ndarray], dtype: Any) -> np.ndarray:
        """Concatenate and free the chunks at once, so only one column is ever held twice."""
        out = np.concatenate(chunks).astype(dtype, copy=False) if chunks else np.zeros(0, dtype=dtype)
        chunks.clear()
        return out

    if keys:
        encoded = pc.dictionary_encode(pa.concat_arrays(keys))
        keys.clear()
        key_id = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        key_names = encoded.dictionary
        del encoded
    else:
        key_id, key_names = np.zeros(0, dtype=np.int32), pa.array([], type=pa.string())
    for kept in apart.values():
        kept.sort(key=lambda op: op.get("time_s") or 0.0)
    return History(
        type=cat(types, np.int8),
        time_s=cat(floats["time_s"], np.float64),
        end_s=cat(floats["end_s"], np.float64),
        latency_ms=cat(floats["latency_ms"], np.float64),
        status=cat(statuses, np.int32),
        process=encoders["process"].finish(),
        f=encoders["f"].finish(),
        service=encoders["service"].finish(),
        error=encoders["error"].finish(np.int32),
        region=encoders["region"].finish(),
        key_row=cat(key_rows, np.int64),
        key_id=key_id,
        key_names=key_names,
        nemesis=tuple(apart[NEMESIS]),
        platform=tuple(apart[PLATFORM]),
        source=source,
    )
