"""Grader cases: pairs that must match and pairs that must NOT, across the answer forms models
write (integers, fractions/decimals, LaTeX variants, percentages, units, sets, intervals, tuples,
equations, matrices, text choices), plus the time bound from threads."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from verl_ext_eval.math.grading import GradeResult, MathGrader, grade, grade_many
from verl_ext_eval.math.normalize import as_number, fast_verdict, normalize_answer

# (gold, predicted answer): mathematically the same answer
EQUIVALENT = [
    # integers
    ("72", "72"), ("1000", "1,000"), ("1,000", "1000"), ("-5", "\u22125"), ("5", "5.0"), ("5", "05"),
    ("1000000", r"1\,000\,000"), ("1234", "1{,}234"),
    # fractions and decimals
    (r"\frac{1}{2}", "0.5"), ("1/2", r"\dfrac{1}{2}"), (r"\frac12", r"\tfrac{1}{2}"), ("0.75", r"\frac{3}{4}"),
    (r"-\frac{1}{2}", r"\frac{-1}{2}"), ("2.50", "2.5"), (".5", "0.5"), (r"\frac{3}{2}", r"1\frac{1}{2}"),
    (r"\frac{1}{3}", "0.3333333"),  # math-verify rounds to 6 digits
    # LaTeX variants and symbolic forms
    (r"\sqrt{2}/2", r"\frac{\sqrt2}{2}"), (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}"), (r"2\sqrt{3}", r"\sqrt{12}"),
    (r"\pi", r"\pi"), (r"2\pi", r"2 \pi"), (r"\frac{\pi}{2}", r"\pi/2"), ("x^2+2x+1", "(x+1)^2"), ("3+2i", "2i+3"),
    (r"\infty", r"\infty"), ("2^{10}", "1024"), ("e^{2}", "e^2"), (r"\log_2 8", "3"),
    (r"\left( 3, -4 \right)", "(3,-4)"), (r"\displaystyle\frac{7}{9}", r"\frac{7}{9}"),
    ("1.0 + 5.0i", "1+5i"), ("-6.00i", "-6i"),
    # percentages, units, degrees, currency
    ("50", r"50\%"), (r"50\%", "50"), ("5", r"5\text{ cm}"), (r"5 \text{ cm}", "5"), (r"90^\circ", "90"),
    ("90", r"90^{\circ}"), (r"\$5", "5"), ("5", r"\$5.00"), ("12", r"12 \text{ inches}^2"), ("30", "30°"),
    ("1000", "$1,000"), ("-5.5", "-$5.50"),
    # sets (unordered), lists of solutions
    (r"\{1,2\}", r"\{2,1\}"), ("1,2", "2, 1"), (r"\{1,2,3\}", r"\{3,2,1\}"), ("-2, 3", "3, -2"),
    # intervals and tuples
    ("(1,2)", "(1, 2)"), ("[1,2)", "[1, 2)"), (r"(-\infty, 2]", r"(-\infty,2]"),
    (r"(-\infty,0)\cup(1,\infty)", r"(-\infty, 0) \cup (1, \infty)"), ("(3, -4)", "(3,-4)"),
    (r"x>2", r"(2,\infty)"), (r"(2,\infty)", "x>2"),  # inequality vs interval, either way round
    # equations
    ("3", "x=3"), ("x=3", "3"), ("x=3", "x = 3"), ("y=2x+1", "y=1+2x"),
    # matrices
    (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}"),
    # text answers and choices
    (r"\text{Monday}", "Monday"), (r"\text{yes}", "yes"), (r"\text{(A)}", "A"), ("(C)", "C"), (r"\textbf{(B)}", "B"),
]

# (gold, predicted answer): must NOT match
NOT_EQUIVALENT = [
    ("2", "1/2"), ("1/2", "2"), ("72", "73"), ("0.5", "0.05"), (r"\frac{1}{2}", r"\frac{1}{3}"),
    (r"\frac{1}{3}", "0.333"),  # too few digits
    ("1000", "100"), ("-5", "5"), ("1,000", "1"), ("12", "1,2"), ("5", "5^2"), ("3", "3x"),
    (r"\sqrt{2}", "2"), ("x^2", "x^3"), (r"\pi", "3.14"), ("2i", "2"), ("10^{10}", "10^{9}"),
    (r"\infty", r"-\infty"), ("0", r"\emptyset"), ("1.0 + 5.0i", "1-5i"),
    # intervals: open vs closed ends differ
    ("(1,2)", "[1,2]"), ("[1,2]", "(1,2)"), ("(1,2]", "(1,2)"),
    # order matters for tuples
    ("(1,2)", "(2,1)"), ("(1,2)", r"\{2,1\}"),
    (r"(2,\infty)", "x\\ge2"),  # closed vs open end
    ("y=3", "x=3"),  # a different variable
    (r"\{1,2\}", r"\{1,2,3\}"), ("1,2", "1"),
    ("0.05", r"50\%"),  # 50\% is 50 or 0.5, never 0.05
    (r"\text{Monday}", "Tuesday"), ("A", "B"),
]


def _cases(cases, expected):
    return [pytest.param(g, p, expected, id=f"{g}|{p}") for g, p in cases]


@pytest.fixture(scope="module")
def grader():
    with MathGrader(workers=2, timeout_s=10) as g:
        yield g


@pytest.mark.parametrize("gold, pred, expected", _cases(EQUIVALENT, True) + _cases(NOT_EQUIVALENT, False))
def test_equivalence_cases(grader, gold, pred, expected):
    (r,) = grader.grade_many([(f"The answer is $\\boxed{{{pred}}}$.", gold)])
    assert r.correct is expected, r
    assert r.extracted == pred and r.extract_method == "boxed"
    assert not r.timed_out


def test_documented_decision_pair_vs_set(grader):
    """Kept from math-verify: ``(1,2)`` may be a pair or an interval; a set or list with the same
    elements in the same order is accepted."""
    results = grader.grade_many([(r"\boxed{\{1,2\}}", "(1,2)"), (r"\boxed{1,2}", "(1,2)")])
    assert [r.correct for r in results] == [True, True]


def test_grade_many_keeps_order_and_reasons(grader):
    pairs = [
        (r"\boxed{7}", "7"),  # exact (cheap path)
        (r"\boxed{0.5}", r"\frac12"),  # numeric (cheap path)
        (r"\boxed{8}", "7"),  # two integers differ (cheap path)
        (r"\boxed{\sqrt{49}}", "7"),  # math-verify
        ("no answer at all", "7"),
        (r"<think>\boxed{7}", "7"),
        (r"\boxed{}", "7"),
        (r"\boxed{7}", ""),
    ]
    results = grader.grade_many(pairs)
    assert [r.correct for r in results] == [True, True, False, True, False, False, False, False]
    assert [r.reason for r in results] == [
        "exact", "numeric", "numeric", "math_verify", "no_answer", "unclosed_think", "empty_answer", "no_gold"]
    assert all(isinstance(r, GradeResult) for r in results)


def test_gold_as_full_solution(grader):
    math_solution = r"The sum is $2+3=\boxed{5}$."
    gsm_solution = "She has 2*3 = <<2*3=6>>6.\n#### 6"
    results = grader.grade_many([(r"\boxed{5}", math_solution), ("Answer: 6", gsm_solution), ("#### 6", gsm_solution)])
    assert [r.correct for r in results] == [True, True, True]
    assert [r.extract_method for r in results] == ["boxed", "answer_line", "gsm8k"]


def test_extract_false_takes_the_answer_as_given(grader):
    (r,) = grader.grade_many([("0.5", r"\frac{1}{2}")], extract=False)
    assert r.correct and r.extract_method == "given"


def test_cheap_path_never_starts_workers():
    g = MathGrader(workers=1, timeout_s=5)
    results = g.grade_many([(rf"\boxed{{{i}}}", str(i)) for i in range(2000)])
    assert all(r.correct for r in results) and g._pool is None
    g.close()


def test_cheap_path_decisions_are_certain():
    assert fast_verdict("7", "7.0") == (True, "numeric")
    assert fast_verdict("7", "8") == (False, "numeric")
    assert fast_verdict(r"\frac{1}{3}", "0.3333333") is None  # rounding rules: ask math-verify
    assert fast_verdict("3", "x=3") == (True, "numeric")  # math-verify's rule, decided here
    assert fast_verdict("x=3", "y=3") is None  # a different variable: math-verify's call
    assert normalize_answer(r"$\left( 1,\!2 \right)$") == "(1,2)"
    assert normalize_answer("1,2") == "1,2"  # a list, not a thousands separator
    assert as_number("1" * 5000) is None  # huge literals go to the worker


# symbolic, so the cheap path cannot decide them (pure numbers such as 10^{10^{10}} it decides as huge)
SLOW_FOR_SYMPY = [r"(x+1)^{10^{6}}", r"\sin(10^{10^{10}})", r"10^{10^{10}} + x", r"(2+\sqrt{3})^{10000}"]


def test_pathological_inputs_bounded_from_threads():
    """math-verify's own signal timeout raises off the main thread; our bound must hold there."""
    bound = 1.5
    pairs = [(rf"\boxed{{{e}}}", "5") for e in SLOW_FOR_SYMPY] + [(r"\boxed{\frac{1}{2}}", "0.5"), (r"\boxed{x=3}", "3")]

    def run():
        start = time.perf_counter()
        return grade_many(pairs, workers=2, timeout_s=bound), time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=2) as ex:
        outcomes = [f.result(timeout=120) for f in [ex.submit(run) for _ in range(2)]]
    for results, wall in outcomes:
        assert [r.correct for r in results[-2:]] == [True, True]
        slow = results[:len(SLOW_FOR_SYMPY)]
        assert not any(r.correct for r in slow)
        assert any(r.timed_out and r.reason == "timeout" for r in slow)
        assert max(r.seconds for r in results) <= bound + 0.5
        # 4 slow samples on 2 workers: about 2 bounds, plus worker start-up (slow on a loaded box);
        # without a bound 10^{10^{10}} alone runs past 20 s (seen with math-verify 0.9.0)
        assert wall < 30


def test_one_sample_helper():
    assert grade(r"\boxed{\frac{2}{4}}", "0.5").correct
    r = grade(r"\boxed{(x+1)^{10^{6}}}", "3", timeout_s=1.0)
    assert r.timed_out and not r.correct and r.seconds <= 1.5
