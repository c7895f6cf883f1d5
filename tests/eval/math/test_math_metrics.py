from __future__ import annotations

import itertools
import math
import random

import pytest

from verl_ext_eval.math.metrics import (
    SampleScore,
    answer_reward,
    breakdown,
    format_ok,
    mean_pass_at_k,
    metrics,
    pass_at_k,
    summarize,
    think_block_ok,
)


def _pass_at_k_by_enumeration(n: int, c: int, k: int) -> float:
    """Share of all k-subsets of n samples (c correct) that contain a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n, c, k", [(1, 0, 1), (1, 1, 1), (5, 2, 1), (5, 2, 3), (6, 0, 4), (8, 3, 5), (8, 7, 2), (10, 5, 10)])
def test_pass_at_k_matches_enumeration(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(_pass_at_k_by_enumeration(n, c, k), abs=1e-12)


def test_pass_at_k_large_n_is_stable():
    # math.comb is exact: compare with the definition on numbers far beyond float binomials
    n, c, k = 2000, 3, 100
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9)
    assert pass_at_k(n, 0, k) == 0.0 and pass_at_k(n, n, k) == 1.0
    assert pass_at_k(5, 1, 1) == pytest.approx(0.2)


def test_pass_at_k_rejects_bad_counts():
    for n, c, k in [(3, 4, 1), (3, -1, 1), (3, 1, 4), (3, 1, 0)]:
        with pytest.raises(ValueError):
            pass_at_k(n, c, k)


@pytest.mark.parametrize(
    "response, expect_think, ok",
    [
        (r"Steps. \boxed{3}", False, True),
        ("Steps. 3", False, False),  # no final box
        (r"<think>hmm</think>So \boxed{3}", True, True),
        (r"hmm</think>So \boxed{3}", True, True),  # <think> was in the prompt (Qwen3 template)
        (r"<think>hmm \boxed{3}", True, False),  # never closed
        (r"<think>hmm</think>So 3", True, False),  # box missing after the think block
        (r"<think>hmm \boxed{3}</think>So 3", True, False),  # the box inside the think block does not count
        (r"\boxed{3}", True, False),  # think block expected but absent
        (r"<think>a</think><think>b</think>\boxed{3}", True, False),
        (r"</think>x<think>\boxed{3}", True, False),  # wrong order
        ("<think>\n\n</think>\n\n\\boxed{3}", False, True),  # empty block from a non-thinking template
    ],
)
def test_format_ok(response, expect_think, ok):
    assert format_ok(response, expect_think) is ok


def test_think_block_ok():
    assert think_block_ok("<think>x</think>y") and think_block_ok("x</think>y")
    assert not think_block_ok("no tags") and not think_block_ok("</think></think>")


def test_answer_reward():
    assert answer_reward(True) == 1.0 and answer_reward(False) == 0.0
    assert answer_reward(True, formatted=False) == 1.0  # no penalty by default
    assert answer_reward(False, formatted=False, format_penalty=1.0) == -1.0
    assert answer_reward(True, formatted=False, format_penalty=0.5) == 0.5


def _samples():
    rng = random.Random(0)
    out = []
    for p in range(6):
        subject = "Algebra" if p % 2 else "Arithmetic"
        level = f"Level {p % 3 + 1}"
        for s in range(4):
            out.append(SampleScore(f"p{p}", rng.random() < 0.5, rng.random() < 0.8, num_tokens=10 * (p + s),
                                   entropy=None if s == 0 else 0.1 * s, subject=subject, level=level))
    return out


def test_metrics_and_breakdowns_against_hand_counts():
    samples = _samples()
    m = metrics(samples, ks=(1, 4))
    assert m["n_samples"] == 24 and m["n_problems"] == 6
    assert m["accuracy"] == pytest.approx(sum(s.correct for s in samples) / 24)
    assert m["format_rate"] == pytest.approx(sum(s.formatted for s in samples) / 24)
    assert m["mean_tokens"] == pytest.approx(sum(s.num_tokens for s in samples) / 24)
    assert m["mean_entropy"] == pytest.approx((0.1 + 0.2 + 0.3) / 3)  # missing entropies skipped
    assert m["pass@1"] == pytest.approx(m["accuracy"])  # equal samples per problem
    solved = {s.problem_id for s in samples if s.correct}
    assert m["pass@4"] == pytest.approx(len(solved) / 6)
    by_subject = breakdown(samples, "subject", ks=(1,))
    assert sorted(by_subject) == ["Algebra", "Arithmetic"]
    alg = [s for s in samples if s.subject == "Algebra"]
    assert by_subject["Algebra"]["accuracy"] == pytest.approx(sum(s.correct for s in alg) / len(alg))
    summary = summarize(samples, ks=(1,))
    assert set(summary) == {"overall", "by_subject", "by_level"}
    assert sorted(summary["by_level"]) == ["Level 1", "Level 2", "Level 3"]


def test_metrics_edge_cases():
    assert metrics([])["accuracy"] is None
    uneven = [SampleScore("a", True, True), SampleScore("a", False, True), SampleScore("b", True, True)]
    assert mean_pass_at_k(uneven, 2) is None  # problem b has fewer than 2 samples
    assert mean_pass_at_k(uneven, 1) == pytest.approx((0.5 + 1.0) / 2)
    assert sorted(breakdown([SampleScore("a", True, True, subject=None)], "subject")) == ["?"]
    penalised = metrics([SampleScore("a", False, False)], format_penalty=1.0)
    assert penalised["mean_reward"] == -1.0
