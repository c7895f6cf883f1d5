from __future__ import annotations

import pytest

from verl_ext_eval.math.extract import (
    ANSWER_IS,
    ANSWER_LINE,
    BOXED,
    BOXES,
    CONCLUSION,
    FBOX,
    GSM8K,
    LAST_LATEX,
    NONE,
    UNCLOSED_THINK,
    extract_answer,
    final_segment,
    gold_answer,
)


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
        # the response rules read the gold too: several boxes, a solution without a box
        (r"\(\boxed{1}\) and \(\boxed{-2}\).", "1, -2"),
        (r"$$\boxed{2}, \boxed{3}, \boxed{5}$$", "2, 3, 5"),
        (r"\boxed{1} papers and \boxed{2} bins", "1, 2"),
        ("Final Answer: The largest $n$ is 34.", "34"),
        ("Adding gives 12. Thus $x = 7$.", "x = 7"),
        ("The largest n is 34", "34"),
        ("5 cm", "5 cm"),  # a bare value stays as written
        (r"$(11,7)or(7,11)$", r"$(11,7)or(7,11)$"),
        ("$AB=4,CD=5$", "$AB=4,CD=5$"),
        (r"Matrix with fractions: $\begin{pmatrix}\frac{1}{2} & 1\end{pmatrix}$", r"\begin{pmatrix}\frac{1}{2} & 1\end{pmatrix}"),
        (r"So $x = \boxed{255}$ first. Final Answer: The final answer is $10,455$. I hope it is correct.", "10,455"),
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
    ("After simplifying,\n**Final Answer**\n$\\frac{3}{4}$", r"\frac{3}{4}", "answer_line"),  # a heading
    ("The area is 25.\n\n25", "25", "last_line"),
    ("**Final Answer**\n$x=7, x=-2$", "x=7, x=-2", "answer_line"),
    ("Looking at the choices, the answer is (B).", "(B)", "answer_is"),
    ("So the correct option is B.", "B", "answer_is"),
    ("Comparing the options:\nB) 12", "B", "choice"),
    ("Hence option C.", "C", "choice"),
]

# issue 20: answers split over boxes, statements with prose, unboxed LaTeX, conclusions
REAL = [
    (r"$$\boxed{(2, 2)} \quad \text{and} \quad \boxed{(6, 2)}$$", "(2, 2), (6, 2)", BOXES),
    (r"Hence $\boxed{x = 1} \text{ or } \boxed{x = -3}$.", "x = 1, x = -3", BOXES),
    (r"The width is $\boxed{4}$. So the area is $\boxed{12}$.", "12", BOXED),
    # a later Final Answer line is the later commitment: it wins over the boxes before it
    (r"... $= \boxed{255}$. So he has \$10,455. Final Answer: The final answer is $10,455$. I hope it is correct.",
     "10,455", ANSWER_LINE),
    ("Final Answer: The largest $n$ is 34.", "34", ANSWER_LINE),
    ("Final Answer: Jane started growing Sphere 3 hours ago. I hope it is correct.", "3", ANSWER_LINE),
    ("Answer \\[ \n 9 \n \\]", "9", ANSWER_LINE),
    ("Answer $ 9 $", "9", ANSWER_LINE),
    ("Factoring.\n\n**Answer:** $x = 2$ or $x = -3$", "x = 2, x = -3", ANSWER_LINE),
    ("Choose 4 of 10.\n\n### Final Answer\nThe number of ways is **210**.", "210", ANSWER_LINE),
    ("The sides are 3, 4 and 5.\n\n**Therefore, the answer is 12.**", "12", ANSWER_IS),
    ("Subtracting 3, so $x \\geq 5$ is the solution.", r"x \geq 5", LAST_LATEX),
    ("Therefore $x \\geq 5$ is the solution.", r"x \geq 5", CONCLUSION),
    ("We find that $x \\lt 3$.", r"x \lt 3", LAST_LATEX),
    ("$$f(y) = y$$", "f(y) = y", LAST_LATEX),
    ("$odd$", "odd", LAST_LATEX),
    ("$AB=4,CD=5$", "AB=4,CD=5", LAST_LATEX),  # upper-case names and products are math, not words
    ("The symmetric sum is $ab+bc+ca$.", "ab+bc+ca", LAST_LATEX),
    ("The identity matrix is $\\begin{pmatrix}1 & 0 \\\\ 0 & 1\\end{pmatrix}$.",
     r"\begin{pmatrix}1 & 0 \\ 0 & 1\end{pmatrix}", LAST_LATEX),
    ("Using the unit circle,\n\\[\n\\sin 60^\\circ = \\frac{\\sqrt{3}}{2}\n\\]", r"\sin 60^\circ = \frac{\sqrt{3}}{2}", LAST_LATEX),
    ("The solutions are $x = 2$ and $x = -5$", "x = 2, x = -5", LAST_LATEX),
    ("Plug in. Hence $f(x) = x$ for all real $x$.", "f(x) = x", CONCLUSION),
    ("There are 5 books. Thus, there are 120 ways to arrange them. I hope this helps!", "120", CONCLUSION),
    ("So, the ordered pair $(x, y)$ that solves the system is $(7, 6)$.", "(7, 6)", CONCLUSION),
    ("So Janet makes $18 every day.", "18", CONCLUSION),
    ("Therefore, the error increases by 100%.", "100%", CONCLUSION),
    # a model that writes the next chat turn itself: that turn is not the response
    ("Thus the probability is 2/3. <|im_start|>user\nWhat is $2+2$? Answer: 4", "2/3", CONCLUSION),
    ("$x = 5+5+1 = 11$ <|eot_id|>", "x = 5+5+1 = 11", LAST_LATEX),
]


@pytest.mark.parametrize("response, answer, method", REAL)
def test_real_output_shapes(response, answer, method):
    got = extract_answer(response)
    assert (got.answer, got.method) == (answer, method)


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
    # the same with LaTeX, which the final-statement step reads: hedged, questions, case splits,
    # definitions, work announced but not done
    "We have $3$ apples and $4$ oranges, so in total we need to count more carefully.",
    "Could the answer be $12$? Let me verify this.",
    "The expression equals $5$ when $n$ is odd and $6$ otherwise.",
    "Let's check option B first. It gives $12$, which is too small.",
    "In step 2 we got $15$.\nThis means we should continue with the next part.",
    "Let $x = 5$ and $y = 3$.",
    "I don't think $x = 7$ is right.",
    "Therefore, if $x = 3$, then $y = 5$.",
    "$x = 5$.\n\nNow we find $y$.",
    "Final Answer: I am not sure, maybe 7.",
    "Let us see. Answer: maybe 5? Or 6.",
    "So far we have $x = 4$. Next we substitute it into the second equation.",
    "It costs $5 per hour for $ the first day.",  # prose between dollar signs is no math
]


@pytest.mark.parametrize("response, answer, method", PROSE)
def test_prose_final_answers(response, answer, method):
    got = extract_answer(response)
    assert (got.answer, got.method) == (answer, method)


@pytest.mark.parametrize("response", PASSING)
def test_numbers_in_passing_are_not_answers(response):
    assert extract_answer(response) == extract_answer("")  # no answer, method "none"
