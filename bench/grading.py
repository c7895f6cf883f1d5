"""Grading throughput: ``verl_ext_eval.math.grading.grade_many`` vs math-verify ``parse``/``verify`` in a loop.

Both grade the same pairs in one run: model responses ending the ways models end them (boxed, "the
answer is", ``**Answer:**``, Minerva's "Final Answer", a bare last line) against gold answers, in
buckets: simple forms (integers, wrong integers, fractions vs decimals, short LaTeX) and the rest
(sets, intervals, equations, thousands separators, mixed numbers, e-notation, solution lists,
inequalities, words, percentages; and whole responses shaped as real ones: an answer over several
boxes, unboxed LaTeX, prose on the answer line, a conclusion sentence, ``,\\!`` separators, negated
inequalities) plus inputs that make SymPy hang (pure-number towers and symbolic ones). Each pair carries the label it was built with (percentages under the default ``as_fraction``
policy), so the run also reports how often each grader gets it right.

    python -m bench.grading --n 5000 --seed 0 --workers 2 --timeout 5 --pathological 4
    python -m bench.grading --compare-pools   # also BoundedPool vs pebble.ProcessPool (pip install pebble)
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from collections import Counter
from fractions import Fraction

Pair = tuple[str, str, bool, str]  # (response, gold, label, bucket)
SIMPLE = ("integer", "wrong_integer", "fraction", "short_latex")
REAL = "real_output"  # whole responses shaped as real ones (several boxes, unboxed LaTeX, prose answers)

# half pure numbers (the cheap path proves them huge), half symbolic (they reach the workers' bound)
PATHOLOGICAL = [r"10^{10^{10}}", r"(x+1)^{10^{6}}", r"(10^{6})!", r"\sin(10^{10^{10}})"]
_LEADS = ["So the answer is $\\boxed{{{a}}}$.", "Therefore, the final answer is $\\boxed{{{a}}}$",
          "Adding these gives \\[\\boxed{{{a}}}\\]", "Thus we get \\boxed{{{a}}}.",
          "The answer is ${a}$.", "So the final answer is: ${a}$", "**Answer:** ${a}$",
          "Final Answer: The final answer is ${a}$. I hope it is correct.", "**Final Answer**\n${a}$"]


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


def _short_latex(rng: random.Random) -> tuple[str, str, bool]:
    a, b = rng.randint(1, 9), rng.randint(2, 9)
    return rng.choice([
        (rf"\dfrac{{{a}}}{{{b}}}", rf"\frac{{{a}}}{{{b}}}", True),
        (rf"{a}^\circ", str(a), True),
        (rf"{a * 10}\%", str(a * 10), True),
        (rf"\frac{{{a}}}{{{b + 1}}}", rf"\frac{{{a + 1}}}{{{b}}}", Fraction(a, b + 1) == Fraction(a + 1, b)),
        (f"x={a}", str(a), True),
        (f"{b}^{{{a}}}", str(b ** a), True),
        (rf"-\frac{{{a}}}{{{b}}}", rf"\frac{{-{a}}}{{{b}}}", True),
    ])


def _variant(rng: random.Random) -> tuple[str, str, bool]:
    """(predicted, gold, label) for the symbolic bucket."""
    a, b = rng.randint(1, 9), rng.randint(2, 9)
    return rng.choice([
        (rf"\frac{{{a}\sqrt{{2}}}}{{2}}", rf"\frac{{{a}}}{{\sqrt{{2}}}}", True),
        (rf"\{{{a}, {a + b}\}}", rf"\{{{a + b}, {a}\}}", True),
        (f"({a}, {a + b}]", f"({a},{a + b}]", True),
        (f"[{a}, {a + b}]", f"({a},{a + b})", False),
        (rf"{a}\pi", rf"\pi \cdot {a}", True),
        (rf"\sqrt{{{a * a * b}}}", rf"{a}\sqrt{{{b}}}", True),
        (rf"{a}+{b}i", rf"{b}i+{a}", True),
        (rf"(x+{a})^2", rf"x^2+{2 * a}x+{a * a}", True),
    ])


def _new_form(rng: random.Random) -> tuple[str, str, bool]:
    """(predicted, gold, label): the forms issue 12 added, right and look-alike wrong."""
    v = rng.randint(10**4, 10**6)
    a, b = rng.randint(1, 9), rng.randint(2, 9)
    grouped = f"{v:,}"
    return rng.choice([
        (grouped.replace(",", ",\\!"), str(v), True), (grouped.replace(",", " "), str(v), True),
        (grouped.replace(",", "."), str(v), False),
        (f"{a} 1/{b}", rf"\frac{{{a * b + 1}}}{{{b}}}", True), (rf"{a}\frac{{1}}{{{b}}}", f"{a * b + 1}/{b}", True),
        (f"{a}.{b}e{a + 10}", rf"{a}.{b} \times 10^{{{a + 10}}}", True), (f"{a}.{b}e{a + 9}", rf"{a}.{b} \times 10^{{{a + 10}}}", False),
        (f"x = {a} and x = -{b}", f"{a}, -{b}", True), (f"x={a}, x=-{b}", rf"\{{-{b},{a}\}}", True),
        (f"x = {a}", f"{a}, -{b}", False),
        (f"x > {a}", rf"({a}, \infty)", True), (rf"({a}, \infty)", f"x > {a}", True), (rf"x \ge {a}", rf"({a}, \infty)", False),
        (r"\text{Tuesday}", "Tuesday", True), ("Thursday", r"\text{Tuesday}", False),
        (rf"{a * 10}\%", f"{a / 10}", True),
    ])


def _real_output(rng: random.Random) -> tuple[str, str, bool]:
    """(response, gold, label): whole responses the way models write them without one clean box
    (issue 20), right and with a wrong value on the same surface."""
    a, b = rng.randint(2, 9), rng.randint(10, 99)
    wrong = rng.random() < 0.4
    v = a + rng.randint(1, 5) if wrong else a
    work = f"Substituting $t = {b}$ and simplifying gives the equation below."
    n = a * 10**9 + b * 10**6 + 123_456
    grouped = f"{n + v - a:,}".replace(",", ",\\! ")  # MATH's 12,\! 345
    return rng.choice([
        (f"{work}\n\n$$\\boxed{{({a}, {b})}} \\quad \\text{{and}} \\quad \\boxed{{({v}, {b + 1})}}$$",
         f"({a}, {b}), ({a}, {b + 1})", not wrong),
        (f"{work} The roots are $\\boxed{{{b}}}$, $\\boxed{{{v}}}$.", rf"\{{{a}, {b}\}}", not wrong),
        (f"{work} So $x \\geq {v}$ is the solution.", rf"[{a}, \infty)", not wrong),
        (rf"{work} The matrix is $\begin{{pmatrix}}{v} & 0 \\ 0 & {b}\end{{pmatrix}}$.",
         rf"\begin{{pmatrix}}{a} & 0 \\ 0 & {b}\end{{pmatrix}}", not wrong),
        (f"{work}\nFinal Answer: The largest $n$ is {v * b}.", str(a * b), not wrong),
        (f"{work} Therefore, there are {v * 10} ways to seat them. <|im_start|>user\nNext question", str(a * 10), not wrong),
        (rf"{work} The count is $\boxed{{{grouped}}}$.", str(n), not wrong),
        (rf"{work} Hence $\boxed{{-x > -{v}}}$.", f"x < {a}", not wrong),
    ])


def make_pairs(n: int, seed: int = 0, pathological: int = 4) -> list[Pair]:
    """``n`` labelled pairs (``pathological`` of them SymPy traps), deterministically."""
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for _ in range(n - pathological):
        bucket = rng.random()
        if bucket < 0.35:  # equal integers, sometimes with thousands separators
            v = rng.randint(0, 10**rng.randint(1, 7))
            pred = f"{v:,}" if v >= 1000 and rng.random() < 0.3 else str(v)
            pairs.append((_response(rng, pred), str(v), True, "integer"))
        elif bucket < 0.50:  # wrong integers
            v = rng.randint(0, 10**5)
            pairs.append((_response(rng, str(v + rng.randint(1, 50))), str(v), False, "wrong_integer"))
        elif bucket < 0.65:  # fractions vs decimals, either side
            q = Fraction(rng.randint(1, 40), rng.choice([2, 4, 5, 8, 10, 20, 25]))
            dec = _decimal(q) or str(float(q))
            frac = rf"\frac{{{q.numerator}}}{{{q.denominator}}}"
            wrong = rng.random() < 0.3
            shown = _decimal(q + Fraction(1, 10)) if wrong else dec
            if rng.random() < 0.5:
                pairs.append((_response(rng, shown), frac, not wrong, "fraction"))
            else:
                pairs.append((_response(rng, frac if not wrong else rf"\frac{{{q.numerator + 1}}}{{{q.denominator}}}"),
                              dec, not wrong, "fraction"))
        elif bucket < 0.75:
            pred, gold, label = _short_latex(rng)
            pairs.append((_response(rng, pred), gold, label, "short_latex"))
        elif bucket < 0.85:
            pred, gold, label = _variant(rng)
            pairs.append((_response(rng, pred), gold, label, "symbolic"))
        elif bucket < 0.93:
            pred, gold, label = _new_form(rng)
            pairs.append((_response(rng, pred), gold, label, "new_form"))
        else:
            response, gold, label = _real_output(rng)
            pairs.append((response, gold, label, REAL))
    for i in range(pathological):  # at random places, as they come in a real run
        trap = (_response(rng, PATHOLOGICAL[i % len(PATHOLOGICAL)]), "5", False, "pathological")
        pairs.insert(rng.randint(0, len(pairs)), trap)
    return pairs


def run_ours(pairs: list[Pair], workers: int, timeout_s: float) -> tuple[float, list, float]:
    """Wall time including worker start-up and shutdown, results, slowest sample."""
    from verl_ext_eval.math.grading import MathGrader

    start = time.perf_counter()
    with MathGrader(workers, timeout_s) as grader:
        results = grader.grade_many([(resp, gold) for resp, gold, _, _ in pairs])
    wall = time.perf_counter() - start
    return wall, results, max(r.seconds for r in results)


def run_math_verify(pairs: list[Pair]) -> tuple[list[bool], list[float]]:
    """The direct way: ``verify(parse(gold), parse(response))`` per pair, default timeouts; verdicts
    and per-pair seconds (one sequential loop, so the seconds of a subset add up to its wall time)."""
    from math_verify import parse, verify

    verdicts: list[bool] = []
    seconds: list[float] = []
    for resp, gold, _, _ in pairs:
        t = time.perf_counter()
        try:
            verdicts.append(bool(verify(parse(f"${gold}$"), parse(resp))))
        except Exception:  # noqa: BLE001 - count as wrong, as a reward function would
            verdicts.append(False)
        seconds.append(time.perf_counter() - t)
    return verdicts, seconds


def compare_pools(pairs: list[Pair], workers: int, timeout_s: float) -> None:
    """BoundedPool vs ``pebble.ProcessPool`` on the pairs our cheap path leaves to math-verify."""
    import multiprocessing

    from concurrent.futures import TimeoutError as FutureTimeout

    import pebble

    from verl_ext_eval.math import verifier
    from verl_ext_eval.math.extract import extract_answer, gold_answer
    from verl_ext_eval.math.grading import VERIFY_TARGET, WARM_UP_TARGET
    from verl_ext_eval.math.normalize import fast_verdict, rewrite_forms
    from verl_ext_eval.math.pool import BoundedPool

    tasks = []
    for resp, gold, _, _ in pairs:
        ans, g = extract_answer(resp).answer, gold_answer(gold)
        if ans and fast_verdict(g, ans) is None:
            tasks.append((rewrite_forms(g), rewrite_forms(ans)))
    tasks = list(dict.fromkeys(tasks))
    start = time.perf_counter()
    with BoundedPool(VERIFY_TARGET, workers, timeout_s, chunk_size=4, initializer=WARM_UP_TARGET) as pool:
        ours = pool.map(tasks)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    timeouts = 0
    with pebble.ProcessPool(max_workers=workers, initializer=verifier.warm_up,
                            context=multiprocessing.get_context("forkserver")) as ppool:
        futures = [ppool.schedule(verifier.verify_strings, args=t, timeout=timeout_s) for t in tasks]
        for f in futures:
            try:
                f.result()
            except (FutureTimeout, Exception):  # noqa: BLE001 - a timeout or a worker error
                timeouts += 1
    pebble_s = time.perf_counter() - start
    print(f"pools on {len(tasks)} math-verify tasks: BoundedPool {ours_s:.2f} s ({sum(r.timed_out for r in ours)} "
          f"timeouts), pebble.ProcessPool {pebble_s:.2f} s ({timeouts} timeouts/errors)")


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.grading", description=__doc__.split("\n\n")[0],
                                epilog="example: python -m bench.grading --n 5000 --workers 2 --timeout 5")
    p.add_argument("--n", type=int, default=5000, help="pairs (default 5000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="grader processes (default: CPUs)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-sample bound for grade_many, seconds")
    p.add_argument("--pathological", type=int, default=4, help="SymPy traps among the pairs (default 4)")
    p.add_argument("--compare-pools", action="store_true", help="also time BoundedPool vs pebble.ProcessPool")
    return p


def _accuracy(verdicts: list[bool], pairs: list[Pair]) -> float:
    return sum(v == label for v, (_, _, label, _) in zip(verdicts, pairs)) / max(1, len(pairs))


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    pairs = make_pairs(args.n, args.seed, args.pathological)
    simple = [p for p in pairs if p[3] in SIMPLE]
    simple_s, simple_results, _ = run_ours(simple, args.workers, args.timeout)
    real = [p for p in pairs if p[3] == REAL]
    real_s, _, _ = run_ours(real, args.workers, args.timeout)
    ours_s, results, ours_slow = run_ours(pairs, args.workers, args.timeout)
    ours = [r.correct for r in results]
    mv, mv_secs = run_math_verify(pairs)
    mv_s = sum(mv_secs)
    mv_simple_s = sum(t for t, p in zip(mv_secs, pairs) if p[3] in SIMPLE)
    mv_real_s = sum(t for t, p in zip(mv_secs, pairs) if p[3] == REAL)
    n = len(pairs)
    print(f"pairs: {n} ({len(simple)} simple forms, {args.pathological} pathological), workers: {args.workers}, "
          f"bound: {args.timeout:g} s, CPUs: {os.cpu_count()}")
    print(f"simple forms  grade_many {len(simple) / simple_s:9.1f} answers/s   math-verify {len(simple) / mv_simple_s:7.1f}"
          f" answers/s   speed-up {mv_simple_s / simple_s:5.1f}x")
    print(f"real-output   grade_many {len(real) / real_s:9.1f} answers/s   math-verify {len(real) / mv_real_s:7.1f}"
          f" answers/s   speed-up {mv_real_s / real_s:5.1f}x   ({len(real)} pairs, worker start-up included)")
    print(f"full mix      grade_many {n / ours_s:9.1f} answers/s   math-verify {n / mv_s:7.1f} answers/s   "
          f"speed-up {mv_s / ours_s:5.1f}x   (walls {ours_s:.2f} s vs {mv_s:.2f} s, worker start-up included)")
    print(f"slowest sample: grade_many {ours_slow:.2f} s (bound {args.timeout:g} s), math-verify {max(mv_secs):.2f} s")
    print(f"accuracy vs labels: grade_many {_accuracy(ours, pairs):.4f}, math-verify {_accuracy(mv, pairs):.4f}")
    for bucket in sorted({p[3] for p in pairs}):
        idx = [i for i, p in enumerate(pairs) if p[3] == bucket]
        sub = [pairs[i] for i in idx]
        print(f"  {bucket:14} {len(idx):5}  grade_many {_accuracy([ours[i] for i in idx], sub):.3f}  "
              f"math-verify {_accuracy([mv[i] for i in idx], sub):.3f}")
    cheap = sum(r.reason not in ("math_verify", "timeout") and not r.reason.startswith("error") for r in results)
    print(f"cheap path decided {cheap} of {n}; timeouts: {sum(r.timed_out for r in results)}; "
          f"methods: {dict(Counter(r.extract_method for r in results))}")
    wrong = [i for i in range(n) if ours[i] != pairs[i][2]]
    for i in wrong[:5]:
        resp, gold, label, bucket = pairs[i]
        print(f"  ours wrong: {bucket} gold={gold!r} label={label} reason={results[i].reason} "
              f"extracted={results[i].extracted!r}")
    if args.compare_pools:
        compare_pools(pairs, args.workers, args.timeout)
    if ours_slow > args.timeout + 1.0:
        print(f"error: the slowest sample took {ours_slow:.2f} s, over the {args.timeout:g} s bound", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
