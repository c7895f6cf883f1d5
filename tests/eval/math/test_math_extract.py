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


# how models end responses without a box (Llama, Qwen, R1, Minerva, multiple choice)
PROSE = [
    ("We add them.\nThe answer is 42.", "42", "answer_is"),
    ("So the final answer is $\\frac{1}{2}$.", r"\frac{1}{2}", "answer_is"),
    ("Thus, the final answer is: 5", "5", "answer_is"),
    ("Therefore the answer is **12 cm**.", "12", "answer_is"),
    ("The answer is 5 apples.", "5", "answer_is"),
    ("The answer is $5+4i$.", "5+4i", "answer_is"),
    ("The answer is 3.5 because we divide.", "3.5", "answer_is"),
    ("The answer is $x = 2$ and $x = -5$.", "x = 2, x = -5", "answer_is"),
    ("I computed 7 earlier. The answer is $8$ since 7 was wrong.", "8", "answer_is"),
    ("The answer is 3.\nOn reflection the answer is 4.", "4", "answer_is"),
    ("**Answer:** 9", "9", "answer_line"),
    ("**Answer: 9**", "9", "answer_line"),
    ("Answer: $12,345$ dollars", "12,345", "answer_line"),
    ("After simplifying,\n**Final Answer**\n$\\frac{3}{4}$", r"\frac{3}{4}", "last_line"),
    ("The area is 25.\n\n25", "25", "last_line"),
    ("**Final Answer**\n$x=7, x=-2$", "x=7, x=-2", "last_line"),
    ("Looking at the choices, the answer is (B).", "(B)", "answer_is"),
    ("So the correct option is B.", "B", "answer_is"),
    ("Comparing the options:\nB) 12", "B", "choice"),
    ("Hence option C.", "C", "choice"),
]

# numbers mentioned in passing: no final answer
PASSING = [
    "The answer is not 5, let us recheck the computation.",
    "The answer is easy to find if we note that 2+2=4.",
    "We have 3 apples and 4 oranges, so in total we need to count more carefully.",
    "Let's check option B first. It gives 12, which is too small.",
    "The answer depends on n.",
    "In step 2 we got 15.\nThis means we should continue with the next part.",
    "The answer is 5 when n is odd and 6 otherwise.",
    "Is the answer 5? Let's verify.",
    "#### Step 1: add\n3 + 4 = 7",
]


@pytest.mark.parametrize("response, answer, method", PROSE)
def test_prose_final_answers(response, answer, method):
    got = extract_answer(response)
    assert (got.answer, got.method) == (answer, method)


@pytest.mark.parametrize("response", PASSING)
def test_numbers_in_passing_are_not_answers(response):
    assert extract_answer(response) == extract_answer("")  # no answer, method "none"
