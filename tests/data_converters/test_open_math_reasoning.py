import json

import pyarrow as pa
import pytest

from data_converters import open_math_reasoning as omr
from data_converters.chunk_manifest import Manifest
from data_converters.openmath_rows import OUTPUT_SCHEMA, conform, parse_pass_rate, plan_files
from data_converters.parquet_io import ConversionError


def _row(i, rate="0.03125", ptype="has_answer_extracted", **kw):
    row = {"expected_answer": str(i), "problem_type": ptype, "problem_source": "aops_c6", "generation_model": "R1",
           "pass_rate_72b_tir": rate, "problem": f"Problem {i}: find x.", "inference_mode": "cot",
           "generated_solution": f"<think>\nwork {i}\n</think>\n\nSo x = \\boxed{{{i}}}.", "used_in_kaggle": i % 2 == 0}
    row.update(kw)
    return row


@pytest.mark.parametrize("value,rate,kind", [
    ("0.03125", 0.03125, None), ("0.1", 0.1, None), (" 0.5 ", 0.5, None), ("1e-3", 0.001, None), ("0", 0.0, None),
    ("1", 1.0, None), ("n/a", None, "n/a"), ("N/A", None, "n/a"), ("", None, "empty"), ("  ", None, "empty"),
    (None, None, "null"), ("abc", None, "non_numeric"), ("0.1.2", None, "non_numeric"), ("nan", None, "nan"),
    ("1.5", None, "out_of_range"), ("-0.1", None, "out_of_range"),
])
def test_parse_pass_rate_strings(value, rate, kind):
    r, k = parse_pass_rate(pa.array([value], pa.string()))
    assert r[0].as_py() == rate and k[0].as_py() == kind


def test_float_column_and_json_values_parse_the_same(tmp_path, write_jsonl, write_parquet, read_rows):
    floats = write_parquet(tmp_path / "f.parquet", [_row(i, rate=v) for i, v in enumerate([0.1, None, float("nan"), 0.5])])
    table = conform(pa.parquet.read_table(floats), "f")
    r, k = parse_pass_rate(table.column("pass_rate_72b_tir").combine_chunks())
    assert r.to_pylist() == [0.1, None, None, 0.5] and k.to_pylist() == [None, "null", "nan", None]
    js = write_jsonl(tmp_path / "j.jsonl", [_row(i, rate=v) for i, v in enumerate([0.1, "0.1", "", None, "abc", True, [1], 2])])
    spans = plan_files([js])
    out = tmp_path / "out"
    s = omr.run(spans, out, omr.Options(threshold=0.1))
    assert s.kept_total == 2
    assert dict(s.dropped) == {"pass_rate:empty": 1, "pass_rate:null": 1, "pass_rate:non_numeric": 3,
                               "pass_rate:out_of_range": 1}
    kept = read_rows(out / "rows-0000000000-0000000008.parquet")
    assert [r["pass_rate"] for r in kept] == [0.1, 0.1] and [r["pass_rate_72b_tir"] for r in kept] == ["0.1", "0.1"]


def test_label_filter_keeps_hard_answered_rows_and_accounts_for_all(tmp_path, write_parquet, read_rows, read_jsonl):
    rows = [_row(0, "0.0"), _row(1, "0.1"), _row(2, "0.10001"), _row(3, "n/a", "no_answer_extracted"),
            _row(4, "0.05", "converted_proof"), _row(5, "n/a"), _row(6, "0.05", None), _row(7, "0.05", problem=""),
            _row(8, "0.05", generated_solution=None)]
    src = write_parquet(tmp_path / "cot-00000-of-00001.parquet", rows)
    out = tmp_path / "out"
    assert omr.main([str(src), "--out", str(out), "--filter-by-pass-rate", "0.1", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == 9 == summary["kept"] + sum(summary["dropped"].values()) + sum(summary["filtered"].values())
    assert summary["filtered"] == {"pass_rate_above_threshold": 1, "problem_type:converted_proof": 1,
                                   "problem_type:no_answer_extracted": 1}
    assert summary["dropped"] == {"empty_text:problem": 1, "missing_field:generated_solution": 1,
                                  "missing_field:problem_type": 1, "pass_rate:n/a": 1}
    kept = read_rows(out / "rows-0000000000-0000000009.parquet")
    assert [r["expected_answer"] for r in kept] == ["0", "1"]
    assert kept[0]["prompt"] == rows[0]["problem"] and kept[0]["response"] == rows[0]["generated_solution"]
    assert kept[0]["messages"] == [{"role": "user", "content": rows[0]["problem"]},
                                   {"role": "assistant", "content": rows[0]["generated_solution"]}]
    assert kept[0]["answer"] == "0" and kept[0]["data_source"] == "openmath"
    listed = read_jsonl(out / "rejects" / "rows-0000000000-0000000009.jsonl")
    rejects = {r["row"]: r["reason"] for r in listed}
    # rows dropped for their problem type (no extracted answer, pass rate n/a) are listed too, though
    # the summary counts them as filtered; the pass-rate cut itself (row 2) is only counted
    assert rejects == {3: "problem_type:no_answer_extracted", 4: "problem_type:converted_proof", 5: "pass_rate:n/a",
                       6: "missing_field:problem_type", 7: "empty_text:problem", 8: "missing_field:generated_solution"}
    by_row = {r["row"]: r for r in listed}
    assert "filtered" in by_row[3]["detail"] and by_row[5]["detail"] == ""
    assert '"problem": "Problem 3: find x."' in by_row[3]["preview"] and "generated_solution" not in by_row[3]["preview"]


def _shards(tmp_path, write_parquet, n_files=3, rows_per_file=25):
    paths = []
    for f in range(n_files):
        rows = [_row(f * 100 + i, rate=["0.0", "0.5", "n/a", "0.03125"][i % 4]) for i in range(rows_per_file)]
        paths.append(write_parquet(tmp_path / "in" / f"cot-{f:05d}-of-{n_files:05d}.parquet", rows, row_group_size=7))
    return paths


def _outputs(out):
    return {p.name: p.read_bytes() for p in sorted(out.glob("rows-*.parquet"))} | {
        f"rejects/{p.name}": p.read_bytes() for p in sorted((out / "rejects").glob("*.jsonl"))}


def test_chunks_last_partial_saved_and_independent_of_batch_size(tmp_path, read_rows, write_parquet):
    spans = plan_files(_shards(tmp_path, write_parquet))
    a = omr.run(spans, tmp_path / "a", omr.Options(threshold=0.1, save_per_iteration=20, batch_size=4))
    b = omr.run(spans, tmp_path / "b", omr.Options(threshold=0.1, save_per_iteration=20, batch_size=1000))
    assert sorted(_outputs(tmp_path / "a")) == sorted(_outputs(tmp_path / "b"))
    assert _outputs(tmp_path / "a") == _outputs(tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").glob("rows-*.parquet"))
    assert names[-1] == "rows-0000000060-0000000075.parquet"  # last partial chunk is saved
    total_kept = sum(len(read_rows(tmp_path / "a" / n)) for n in names)
    expected = 3 * sum(i % 4 in (0, 3) for i in range(25))  # rows with rate 0.0 or 0.03125
    assert total_kept == a.kept_total == b.kept_total == expected


def test_resume_after_crash_gives_identical_outputs(tmp_path, monkeypatch, write_parquet):
    spans = plan_files(_shards(tmp_path, write_parquet))
    opts = omr.Options(threshold=0.1, save_per_iteration=10, batch_size=3)
    omr.run(spans, tmp_path / "clean", opts)

    real = omr.output_table
    calls = {"n": 0}

    def crash_later(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 12:  # in the middle of the 4th chunk
            raise KeyboardInterrupt
        return real(*args, **kw)

    crashed = tmp_path / "crashed"
    monkeypatch.setattr(omr, "output_table", crash_later)
    with pytest.raises(KeyboardInterrupt):
        omr.run(spans, crashed, opts)
    done_before = set(json.loads((crashed / "manifest.json").read_text())["chunks"])
    assert 0 < len(done_before) < 8
    assert not list(crashed.glob(".*.tmp"))  # the interrupted chunk left no temp file
    (crashed / ".rows-0000000070-0000000075.parquet.abc.tmp").write_text("left by a SIGKILL")
    monkeypatch.setattr(omr, "output_table", real)
    s = omr.run(spans, crashed, opts)
    assert s.extra["chunks_resumed"] == len(done_before)
    assert _outputs(crashed) == _outputs(tmp_path / "clean")
    assert not list(crashed.glob(".*.tmp"))
    assert json.loads((crashed / "summary.json").read_text())["kept"] == s.kept_total


def test_manifest_refuses_other_settings_unless_restart(tmp_path, write_parquet):
    spans = plan_files(_shards(tmp_path, write_parquet, 1, 8))
    omr.run(spans, tmp_path / "o", omr.Options(threshold=0.1))
    with pytest.raises(ConversionError, match="threshold"):
        omr.run(spans, tmp_path / "o", omr.Options(threshold=0.2))
    s = omr.run(spans, tmp_path / "o", omr.Options(threshold=0.2), restart=True)
    assert s.extra["chunks_resumed"] == 0
    assert Manifest(tmp_path / "o" / "manifest.json", json.loads(
        (tmp_path / "o" / "manifest.json").read_text())["fingerprint"]).done("rows-0000000000-0000000008")


def test_percentage_windows_tile_the_rows(tmp_path, read_rows, write_parquet):
    spans = plan_files(_shards(tmp_path, write_parquet))
    full = omr.run(spans, tmp_path / "full", omr.Options(threshold=0.1, save_per_iteration=20))
    parts = [omr.run(spans, tmp_path / "parts", omr.Options(threshold=0.1, save_per_iteration=20, start_pct=a, end_pct=b))
             for a, b in ((0, 33.3), (33.3, 70), (70, 100))]
    assert sum(p.rows_in for p in parts) == full.rows_in == 75
    key = lambda d: sorted((r["prompt"] for f in sorted(d.glob("rows-*.parquet")) for r in read_rows(f)))
    assert key(tmp_path / "parts") == key(tmp_path / "full")
    assert len(list((tmp_path / "parts").glob("manifest-rows-*.json"))) == 3
    with pytest.raises(ConversionError, match="start"):
        omr.run(spans, tmp_path / "x", omr.Options(start_pct=50, end_pct=50))


def test_jsonl_shards_with_bad_lines(tmp_path, write_jsonl, read_jsonl):
    src = write_jsonl(tmp_path / "a.jsonl", [_row(i) for i in range(4)],
                      raw_lines=["{nope", json.dumps(_row(9, problem=["x"])), json.dumps(_row(10))])
    out = tmp_path / "o"
    assert omr.main([str(src), "--out", str(out), "--save-per-iteration", "3", "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == 7 and summary["kept"] == 5
    rejects = [r for f in sorted((out / "rejects").glob("*.jsonl")) for r in read_jsonl(f)]
    assert {(r["line"], r["reason"]) for r in rejects} == {(5, "malformed_json"), (6, "wrong_type:problem")}


# ---- LLM stages through a fake Backend -------------------------------------------------------

class FakeBackend:
    """Implements verl_ext_eval.backends.base.Backend: 'easy' problems always solved, 'medium' on the
    first try only, 'hard' never; generation replies follow the requested format."""

    name = "fake"

    def __init__(self):
        self.calls = []
        self.closed = False

    async def chat(self, messages, params):
        from verl_ext_eval.backends.base import Generation

        prompt = messages[-1]["content"]
        self.calls.append((prompt, params.seed))
        if "New problem:" in prompt:
            if "garbage" in prompt:
                text = "I refuse."
            else:
                text = "<think>hmm</think>New problem:\nWhat is 2+1?\n\nSolution:\n2+1 = \\boxed{3}."
        else:
            gold = prompt.rsplit("answer ", 1)[-1].split(".")[0]
            solved = "easy" in prompt or ("medium" in prompt and params.seed == 0)
            text = f"The answer is \\boxed{{{gold if solved else int(gold) + 1}}}."
        return Generation(text=text, num_tokens=len(text.split()), finish_reason="stop")

    async def complete(self, prompt, params):
        raise NotImplementedError

    async def close(self):
        self.closed = True


def _llm_rows():
    return [_row(i, problem=f"{kind} problem with answer {i}.") for i, kind in enumerate(["easy", "medium", "hard"])]


def test_llm_filter_keeps_problems_rarely_solved(tmp_path, write_jsonl, read_rows):
    from data_converters.openmath_llm import LLMOptions, LLMStage
    from verl_ext_eval.backends.base import Backend, SamplingParams
    from verl_ext_eval.math.grading import MathGrader

    backend = FakeBackend()
    assert isinstance(backend, Backend)
    stage = LLMStage(backend, LLMOptions(SamplingParams(seed=0), k=4, max_solve_rate=0.25), False, True, MathGrader(workers=1))
    spans = plan_files([write_jsonl(tmp_path / "s.jsonl", _llm_rows() + [_row(3, expected_answer=None)])])
    try:
        s = omr.run(spans, tmp_path / "o", omr.Options(), stage)
    finally:
        stage.close()
    assert backend.closed and len(backend.calls) == 12
    assert sorted(seed for _, seed in backend.calls) == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    kept = read_rows(tmp_path / "o" / "rows-0000000000-0000000004.parquet")
    assert [(r["prompt"].split()[0], r["llm_solve_rate"]) for r in kept] == [("medium", 0.25), ("hard", 0.0)]
    assert dict(s.filtered) == {"llm_solved_too_often": 1} and dict(s.dropped) == {"missing_field:answer": 1}


def test_generate_from_seeds(tmp_path, write_jsonl, read_rows, read_jsonl):
    from data_converters.openmath_llm import LLMOptions, LLMStage

    backend = FakeBackend()
    stage = LLMStage(backend, LLMOptions(model_name="fake-model"), True, False)
    rows = [_row(0, problem="seed about sums"), _row(1, problem="garbage seed")]
    try:
        s = omr.run(plan_files([write_jsonl(tmp_path / "s.jsonl", rows)]), tmp_path / "o", omr.Options(), stage)
    finally:
        stage.close()
    [new] = read_rows(tmp_path / "o" / "rows-0000000000-0000000002.parquet")
    assert new["prompt"] == "What is 2+1?" and new["response"] == "2+1 = \\boxed{3}."
    assert new["answer"] == "3" and new["seed_problem"] == "seed about sums" and new["generation_model"] == "fake-model"
    assert new["pass_rate_72b_tir"] is None and new["messages"][0] == {"role": "user", "content": "What is 2+1?"}
    assert dict(s.dropped) == {"generation_unparseable": 1}
    assert [r["line"] for r in read_jsonl(tmp_path / "o" / "rejects" / "rows-0000000000-0000000002.jsonl")] == [2]


def test_cli_llm_filter_uses_make_backend(tmp_path, monkeypatch, write_jsonl, read_rows):
    import verl_ext_eval.backends

    made = {}

    def fake_make_backend(name, **cfg):
        made.update(name=name, cfg=cfg)
        return FakeBackend()

    monkeypatch.setattr(verl_ext_eval.backends, "make_backend", fake_make_backend, raising=False)
    src = write_jsonl(tmp_path / "s.jsonl", _llm_rows())
    out = tmp_path / "o"
    argv = [str(src), "--out", str(out), "--llm-filter", "--backend", "hf", "--backend-opt", "path=/m",
            "--backend-opt", "max_batch=8", "--k", "2", "--max-solve-rate", "0.5", "--llm-seed", "0", "--no-progress"]
    assert omr.main(argv) == 0
    assert made == {"name": "hf", "cfg": {"path": "/m", "max_batch": 8}}
    kept = read_rows(out / "rows-0000000000-0000000003.parquet")
    assert [r["llm_solve_rate"] for r in kept] == [0.5, 0.0]
    assert omr.main([*argv[:-1], "--backend-opt", "path=/m", "--no-progress"]) == 2  # given twice


def test_cli_unknown_backend_setting_is_one_line_error(tmp_path, write_jsonl, capsys):
    src = write_jsonl(tmp_path / "s.jsonl", _llm_rows())
    code = omr.main([str(src), "--out", str(tmp_path / "o"), "--llm-filter", "--backend", "hf",
                     "--backend-opt", "no_such_setting=1", "--no-progress"])
    assert code == 2 and "no_such_setting" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_llm_filter_with_real_hf_backend(tmp_path, write_jsonl, read_rows, tiny_model_dir):
    """The real verl_ext_eval.backends 'hf' backend on the tiny random Qwen3: it never answers correctly,
    so every graded problem is kept with solve rate 0."""
    src = write_jsonl(tmp_path / "s.jsonl", _llm_rows()[:2])
    out = tmp_path / "o"
    code = omr.main([str(src), "--out", str(out), "--llm-filter", "--backend", "hf", "--backend-opt",
                     f"path={tiny_model_dir}", "--k", "2", "--max-new-tokens", "4", "--temperature", "0",
                     "--no-progress"])
    assert code == 0
    assert [r["llm_solve_rate"] for r in read_rows(out / "rows-0000000000-0000000002.parquet")] == [0.0, 0.0]


def test_output_schema_is_stable():
    names = OUTPUT_SCHEMA.names
    for col in ("prompt", "response", "messages", "answer", "data_source", "pass_rate", "expected_answer"):
        assert col in names
    assert "problem" not in names and "generated_solution" not in names  # renamed, not copied
