"""The history file: writer, streaming reader, crash tolerance, concurrent appenders."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest

from drdrill.errors import HistoryError
from drdrill.history import OK, History, HistoryWriter, load_history, read_ops
from tests.histories import T0, fault, reads, write


def test_file_and_memory_histories_are_identical(tmp_path):
    ops = reads("payments", T0, T0 + 2, 10) + write("payments", "k-1", T0 + 1) + fault(T0 + 1.5)
    ops.append({"process": "client-9", "type": "info", "f": "auth.login", "service": "auth",
                "time_s": T0 + 1.7, "error": "timeout", "region": "dr", "unknown_field": [1]})
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        for op in ops:
            writer.append(op)
    from_file = load_history(path)
    from_memory = History.from_ops(ops)
    assert from_file.n == from_memory.n == len(ops) - 2
    for column in ("type", "time_s", "status"):
        assert np.array_equal(getattr(from_file, column), getattr(from_memory, column))
    assert from_file.key_strings(from_file.key_id) == ["k-1", "k-1"]
    assert from_file.key_ids_of(["k-1", "nope"]).tolist() == [0, -1]
    assert [op["f"] for op in from_file.nemesis] == ["start:kill-primary", "stop:kill-primary"]
    last = from_file.op(from_file.n - 1)
    assert last == {"process": "client-9", "type": "info", "f": "auth.login", "service": "auth",
                    "time_s": T0 + 1.7, "error": "timeout", "region": "dr"}


def test_truncated_last_line_is_ignored(tmp_path):
    path = tmp_path / "history.jsonl"
    with HistoryWriter(path) as writer:
        for op in write("payments", "k-1", T0):
            writer.append(op)
    with path.open("ab") as handle:
        handle.write(b'{"process": "client-1", "type": "ok", "ti')  # the writer died here
    history = load_history(path)
    assert history.n == 2
    assert int(history.type[1]) == OK
    assert len(list(read_ops(path))) == 2


def test_malformed_line_is_named(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"process": "client-1", "type": "ok", "time_s": 1.0}\nnot json\n')
    with pytest.raises(HistoryError, match=r"history.jsonl:2: not a JSON object"):
        load_history(path)


def test_unknown_op_type_is_named(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"process": "client-1", "type": "done", "time_s": 1.0}\n')
    with pytest.raises(HistoryError, match="unknown op type 'done'"):
        load_history(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(HistoryError, match="no history file at"):
        load_history(tmp_path / "nope.jsonl")


def test_invoke_with_flush_is_on_disk_at_once(tmp_path):
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path, flush_interval_s=3600)
    writer.append({"process": "client-1", "type": "ok", "time_s": T0})
    assert path.read_bytes() == b""
    writer.append({"process": "client-1", "type": "invoke", "key": "k", "time_s": T0}, flush=True)
    assert path.read_bytes().count(b"\n") == 2
    writer.close()


def _append_many(path: str, process: str, count: int) -> None:
    writer = HistoryWriter(path, flush_interval_s=0.0)
    for i in range(count):
        writer.append({"process": process, "type": "ok", "f": "x.read", "service": "x",
                       "time_s": T0 + i, "error": "e" * (i % 300)})
    writer.close()


def test_concurrent_appenders_never_tear_lines(tmp_path):
    path = str(tmp_path / "history.jsonl")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_many, args=(path, f"client-{i}", 2000)) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sum(1 for _ in read_ops(path)) == 8000
    assert load_history(path).n == 8000
    assert os.path.getsize(path) > 0
