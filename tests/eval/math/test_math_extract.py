from __future__ import annotations

import pytest

from verl_ext_eval.math.extract import (
    ANSWER_LINE,
    BOXED,
    FBOX,
    GSM8K,
    NONE,
    UNCLOSED_THINK,
    extract_answer,
    final_segment,
    find_boxed,
    gold_answer,
    last_boxed,
    strip_boxed,
    unwrap_boxed,
)


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


@pytest.mark.parametrize(
    "response, answer, method",
    [
        (r"Work... so \boxed{12}", "12", BOXED),
        (r"Work... \fbox{12}", "12", FBOX),
        ("Reasoning.\nAnswer: 12", "12", ANSWER_LINE),
        ("Reasoning.\nAnswer: $\\frac{1}{2}$", r"\frac{1}{2}", ANSWER_LINE),
        ("Final Answer: The final answer is $7$. I hope it is correct.", "7", ANSWER_LINE),
        ("**Answer:** 9", "9", ANSWER_LINE),
        ("Answer: 3\nmore thinking\nAnswer: 4", "4", ANSWER_LINE),
        ("Natalia sold 48/2 = 24 clips.\n#### 72", "72", GSM8K),
        ("#### 1,000", "1,000", GSM8K),
        ("#### -$5.50", "-$5.50", GSM8K),
        ("#### Step 1: add\n3 + 4 = 7", None, NONE),  # a markdown heading, not an answer
        ("#### 7\n#### Summary", "7", GSM8K),
        (r"Answer: 5 but boxed \boxed{6}", "6", BOXED),  # a box wins over an answer line
        ("I think it is 5.", None, NONE),
        ("", None, NONE),
        # think blocks: only the text after </think> counts
        (r"<think>maybe \boxed{1}</think>The answer is \boxed{2}", "2", BOXED),
        (r"<think>maybe \boxed{1}</think>I give up.", None, NONE),
        (r"thinking without the opening tag \boxed{1}</think> final \boxed{3}", "3", BOXED),
        (r"<think>still thinking \boxed{1} ... (truncated)", None, UNCLOSED_THINK),
        (r"<think>a</think><think>b</think> \boxed{8}", "8", BOXED),
    ],
)
def test_extract_answer(response, answer, method):
    got = extract_answer(response)
    assert (got.answer, got.method) == (answer, method)


def test_final_segment():
    assert final_segment("plain") == "plain"
    assert final_segment("<think>x</think>y") == "y"
    assert final_segment("<think>x") is None


@pytest.mark.parametrize(
    "gold, expected",
    [
        ("42", "42"),
        (" 42 ", "42"),
        (r"\boxed{\frac{3}{4}}", r"\frac{3}{4}"),
        (r"We get $x=2$, so the sum is $\boxed{5}$.", "5"),  # a MATH solution
        ("He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7", "7"),  # a GSM8K solution
    ],
)
def test_gold_answer(gold, expected):
    assert gold_answer(gold) == expected
