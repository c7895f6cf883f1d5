"""The box reader: complete boxes only, Hendrycks' last-box rule, and several boxes read as one
answer only when they list it (issue 20)."""
from __future__ import annotations

import pytest

from verl_ext_eval.math.boxes import boxed_answer, find_boxed, last_boxed, strip_boxed, unwrap_boxed


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so the answer is $\boxed{42}$.", "42"),
        (r"\boxed{1} then \boxed{2}", "2"),
        (r"$\boxed{\frac{1}{2}}$", r"\frac{1}{2}"),
        (r"\boxed{\sqrt{\frac{a}{b}}}", r"\sqrt{\frac{a}{b}}"),
        (r"\boxed {7}", "7"),
        (r"\boxed{ 7 }", " 7 "),
        (r"The answer is $\boxed 5$.", "5"),
        (r"The answer is \boxed 5.", "5"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),  # escaped braces do not count
        (r"\boxed{\left\{ x \right\}}", r"\left\{ x \right\}"),
        (r"\boxed{\text{(A)}}", r"\text{(A)}"),
        (r"\fbox{3}", "3"),
        (r"\fbox{3} and later \boxed{4}", "4"),
        (r"\boxed{4} and later \fbox{3}", "4"),  # Hendrycks: \boxed first, \fbox only as fallback
        (r"\boxed{1} ... \boxed{2", "1"),  # an unclosed (truncated) box is skipped
        (r"\boxed{", None),
        (r"\boxedfoo{3}", None),  # a different macro
        ("no box here", None),
        (r"\boxed{}", ""),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


def test_find_boxed_positions_and_nesting():
    text = r"a \boxed{x + \boxed{y}} b \fbox{z}"
    found = find_boxed(text)
    assert [m.content for m in found] == [r"x + \boxed{y}", "y", "z"]
    outer = found[0]
    assert text[outer.start:outer.end] == r"\boxed{x + \boxed{y}}"
    assert [m.command for m in found] == ["boxed", "boxed", "fbox"]


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"\boxed{3}", "3"),
        (r"$\boxed{\frac12}$", r"\frac12"),
        (r" \boxed{x} ", "x"),
        (r"\boxed{1} + \boxed{2}", r"\boxed{1} + \boxed{2}"),  # not a single box: unchanged
        ("17", "17"),
    ],
)
def test_unwrap_boxed(text, expected):
    assert unwrap_boxed(text) == expected


def test_strip_boxed_keeps_content_and_text_around():
    assert strip_boxed(r"So $\boxed{\frac{1}{2}}$ is it, \fbox{3} too") == r"So $\frac{1}{2}$ is it, 3 too"
    assert strip_boxed(r"\boxed{a \boxed{b}}") == "a b"
    assert strip_boxed(r"dangling \boxed{1") == r"dangling \boxed{1"


# several boxes: one answer when only list separators stand between them
GROUPS = [
    (r"\boxed{1},\boxed{2},\boxed{3}", "1, 2, 3"),
    (r"$$\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}$$", "(2, 2), (6, 2)"),
    (r"\(\boxed{1}\) and \(\boxed{-2}\).", "1, -2"),
    (r"$\boxed{1}\boxed{2}$", "1, 2"),
    ("\\[ \\boxed{(1, 2)}, \\boxed{(2, 1)},\n\\boxed{(-1, -20)} \\]", "(1, 2), (2, 1), (-1, -20)"),
    (r"$\boxed{(3, 3)} \text{ for part (a) and } \boxed{(1, 1)}$", "(3, 3), (1, 1)"),
    (r"$y_1 = \boxed{2x+1}$ and $y_2 = \boxed{x-3}$", "2x+1, x-3"),
    (r"\boxed{1} papers and \boxed{2} bins", "1, 2"),
    ("(a) $\\boxed{12}$\n\n(b) $\\boxed{7}$", "12, 7"),
    ("- Part 1: $\\boxed{3}$\n- Part 2: $\\boxed{5}$", "3, 5"),
    ("1. $\\boxed{3}$\n2. $\\boxed{5}$", "3, 5"),
    (r"$\boxed{x = 1}$, $\boxed{x = 2}$, and $\boxed{x = 3}$", "x = 1, x = 2, x = 3"),
    ("\\boxed{5}\n\n\\boxed{5}", "5"),  # the same answer twice is one answer
    # not a list: a sentence, a sequence word, a restatement or a rejected value stands between
    (r"width $\boxed{4}$. So the area is $\boxed{12}$.", "12"),
    (r"First \boxed{1}, finally \boxed{\{2, 3\}}.", r"\{2, 3\}"),
    (r"$\boxed{\frac{1}{2}}$ or equivalently $\boxed{0.5}$", "0.5"),
    (r"$\boxed{2}$ is wrong; it is $\boxed{3}$", "3"),
    (r"\boxed{1} finally \boxed{2}", "2"),
    (r"$\boxed{2} = \boxed{3}$", "3"),
    (r"\boxed{1} and \boxed{2", "1"),  # the unclosed box is no item
    (r"\boxed{x + \boxed{y}}", "y"),  # nested: the inner box, as last_boxed
    (r"\fbox{1}, \fbox{2}", "1, 2"),
    ("no box", None),
]


@pytest.mark.parametrize("text, expected", GROUPS)
def test_boxed_answer_groups_listed_boxes(text, expected):
    assert boxed_answer(text) == expected


def test_unclosed_boxes_stay_verbatim():
    """A truncated trace's ``\\boxed{12`` is never cut or rewritten, also before a complete box."""
    for text in (r"so \boxed{12", r"so \boxed{12 and later \boxed{5}.", r"\boxed{12 \frac{1}{2}"):
        assert strip_boxed(text).startswith(text[:text.index("{") + 3])
    assert strip_boxed(r"a \boxed{12 b \boxed{5} c") == r"a \boxed{12 b 5 c"
    assert [m.content for m in find_boxed(r"a \boxed{12 b \boxed{5} c")] == ["5"]


def test_a_generation_loop_of_unclosed_boxes_is_read_in_linear_time():
    """``\\boxed{`` repeated without closing (a model stuck in a loop) once took a scan per box:
    5,000 of them ran ~20 s in the grading process, which has no time bound of its own."""
    import time

    text = "\\boxed{" * 5000 + "\\boxed{7}"
    start = time.perf_counter()
    assert boxed_answer(text) == "7" and strip_boxed(text) == "\\boxed{" * 5000 + "7"
    assert time.perf_counter() - start < 2.0
