"""bench.grading's real-output bucket (issue 20): its labels are honest (right and wrong values on the
same surfaces) and the grader agrees with every one of them."""
import random
from collections import Counter

from bench import grading as bench
from verl_ext_eval.math.grading import grade_many


def test_real_output_bucket_is_in_the_mix_with_both_labels():
    pairs = bench.make_pairs(600, seed=0, pathological=0)
    real = [p for p in pairs if p[3] == bench.REAL]
    assert len(real) >= 20
    assert Counter(label for _, _, label, _ in real).keys() == {True, False}


def test_grader_agrees_with_the_real_output_labels():
    rng = random.Random(7)
    cases = [bench._real_output(rng) for _ in range(48)]
    results = grade_many([(response, gold) for response, gold, _ in cases], workers=2, timeout_s=10)
    wrong = [(c, r) for c, r in zip(cases, results) if r.correct != c[2]]
    assert not wrong, wrong[:3]
