"""Equivalent answer forms math-verify alone does not equate (issue 12), each in both directions,
with at least as many look-alikes that must stay wrong; the percent policy both ways."""
from __future__ import annotations

import pytest

from verl_ext_eval.math.forms import Huge, eval_number
from verl_ext_eval.math.relations import equation_list, inequality_to_interval
from verl_ext_eval.math.grading import GradingOptionError, MathGrader
from verl_ext_eval.math.normalize import fast_verdict, rewrite_forms

# (a, b): the same answer; tested with a as gold and b as the response, and the other way round
SAME = [
    # thousands separators
    ("12345", r"12,\!345"), ("12345", "12,345"), ("12345", "12 345"), ("12345", r"12{,}345"),
    ("1234567", r"1,\!234,\!567"), ("-12345", "-12 345"), ("12345.5", "12,345.5"),
    # mixed numbers
    (r"\frac{10}{3}", "3 1/3"), ("10/3", r"3\frac{1}{3}"), (r"-\frac{7}{2}", r"-3\frac{1}{2}"), ("2.25", r"2\frac{1}{4}"),
    # scientific notation
    (r"6.02 \times 10^{23}", "6.02e23"), (r"6.02\cdot10^{23}", "6.02E23"), (r"1.5\times10^{-3}", "1.5e-3"), ("0.0015", "1.5e-3"),
    # solution lists written as equations
    ("2, -5", "x = 2 and x = -5"), ("2, -5", "x=2, x=-5"), (r"\{2,-5\}", "x=2, x=-5"), (r"\{2,-5\}", r"x = -5 \text{ or } x = 2"),
    (r"-5, 2", "x = 2, x = -5"), (r"\frac{1}{2}, 3", r"x=3 \text{ and } x=\frac{1}{2}"),
    # one-variable inequalities vs intervals
    ("x > 2", r"(2, \infty)"), (r"x \ge 2", r"[2,\infty)"), ("x < -1", r"(-\infty,-1)"), (r"-1 \le x < 3", "[-1,3)"),
    (r"x<-1 \text{ or } x>2", r"(-\infty,-1)\cup(2,\infty)"), ("2 < x", r"(2,\infty)"), (r"x \in (2, \infty)", r"(2,\infty)"),
    (r"x > \frac{\pi}{2}", r"\left(\frac{\pi}{2}, \infty\right)"),
    # words
    (r"\text{Tuesday}", "Tuesday"), (r"\textbf{Tuesday}", "tuesday"), (r"\text{yes}", "Yes"),
    # huge numbers and arithmetic
    ("1024", "2^{10}"), ("120", "5!"), (r"\frac{3}{4}", "0.75"),
    # issue 20: MATH's separators with a space, negated variables, chains of equalities, decimal commas
    ("11111111100", r"11,\! 111,\! 111,\! 100"), ("32349", r"32,\!349"), ("14916", r"14{,}916"),
    ("x < 1", "-x > -1"), (r"x \le 1", r"-x \geq -1"), ("x > -3", "3 > -x"), (r"x \ge \frac{1}{2}", r"-x \le -\frac{1}{2}"),
    ("x = 11", "x = 5+5+1 = 11"), ("11", "x = 5 + 6 = 11"), ("z = 2", "z = 3 - 1 = 2"),
    ("1000.99", "1000,99"), ("1.22", "1,22"), ("0.111", "0,111"),
    # lists of tuples (answers over several boxes): unordered between tuples, ordered inside
    ("(2, 2), (6, 2)", "(6,2),(2,2)"), (r"\{(1,2),(3,4)\}", "(3, 4), (1, 2)"),
]

# (gold, response): must stay wrong
DIFFERENT = [
    ("12", "1,2"), ("12345", "12.345"), ("123", "1,23"), ("12345", "1,2345"), ("1000", "1,000,0"), ("12345", "12 34 5"),
    ("1000", "1,0000"), ("-12345", "12,345"),
    (r"\frac{10}{3}", "31/3"), (r"\frac{10}{3}", r"3\frac{1}{2}"), ("1", r"3\frac{1}{3}"), (r"\frac{10}{3}", "-3 1/3"),
    (r"6.02 \times 10^{23}", "6.02e22"), (r"6.02 \times 10^{23}", "6.0223"), ("0.0015", "1.5e3"), ("6.02e23", "6.2e23"),
    ("2, -5", "x = 2 and x = 5"), ("2, -5", "x = 2"), (r"\{2,-5\}", "x=2, x=-5, x=3"), ("2, -5", "x=-2, x=5"),
    ("2", "x=2, x=-5"), (r"\{2,-5\}", "2, 5"),
    ("x > 2", r"[2, \infty)"), (r"x \ge 2", r"(2,\infty)"), ("x < 2", r"(2,\infty)"), ("x > 2", r"(-\infty, 2)"),
    (r"-1 \le x < 3", "[-1,3]"), (r"x<-1 \text{ or } x>2", r"(-\infty,-1)\cup[2,\infty)"), (r"(2,\infty)", "x < 2"),
    ("x > 3", r"(2,\infty)"),
    (r"\text{Tuesday}", "Thursday"), (r"\text{Monday}", "Tuesday"), ("Tuesday", "Tuesady"),
    ("5", r"10^{10^{10}}"), ("5", r"(10^{6})!"), ("1024", "2^{11}"), ("B", "C"), ("(B)", "A"),
    # issue 20 look-alikes
    ("32349", "32, 349"), ("11111111100", r"11,\! 111,\! 111,\! 000"), ("x < 1", "-x > 1"), ("x < 1", "-x < -1"),
    (r"x \le 1", "-x > -1"), ("x > 3", "3 > -x"), ("x = 11", "x = 5+5+1 = 12"), ("11", "x = 5 + 6 = 12"),
    ("1.22", "1,23"), ("122", "1,22"), ("1.222", "1,222"), ("12.1", "1,21"), ("1.5", "1,5,0"),
    ("(2, 2), (6, 2)", "(2,2),(2,6)"), ("(2, 2), (6, 2)", "(2,2)"), ("(2, 2), (6, 2)", "(2,2),(6,2),(1,1)"),
]


def _both_ways(cases):
    return [pytest.param(a, b, id=f"{a}|{b}") for a, b in cases] + [pytest.param(b, a, id=f"{b}|{a}") for a, b in cases]


@pytest.fixture(scope="module")
def grader():
    with MathGrader(workers=2, timeout_s=10) as g:
        yield g


def test_negatives_outnumber_positives():
    assert len(DIFFERENT) >= len(SAME)


@pytest.mark.parametrize("gold, answer", _both_ways(SAME))
def test_same_answer(grader, gold, answer):
    (r,) = grader.grade_many([(f"The answer is $\\boxed{{{answer}}}$.", gold)])
    assert r.correct, r


@pytest.mark.parametrize("gold, answer", [pytest.param(g, p, id=f"{g}|{p}") for g, p in DIFFERENT])
def test_look_alike_stays_wrong(grader, gold, answer):
    (r,) = grader.grade_many([(f"The answer is $\\boxed{{{answer}}}$.", gold)])
    assert not r.correct, r


PERCENT = [(r"50\%", "0.5"), (r"12.5\%", r"\frac{1}{8}"), ("25%", "0.25"), (r"\frac{1}{3}\%", r"\frac{1}{300}")]


@pytest.mark.parametrize("gold, answer", _both_ways(PERCENT))
def test_percent_as_fraction_accepts_decimal_and_strict_does_not(gold, answer):
    pairs = [(rf"\boxed{{{answer}}}", gold)]
    with MathGrader(workers=1, timeout_s=10) as default, MathGrader(workers=1, timeout_s=10, percent="strict") as strict:
        assert default.grade_many(pairs)[0].correct
        assert not strict.grade_many(pairs)[0].correct


@pytest.mark.parametrize("percent", ["strict", "as_fraction"])
def test_percent_sign_as_a_unit_under_both_policies(percent):
    assert fast_verdict("50", r"50\%", percent) == (True, "exact")
    assert fast_verdict(r"50\%", "50", percent) == (True, "exact")
    assert fast_verdict("0.05", r"50\%", percent)[0] is False  # neither 50 nor 0.5


def test_unknown_percent_policy_is_a_typed_error():
    with pytest.raises(GradingOptionError, match="grading.percent"):
        MathGrader(percent="lenient")


def test_forms_are_decided_without_workers():
    """The cheap path decides these forms itself (no SymPy start-up for a batch of them)."""
    g = MathGrader(workers=1, timeout_s=5)
    wrong = [(g, p) for g, p in DIFFERENT if p != "12 34 5"][:20]  # that one math-verify decides
    pairs = [(rf"\boxed{{{b}}}", a) for a, b in SAME[:20]] + [(rf"\boxed{{{p}}}", g) for g, p in wrong]
    results = g.grade_many(pairs)
    assert [r.correct for r in results] == [True] * 20 + [False] * 20
    assert g._pool is None
    g.close()


def test_rewrites_keep_latex_for_math_verify():
    assert rewrite_forms(r"12,\!345") == "12345"
    assert rewrite_forms("3 1/3") == "10/3"
    assert rewrite_forms(r"3\frac{4}{3}") == r"3\frac{4}{3}"  # not a mixed number: left alone
    assert rewrite_forms("6.02e23") == r"6.02\times10^{23}"
    assert rewrite_forms(r"x > \frac{\pi}{2}") == r"(\frac{\pi}{2}, \infty)"
    assert rewrite_forms(r"\sin x") == r"\sin x"
    assert equation_list("x=2, y=3") is None  # a point, not a solution list
    assert inequality_to_interval("x > y > 2") is None


def test_exact_numbers_and_huge():
    assert eval_number(r"-\frac{3}{4}+1") == eval_number("0.25")
    assert eval_number("2^32") is None  # ambiguous LaTeX (2^3 then 2)
    assert eval_number(r"10^{10^{10}}") == Huge(1)
    assert eval_number(r"-(9^{9^{9}})") == Huge(-1)
    assert eval_number(r"10^{10^{10}} - 10^{10^{10}}") is None  # unknown, not 0
    assert eval_number(r"\frac{1}{0}") is None
