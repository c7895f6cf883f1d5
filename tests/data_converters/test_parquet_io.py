import builtins
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_converters.parquet_io import ConversionError, Reject, RejectSink, Summary, iter_chunks
from data_converters.pipeline import Kept, convert_files, expand_inputs


def _collect(path, batch_size=2, rejects=None):
    sink = rejects or RejectSink(None)
    out = []
    for chunk in iter_chunks(path, batch_size, sink):
        assert len(chunk.positions) == len(chunk.records)
        out += [(chunk.unit, p, r) for p, r in zip(chunk.positions, chunk.records)]
    return out, sink


def test_jsonl_locations_and_bad_lines(tmp_path, write_jsonl):
    path = write_jsonl(tmp_path / "a.jsonl", [{"x": 1}], raw_lines=["", "{bad", b"\xff\xfe{}", '{"x": 2}', "[1]"])
    records, sink = _collect(path)
    # line 1 ok, 2 blank (skipped), 3 malformed, 4 invalid utf-8, 5 ok, 6 a list (still a record)
    assert [(u, p) for u, p, _ in records] == [("line", 1), ("line", 5), ("line", 6)]
    assert dict(sink.counts) == {"malformed_json": 1, "invalid_utf8": 1}


@pytest.mark.parametrize("ijson_available", [True, False])
def test_json_list_streams_or_loads(tmp_path, monkeypatch, ijson_available):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"x": i, "f": 0.5} for i in range(5)]))
    if not ijson_available:
        real_import = builtins.__import__

        def no_ijson(name, *a, **k):
            if name == "ijson":
                raise ImportError(name)
            return real_import(name, *a, **k)

        monkeypatch.setattr(builtins, "__import__", no_ijson)
    records, _ = _collect(path, batch_size=2)
    assert [(u, p) for u, p, _ in records] == [("row", i) for i in range(5)]
    assert records[3][2] == {"x": 3, "f": 0.5} and isinstance(records[3][2]["f"], float)


def test_broken_json_list_names_file(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"x": 1}, {"x": ')
    with pytest.raises(ConversionError, match="a.json"):
        _collect(path)


def test_parquet_rows_numbered_across_batches(tmp_path, write_parquet):
    path = write_parquet(tmp_path / "a.parquet", [{"x": i} for i in range(7)], row_group_size=3)
    records, _ = _collect(path, batch_size=2)
    assert [(p, r["x"]) for _, p, r in records] == [(i, i) for i in range(7)]


def test_reject_sink_commit_and_abort(tmp_path, read_jsonl):
    sink = RejectSink(tmp_path / "r.jsonl")
    sink.add("f.jsonl", "line", 3, Reject("bad", "why"), {"a": "x" * 2000})
    assert not (tmp_path / "r.jsonl").exists()
    sink.commit()
    [entry] = read_jsonl(tmp_path / "r.jsonl")
    assert entry["file"] == "f.jsonl" and entry["line"] == 3 and entry["reason"] == "bad"
    assert len(entry["preview"]) == 500
    sink2 = RejectSink(tmp_path / "r2.jsonl")
    sink2.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]


def test_convert_files_accounts_for_every_row_and_cleans_up_on_error(tmp_path, write_jsonl, read_jsonl):
    path = write_jsonl(tmp_path / "in.jsonl", [{"v": i} for i in range(6)], raw_lines=["oops"])
    schema = pa.schema([("v", pa.int64())])

    def transform(chunk):
        return [Kept({"v": r["v"]}, "validation" if r["v"] % 3 == 0 else "train") if r["v"] % 2 else Reject("even")
                for r in chunk.records]

    out = tmp_path / "out"
    out.mkdir()
    (out / "test.parquet").write_text("stale")
    s = convert_files("t", [path], transform, out, schema, ("train", "validation", "test"), batch_size=4)
    d = json.loads((out / "summary.json").read_text())
    assert d["rows_in"] == 7 == d["kept"] + sum(d["dropped"].values()) + sum(d["filtered"].values())
    assert d["dropped"] == {"even": 3, "malformed_json": 1}
    assert d["kept_by_output"] == {"train": 2, "validation": 1}
    assert not (out / "test.parquet").exists()  # stale output of an earlier run removed
    assert [r["v"] for r in pq.read_table(out / "train.parquet").to_pylist()] == [1, 5]
    assert len(read_jsonl(out / "rejects.jsonl")) == 4 and s.kept_total == 3

    def boom(chunk):
        raise ValueError("boom")

    out2 = tmp_path / "out2"
    with pytest.raises(ValueError):
        convert_files("t", [path], boom, out2, schema)
    assert list(out2.iterdir()) == []


def test_summary_render_and_save(tmp_path):
    s = Summary("x", rows_in=3)
    s.kept["train"] = 2
    s.dropped["bad"] = 1
    s.save(tmp_path / "s.json")
    assert json.loads((tmp_path / "s.json").read_text())["dropped"] == {"bad": 1}
    assert "dropped  bad: 1" in s.render()


def test_expand_inputs_folders_globs_and_missing(tmp_path, write_jsonl, write_parquet):
    for name in ("data/cot-00001-of-00002.parquet", "data/cot-00000-of-00002.parquet", "data/tir-00000-of-00001.parquet"):
        write_parquet(tmp_path / name, [{"x": 1}])
    write_jsonl(tmp_path / "data" / "notes.jsonl", [{"x": 1}])
    (tmp_path / "data" / "README.md").write_text("not data")
    got = expand_inputs([tmp_path / "data" / "cot-*-of-00002.parquet"])
    assert [p.name for p in got] == ["cot-00000-of-00002.parquet", "cot-00001-of-00002.parquet"]
    assert [p.name for p in expand_inputs([tmp_path / "data"])] == [
        "cot-00000-of-00002.parquet", "cot-00001-of-00002.parquet", "notes.jsonl", "tir-00000-of-00001.parquet"]
    with pytest.raises(ConversionError, match="matches no file"):
        expand_inputs([tmp_path / "data" / "gen-*.parquet"])
    with pytest.raises(ConversionError, match="no such file"):
        expand_inputs([tmp_path / "missing.jsonl"])
