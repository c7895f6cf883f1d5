import json
import os
import stat

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from verl_ext.io import (
    ParquetChunkWriter, ReadError, atomic_folder, atomic_path, atomic_write, input_kind, iter_chunks,
)


def _records(path, **kw):
    return [(c.unit, p, r) for c in iter_chunks(path, batch_size=2, **kw) for p, r in zip(c.positions, c.records)]


def test_json_extension_holding_jsonl(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "a.json", [{"x": 1}, {"x": 2}])
    assert input_kind(path) == "jsonl"
    assert [r for _, _, r in _records(path)] == [{"x": 1}, {"x": 2}]


def test_bad_line_raises_by_default_and_goes_to_the_hook_otherwise(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "a.jsonl", [{"x": 1}], raw_lines=["", "{bad", b"\xff", '{"x": 2}'])
    with pytest.raises(ReadError, match=r"a.jsonl, line 3: not valid JSON \(Expecting property name"):
        _records(path)
    seen = []
    got = _records(path, on_bad_line=lambda f, n, e, text: seen.append((n, e.reason, text)))
    assert [(u, p) for u, p, _ in got] == [("line", 1), ("line", 5)]
    assert [(n, reason) for n, reason, _ in seen] == [(3, "malformed_json"), (4, "invalid_utf8")]


def test_json_list_and_data_object_stream_with_row_indexes(tmp_path):
    (tmp_path / "l.json").write_text(json.dumps([{"x": 0}, {"x": 1}, {"x": 2}]))
    (tmp_path / "d.json").write_text(json.dumps({"data": [{"x": 0}, {"x": 1}, {"x": 2}]}, indent=2))
    for name in ("l.json", "d.json"):
        assert input_kind(tmp_path / name) == "json"
        assert _records(tmp_path / name) == [("row", i, {"x": i}) for i in range(3)]


def test_columns_keep_only_those_present(tmp_path, write_jsonl):
    pq.write_table(pa.Table.from_pylist([{"a": 1, "b": 2}]), tmp_path / "p.parquet")
    write_jsonl(tmp_path / "j.jsonl", [{"a": 1, "b": 2}])
    for name in ("p.parquet", "j.jsonl"):
        assert [r for _, _, r in _records(tmp_path / name, columns=["a", "missing"])] == [{"a": 1}]


def test_unreadable_parquet_names_the_file(tmp_path):
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(ReadError, match="x.parquet: cannot read as Parquet"):
        _records(tmp_path / "x.parquet")


def test_writer_is_atomic_and_independent_of_batching(tmp_path):
    schema = pa.schema([("x", pa.int64()), ("s", pa.string())])
    rows = [{"x": i} for i in range(10)]  # "s" missing → null
    outputs = []
    for sizes in ([10], [1] * 10, [3, 3, 4]):
        target = tmp_path / f"out{len(sizes)}.parquet"
        w = ParquetChunkWriter(target, schema, rows_per_group=4)
        start = 0
        for n in sizes:
            w.write_rows(rows[start:start + n])
            start += n
        assert not target.exists()  # nothing under the final name before commit
        assert w.commit() == 10
        outputs.append(target.read_bytes())
        assert pq.ParquetFile(target).metadata.num_row_groups == 3
    assert outputs[0] == outputs[1] == outputs[2]
    assert pq.read_table(tmp_path / "out1.parquet").column("s").null_count == 10


def test_writer_abort_leaves_nothing(tmp_path):
    w = ParquetChunkWriter(tmp_path / "o.parquet", pa.schema([("x", pa.int64())]))
    w.write_rows([{"x": 1}])
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "f.json"
    atomic_write(target, "one")
    atomic_write(target, b"two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "t.parquet"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_atomic_folder_builds_once(tmp_path):
    calls = []

    def build(d):
        calls.append(d)
        (d / "config.json").write_text("{}")

    target = tmp_path / "model"
    assert atomic_folder(target, build) == target and atomic_folder(target, build) == target
    assert len(calls) == 1 and [p.name for p in tmp_path.iterdir()] == ["model"]
