"""Grading throughput: ``verl_ext_eval.math.grading.grade_many`` vs math-verify ``parse``/``verify`` in a loop.

Both grade the same pairs in one run: a realistic mix of boxed model responses against gold
answers (equal integers, thousands separators, fractions vs decimals, LaTeX variants, sets,
intervals, equations, wrong answers) plus a few inputs that make SymPy hang. Each pair carries the
label it was built with, so the run also reports how often each grader gets it right.

    python -m bench.grading --n 5000 --seed 0 --workers 2 --timeout 5 --pathological 4
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from fractions import Fraction

Pair = tuple[str, str, bool]  # (response, gold, label)

PATHOLOGICAL = [r"10^{10^{10}}", r"9^{9^{9}}", r"(10^{6})!", r"10^{10^{10^{10}}}"]
_LEADS = ["So the answer is $\\boxed{{{a}}}$.", "Therefore, the final answer is $\\boxed{{{a}}}$",
          "Adding these gives \\[\\boxed{{{a}}}\\]", "Thus we get \\boxed{{{a}}}."]


def _response(rng: random.Random, answer: str) -> str:
    steps = " ".join(f"Step {i}: we compute {rng.randint(2, 99)} + {rng.randint(2, 99)}." for i in range(rng.randint(1, 4)))
    return f"{steps}\n{rng.choice(_LEADS).format(a=answer)}"


def _decimal(q: Fraction) -> str | None:
    """Terminating decimal text of ``q``, or None."""
    for digits in range(1, 7):
        scaled = q * 10**digits
        if scaled.denominator == 1:
            return f"{float(q):.{digits}f}"
    return None


def _variant(rng: random.Random) -> tuple[str, str, bool]:
    """(predicted, gold, label) for the LaTeX-variant bucket."""
    a, b = rng.randint(1, 9), rng.randint(2, 9)
    options = [
        (rf"\dfrac{{{a}}}{{{b}}}", rf"\frac{{{a}}}{{{b}}}", True),
        (rf"\frac{{{a}\sqrt{{2}}}}{{2}}", rf"\frac{{{a}}}{{\sqrt{{2}}}}", True),
        (f"x={a}", str(a), True),
        (rf"\{{{a}, {a + b}\}}", rf"\{{{a + b}, {a}\}}", True),
        (f"({a}, {a + b}]", f"({a},{a + b}]", True),
        (f"[{a}, {a + b}]", f"({a},{a + b})", False),
        (rf"{a}\pi", rf"\pi \cdot {a}", True),
        (rf"{a}^\circ", str(a), True),
        (rf"{a * 10}\%", str(a * 10), True),
        (rf"\sqrt{{{a * a * b}}}", rf"{a}\sqrt{{{b}}}", True),
        (rf"{a}+{b}i", rf"{b}i+{a}", True),
        (rf"(x+{a})^2", rf"x^2+{2 * a}x+{a * a}", True),
        (rf"\frac{{{a}}}{{{b + 1}}}", rf"\frac{{{a + 1}}}{{{b}}}", Fraction(a, b + 1) == Fraction(a + 1, b)),
    ]
    return rng.choice(options)


def make_pairs(n: int, seed: int = 0, pathological: int = 4) -> list[Pair]:
    """``n`` labelled pairs (``pathological`` of them SymPy traps), deterministically."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for _ in range(n - pathological):
        bucket = rng.random()
        if bucket < 0.40:  # equal integers, sometimes with thousands separators
            v = rng.randint(0, 10**rng.randint(1, 7))
            pred = f"{v:,}" if v >= 1000 and rng.random() < 0.3 else str(v)
            pairs.append((_response(rng, pred), str(v), True))
        elif bucket < 0.55:  # wrong integers
            v = rng.randint(0, 10**5)
            pairs.append((_response(rng, str(v + rng.randint(1, 50))), str(v), False))
        elif bucket < 0.72:  # fractions vs decimals, either side
            q = Fraction(rng.randint(1, 40), rng.choice([2, 4, 5, 8, 10, 20, 25]))
            dec = _decimal(q) or str(float(q))
            frac = rf"\frac{{{q.numerator}}}{{{q.denominator}}}"
            wrong = rng.random() < 0.3
            shown = _decimal(q + Fraction(1, 10)) if wrong else dec
            if rng.random() < 0.5:
                pairs.append((_response(rng, shown), frac, not wrong))
            else:
                pairs.append((_response(rng, frac if not wrong else rf"\frac{{{q.numerator + 1}}}{{{q.denominator}}}"),
                              dec, not wrong))
        else:  # LaTeX variants, sets, intervals, equations
            pred, gold, label = _variant(rng)
            pairs.append((_response(rng, pred), gold, label))
    for i in range(pathological):  # at random places, as they come in a real run
        trap = (_response(rng, PATHOLOGICAL[i % len(PATHOLOGICAL)]), "5", False)
        pairs.insert(rng.randint(0, len(pairs)), trap)
    return pairs


def run_ours(pairs: list[Pair], workers: int, timeout_s: float) -> tuple[float, list, float]:
    """Wall time including worker start-up and shutdown, results, slowest sample."""
    from verl_ext_eval.math.grading import MathGrader

    start = time.perf_counter()
    with MathGrader(workers, timeout_s) as grader:
        results = grader.grade_many([(resp, gold) for resp, gold, _ in pairs])
    wall = time.perf_counter() - start
    return wall, results, max(r.seconds for r in results)


def run_math_verify(pairs: list[Pair]) -> tuple[float, list[bool], float]:
    """The direct way: ``verify(parse(gold), parse(response))`` per pair, default timeouts."""
    from math_verify import parse, verify

    verdicts: list[bool] = []
    slowest = 0.0
    start = time.perf_counter()
    for resp, gold, _ in pairs:
        t = time.perf_counter()
        try:
            verdicts.append(bool(verify(parse(f"${gold}$"), parse(resp))))
        except Exception:  # noqa: BLE001 - count as wrong, as a reward function would
            verdicts.append(False)
        slowest = max(slowest, time.perf_counter() - t)
    return time.perf_counter() - start, verdicts, slowest


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.grading", description=__doc__.split("\n\n")[0],
                                epilog="example: python -m bench.grading --n 5000 --workers 2 --timeout 5")
    p.add_argument("--n", type=int, default=5000, help="pairs (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="grader processes (default: CPUs)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-sample bound for grade_many, seconds")
    p.add_argument("--pathological", type=int, default=4, help="SymPy traps among the pairs (default 4)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    pairs = make_pairs(args.n, args.seed, args.pathological)
    labels = [label for _, _, label in pairs]
    ours_s, results, ours_slow = run_ours(pairs, args.workers, args.timeout)
    ours = [r.correct for r in results]
    to_workers = [(r.extracted, gold) for r, (_, gold, _) in zip(results, pairs)
                  if r.reason in ("math_verify", "timeout") or r.reason.startswith("error")]
    mv_s, mv, mv_slow = run_math_verify(pairs)
    n = len(pairs)
    print(f"pairs: {n} ({args.pathological} pathological), workers: {args.workers}, bound: {args.timeout:g} s, "
          f"CPUs: {os.cpu_count()}")
    print(f"grade_many          : {ours_s:8.2f} s  {n / ours_s:9.1f} pairs/s  slowest sample {ours_slow:.2f} s  "
          f"label agreement {sum(a == b for a, b in zip(ours, labels)) / n:.4f}")
    cheap = [r.seconds for r in results if r.reason in ("exact", "numeric", "no_answer", "empty_answer")]
    cheap_rate = len(cheap) / sum(cheap) if cheap and sum(cheap) > 0 else float("inf")
    print(f"  cheap path decided {len(cheap)} ({cheap_rate:,.0f} pairs/s in the parent, extraction included); "
          f"math-verify workers got {len(to_workers)} ({len(set(to_workers))} unique), "
          f"timeouts: {sum(r.timed_out for r in results)}")
    print(f"math-verify loop    : {mv_s:8.2f} s  {n / mv_s:9.1f} pairs/s  slowest sample {mv_slow:.2f} s  "
          f"label agreement {sum(a == b for a, b in zip(mv, labels)) / n:.4f}")
    print(f"speed-up            : {mv_s / ours_s:.1f}x")
    disagree = [i for i in range(n) if ours[i] != mv[i]]
    print(f"verdicts that differ: {len(disagree)}")
    for i in disagree[:5]:
        resp, gold, label = pairs[i]
        print(f"  gold={gold!r} label={label} ours={ours[i]} math-verify={mv[i]} response tail={resp[-50:]!r}")
    if ours_slow > args.timeout + 1.0:
        print(f"error: the slowest sample took {ours_slow:.2f} s, over the {args.timeout:g} s bound", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
