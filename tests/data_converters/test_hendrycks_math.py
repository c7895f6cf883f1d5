import json

import pytest

from data_converters import hendrycks_math as hm
from data_converters.parquet_io import Reject


def _write(root, split, subject, n, record):
    path = root / split / subject / f"{n}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(record if isinstance(record, str) else json.dumps(record, indent=4))
    return path


@pytest.mark.parametrize("value,level,note", [
    ("Level 1", 1, ""), ("Level 5", 5, ""), ("level 3", 3, ""), ("4", 4, ""), (2, 2, ""),
    ("Level ?", None, "level_unknown"), (None, None, "level_missing"), ("hard", None, "level_unparsed"),
    (True, None, "level_unparsed"),
])
def test_parse_level(value, level, note):
    assert hm.parse_level(value) == (level, note)


@pytest.mark.parametrize("solution,answer", [
    ("So $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}"),
    ("First \\boxed{1}, finally \\boxed{\\{2, 3\\}}.", "\\{2, 3\\}"),
    ("Thus \\fbox{7}.", "7"),
    ("Hence $\\boxed 5$.", "5"),
    ("Nested \\boxed{\\sqrt{\\frac{a}{b}}} end", "\\sqrt{\\frac{a}{b}}"),
    # the grader's box logic: boxes listing one answer are one answer; unclosed boxes are no answer
    ("The roots are $\\boxed{1}$ and $\\boxed{-2}$.", "1, -2"),
    ("Cut off at \\boxed{12", None),
    ("Cut off at \\boxed{12 after \\boxed{5}", "5"),
])
def test_answer_is_last_balanced_box(solution, answer):
    out = hm.convert_record({"problem": "p", "solution": solution, "level": "Level 2", "type": "Algebra"},
                            "train", None, "x.json")
    assert out.row["answer"] == answer
    assert out.row["response"] == out.row["solution"] == solution  # never cut or rewritten


def test_folder_layout_end_to_end(tmp_path, read_rows, read_jsonl):
    root = tmp_path / "MATH"
    _write(root, "train", "intermediate_algebra", 10,
           {"problem": "Find $x$.", "level": "Level 5", "type": "Intermediate Algebra", "solution": "$x=\\boxed{3}$"})
    _write(root, "train", "intermediate_algebra", 2,
           {"problem": "Find $y$.", "level": "Level ?", "type": "Intermediate Algebra", "solution": "$\\boxed{4}$"})
    _write(root, "test", "counting_and_probability", 1,
           {"problem": "Count.", "level": "Level 1", "solution": "There are \\fbox{6}."})  # no "type"
    _write(root, "test", "geometry", 3, "{not json")
    _write(root, "test", "geometry", 4, {"problem": "Area?", "level": "Level 2", "type": "Geometry", "solution": ""})
    out = tmp_path / "out"
    assert hm.main([str(root), "--out", str(out), "--no-progress"]) == 0
    train, test = read_rows(out / "train.parquet"), read_rows(out / "test.parquet")
    assert [r["source_path"] for r in train] == ["train/intermediate_algebra/2.json", "train/intermediate_algebra/10.json"]
    assert [r["level"] for r in train] == [None, 5] and train[1]["answer"] == "3"
    assert train[1]["subject"] == "Intermediate Algebra" and train[1]["split"] == "train"
    assert train[1]["messages"] == [{"role": "user", "content": "Find $x$."}, {"role": "assistant", "content": "$x=\\boxed{3}$"}]
    assert train[1]["prompt"] == "Find $x$." and train[1]["response"] == "$x=\\boxed{3}$"
    assert [(r["subject"], r["answer"], r["split"]) for r in test] == [("Counting & Probability", "6", "test")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == 5 and summary["kept_by_output"] == {"train": 2, "test": 1}
    assert summary["dropped"] == {"malformed_json": 1, "empty_text:solution": 1}
    assert summary["notes"] == {"level_unknown": 1}
    assert {r["file"].split("MATH/")[1] for r in read_jsonl(out / "rejects.jsonl")} == {"test/geometry/3.json",
                                                                                         "test/geometry/4.json"}


def test_jsonl_input_split_from_name_or_flag(tmp_path, write_jsonl, read_rows, read_jsonl):
    rows = [{"problem": "p1", "solution": "\\boxed{1}", "level": "Level 3", "type": "Prealgebra"}, {"solution": "x"}]
    src = write_jsonl(tmp_path / "math_test.jsonl", rows)
    out = tmp_path / "o"
    assert hm.main([str(src), "--out", str(out), "--no-progress"]) == 0
    [row] = read_rows(out / "test.parquet")
    assert row["source_path"] == "math_test.jsonl:1" and row["level"] == 3
    assert hm.main([str(src), "--out", str(out), "--split", "train", "--no-progress"]) == 0
    assert (out / "train.parquet").exists() and not (out / "test.parquet").exists()
    assert read_jsonl(out / "rejects.jsonl")[0]["reason"] == "missing_field:problem"


def test_rejects_non_objects_and_wrong_types():
    assert hm.convert_record([1], "train", None, "x").reason == "not_an_object"
    out = hm.convert_record({"problem": 5, "solution": "s"}, "train", None, "x")
    assert isinstance(out, Reject) and out.reason == "wrong_type:problem"
