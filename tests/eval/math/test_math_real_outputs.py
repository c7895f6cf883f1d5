"""Issue 20: responses shaped as real model outputs (R1 / Qwen / Llama / Minerva / chat / olympiad
styles), each kind with a negative beside each positive, graded end to end (``data/real_outputs.jsonl``,
written by hand for these tests: fields kind, style, gold, response, correct, note).

The kinds: ``multi_box`` (an answer over several boxes), ``unboxed`` (no box, no "answer is"),
``prose_answer`` (prose around the value on an answer line or in a conclusion), ``separators``
(``,\\!``, ``{,}``, ``\\,``), ``relations`` (equivalent inequalities, chains of equalities), ``forms``
(units, fractions, percentages, choices, think blocks). Negatives: the same surface with a wrong value,
the right value mentioned in passing before a wrong one, and responses with no final answer.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from verl_ext_eval.math.grading import MathGrader

CASES = [json.loads(line) for line in (Path(__file__).parent / "data" / "real_outputs.jsonl").read_text("utf-8").splitlines()]
KINDS = ("multi_box", "unboxed", "prose_answer", "separators", "relations", "forms")


@pytest.fixture(scope="module")
def graded():
    """All cases graded in one batch (one pool start), in file order."""
    with MathGrader(workers=2, timeout_s=10) as grader:
        return grader.grade_many([(c["response"], c["gold"]) for c in CASES])


def test_every_kind_has_negatives_beside_positives():
    by_kind = Counter((c["kind"], c["correct"]) for c in CASES)
    for kind in KINDS:
        assert by_kind[(kind, True)] >= 5 and by_kind[(kind, False)] >= by_kind[(kind, True)] * 0.6, kind
    assert len(CASES) >= 150 and {c["kind"] for c in CASES} == set(KINDS)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c['kind']}-{i}" for i, c in enumerate(CASES)])
def test_graded_as_labelled(graded, index):
    case, result = CASES[index], graded[index]
    assert result.correct is case["correct"], (case, result)
    assert not result.timed_out


def _bare(gold: str) -> bool:
    return "\\boxed" not in gold and "$" not in gold and "\n" not in gold


BARE = [i for i, c in enumerate(CASES) if _bare(c["gold"])]


def test_gold_as_bare_boxed_or_full_solution_gives_the_same_verdict(graded):
    """The gold read three ways (a bare value, a boxed value, a solution ending in a box; and a
    solution stating it in prose without a box) must not change any verdict."""
    forms = [lambda g: rf"\boxed{{{g}}}", lambda g: rf"Collecting the cases above, the total is $\boxed{{{g}}}$.",
             lambda g: f"We collect the cases above.\nFinal Answer: The final answer is ${g}$. I hope it is correct."]
    pairs = [(CASES[i]["response"], form(CASES[i]["gold"])) for i in BARE for form in forms]
    with MathGrader(workers=2, timeout_s=10) as grader:
        results = grader.grade_many(pairs)
    verdicts = iter(r.correct for r in results)
    for i in BARE:
        for form in forms:
            assert next(verdicts) is graded[i].correct, (CASES[i], form(CASES[i]["gold"]))
