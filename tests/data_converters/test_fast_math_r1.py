import json

import pytest

from data_converters import fast_math_r1 as fm
from data_converters.parquet_io import Reject
from data_converters.pipeline import Kept

TRACE = "<think>\nLet me think. 1+1 = 2.\n</think>\n\nThe answer is $\\boxed{2}$."


@pytest.mark.parametrize("raw,added", [
    ("＜think＞\nLet me think. 1+1 = 2.\n＜/think＞\n\nThe answer is $\\boxed{2}$.", False),
    ("<THINK>\nLet me think. 1+1 = 2.\n</THINK>The answer is $\\boxed{2}$.", False),
    ("< think >\nLet me think. 1+1 = 2.\n</ think >   \n\n\n\n\n\nThe answer is $\\boxed{2}$.", False),
    ("<Think>\nLet me think. 1+1 = 2.\n< / Think>\nThe answer is $\\boxed{2}$.", False),
    ("\n\nLet me think. 1+1 = 2.\n</think>The answer is $\\boxed{2}$.", True),
    ("＜think＞\nLet me think. 1+1 = 2.\n＜／think＞ The answer is $\\boxed{2}$.", False),
])
def test_think_tag_variants(raw, added):
    text, note = fm.normalize_think(raw)
    assert text == "<think>\nLet me think. 1+1 = 2.\n</think>\n\n\n\nThe answer is $\\boxed{2}$."
    assert note == ("think_open_tag_added" if added else "")


@pytest.mark.parametrize("raw,reason", [
    ("<think>never closed", "think_unclosed"),
    ("<think>a</think>b<think>c</think>d", "think_tags_repeated"),
    ("</think>x<think>", "think_tags_out_of_order"),
    ("Sure! <think>a</think>b", "text_before_think"),
])
def test_bad_think_structure(raw, reason):
    assert fm.normalize_think(raw) == (None, reason)


def test_no_tags_pass_unchanged():
    assert fm.normalize_think("plain solution") == ("plain solution", "no_think_tags")


@pytest.mark.parametrize("final,expected,answer", [
    ("so \\boxed{\\frac{1}{2}} done", "so \\frac{1}{2} done", "\\frac{1}{2}"),
    ("$\\boxed {x^{2}}$", "$x^{2}$", "x^{2}"),
    ("\\fbox{7} and \\boxed{\\boxed{3}}", "7 and 3", "3"),
    ("\\boxed{\\{1,2\\}}", "\\{1,2\\}", "\\{1,2\\}"),
    ("\\boxedfoo{1} stays", "\\boxedfoo{1} stays", None),
    # a trace cut inside its box keeps the unclosed box exactly as written, never cut or rewritten
    ("answer \\boxed{12", "answer \\boxed{12", None),
    ("answer \\boxed{12 and then the trace was cut", "answer \\boxed{12 and then the trace was cut", None),
    ("first \\boxed{12 then \\boxed{5}.", "first \\boxed{12 then 5.", "5"),
    # several boxes listing one answer: one answer, as the grader reads it
    ("so $\\boxed{1}$, $\\boxed{2}$ and $\\boxed{3}$.", "so $1$, $2$ and $3$.", "1, 2, 3"),
    ("width \\boxed{4}. So the area is \\boxed{12}.", "width 4. So the area is 12.", "12"),
])
def test_unwrap_and_answer(final, expected, answer):
    for unwrap in (True, False):
        out = fm.convert_record({"problem": "p", "generation": f"<think>\nx\n</think>\n\n{final}"},
                                fm.Options(unwrap_boxed=unwrap))
        assert isinstance(out, Kept)
        assert out.row["response"] == "<think>\nx\n</think>\n\n\n\n" + (expected if unwrap else final)
        assert out.row["answer_extracted"] == answer


def test_record_conversion_answers_and_messages():
    opts = fm.Options(unwrap_boxed=True)
    out = fm.convert_record({"problem": "1+1?", "generation": TRACE, "answer": 2}, opts)
    assert isinstance(out, Kept)
    row = out.row
    assert row["answer"] == "2" and row["answer_source"] == "2" and row["answer_extracted"] == "2"
    assert row["response"] == "<think>\nLet me think. 1+1 = 2.\n</think>\n\n\n\nThe answer is $2$."
    assert row["messages"] == [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": row["response"]}]
    # the trace's boxed value wins over a differently formatted source answer, both kept
    half = fm.convert_record({"problem": "p", "solution": "<think>x</think>$\\boxed{\\frac{1}{2}}$", "answer": "1/2"},
                             fm.Options())
    assert (half.row["answer"], half.row["answer_source"]) == ("\\frac{1}{2}", "1/2")
    assert "\\boxed" in half.row["response"]  # not unwrapped without the option
    none = fm.convert_record({"problem": "p", "solution": "<think>x</think>no box", "answer": "7"}, fm.Options())
    assert none.row["answer"] == "7" and none.row["answer_extracted"] is None and "answer_from_source" in none.notes


def test_messages_split_mode():
    out = fm.convert_record({"problem": "q", "generation": TRACE}, fm.Options(messages_reasoning="split"))
    assistant = out.row["messages"][1]
    assert assistant == {"role": "assistant", "content": "The answer is $\\boxed{2}$.",
                         "reasoning_content": "Let me think. 1+1 = 2."}


@pytest.mark.parametrize("record,reason", [
    ("a string", "not_an_object"),
    ({"generation": TRACE}, "missing_field:problem"),
    ({"problem": "p"}, "missing_field:generation"),
    ({"problem": "   ", "generation": TRACE}, "empty_text:problem"),
    ({"problem": "p", "generation": ["x"]}, "wrong_type:generation"),
    ({"problem": "p", "generation": TRACE, "answer": ["2"]}, "wrong_type:answer"),
    ({"problem": "p", "generation": "<think>x</think>  \n "}, "empty_text:after_think"),
])
def test_reject_reasons(record, reason):
    out = fm.convert_record(record, fm.Options())
    assert isinstance(out, Reject) and out.reason == reason


def test_split_is_stable_when_rows_are_appended():
    problems = [f"Problem number {i}: compute {i}*{i}." for i in range(400)]
    first = {p: fm.split_of(p, 0.1, seed=0) for p in problems}
    more = problems + [f"New problem {i}" for i in range(400)]
    again = {p: fm.split_of(p, 0.1, seed=0) for p in more}
    assert all(again[p] == s for p, s in first.items())
    share = sum(s == "validation" for s in again.values()) / len(again)
    assert 0.05 < share < 0.15
    # whitespace/width-only differences keep the split; another seed reshuffles
    assert fm.split_of("  Problem number 3:\ncompute 3*3. ", 0.1, 0) == first[problems[3]]
    assert fm.split_of("Ｐroblem number 3: compute 3*3.", 0.1, 0) == first[problems[3]]
    assert {fm.split_of(p, 0.1, 1) for p in problems} == {"train", "validation"}
    assert [fm.split_of(p, 0.1, 1) for p in problems] != list(first.values())


def _rows(n, start=0):
    return [{"problem": f"What is {i} + {i}?", "generation": f"<think>{i}+{i}</think>So \\boxed{{{2 * i}}}.",
             "answer": str(2 * i)} for i in range(start, start + n)]


def test_cli_end_to_end_append_keeps_split(tmp_path, write_jsonl, read_rows):
    src = write_jsonl(tmp_path / "a.jsonl", _rows(60))
    args = ["--out", str(tmp_path / "o1"), "--split-validation", "--val-ratio", "0.3", "--seed", "0",
            "--no-progress", "--max-tokens", "0"]
    assert fm.main([str(src), *args]) == 0
    first = {r["prompt"]: "train" for r in read_rows(tmp_path / "o1" / "train.parquet")}
    first.update({r["prompt"]: "validation" for r in read_rows(tmp_path / "o1" / "validation.parquet")})
    assert len(first) == 60
    write_jsonl(src, _rows(90))  # 30 rows appended
    args[1] = str(tmp_path / "o2")
    assert fm.main([str(src), *args]) == 0
    second = {r["prompt"]: "train" for r in read_rows(tmp_path / "o2" / "train.parquet")}
    second.update({r["prompt"]: "validation" for r in read_rows(tmp_path / "o2" / "validation.parquet")})
    assert len(second) == 90 and all(second[p] == s for p, s in first.items())


def test_cli_token_filter_and_every_reject_is_located(tmp_path, write_parquet, read_rows, read_jsonl):
    long_trace = "<think>" + " ".join(f"w{i}" for i in range(3000)) + "</think>So \\boxed{1}."
    rows = _rows(3) + [{"problem": "long", "generation": long_trace, "answer": "1"}, {"problem": "", "generation": "x"}]
    src = write_parquet(tmp_path / "in.parquet", rows)
    assert fm.main([str(src), "--out", str(tmp_path / "o"), "--max-tokens", "500", "--no-progress"]) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["rows_in"] == 5 and summary["kept"] == 3
    assert summary["dropped"] == {"too_many_tokens": 1, "empty_text:problem": 1}
    rejects = {r["reason"]: r for r in read_jsonl(tmp_path / "o" / "rejects.jsonl")}
    assert rejects["too_many_tokens"]["row"] == 3 and rejects["empty_text:problem"]["row"] == 4
    assert rejects["too_many_tokens"]["file"].endswith("in.parquet")
    assert set(read_rows(tmp_path / "o" / "train.parquet")[0]) == {
        "prompt", "response", "messages", "answer", "answer_extracted", "answer_source", "data_source"}


def test_cli_bad_val_ratio_is_one_line_error(tmp_path, capsys, write_jsonl):
    src = write_jsonl(tmp_path / "a.jsonl", _rows(1))
    assert fm.main([str(src), "--out", str(tmp_path / "o"), "--split-validation", "--val-ratio", "1.5"]) == 2
    assert "--val-ratio" in capsys.readouterr().err
