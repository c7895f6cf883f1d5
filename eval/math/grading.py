"""Math answer grading: extraction, a cheap exact path in the parent, math-verify in worker processes.

``grade_many([(response, gold), ...])`` extracts each response's final answer
(``verl_ext_eval.math.extract``), decides what the cheap path is certain of (``verl_ext_eval.math.normalize``: equal
normalised strings, equal exact numbers, two different integers) without leaving the process, and
sends only the rest to math-verify (``parse`` + ``verify``, gold first) in a ``BoundedPool``:
every sample gets a hard wall-time bound that works from any thread and inside Ray workers (a
sample past the bound is wrong with reason ``timeout``; its worker is killed and replaced).

Both sides are first rewritten into forms math-verify equates (``normalize.rewrite_forms``: thousands
separators, mixed numbers, e-notation, equation lists, inequalities as intervals) and the workers
get the rewritten strings.

Documented decisions: ``x=3`` is accepted for gold ``3`` (and the reverse) but ``y=3`` is not
accepted for ``x=3``; ``(1,2)`` and ``[1,2]`` are different intervals; ``x > 2`` and ``(2, \\infty)``
match either way round; ``0.3333333`` matches ``1/3`` (6-digit rounding) but ``0.333`` does not;
``50\\%`` matches ``50``, and ``0.5`` too unless ``percent="strict"``; unit words after a number are
ignored (``5\\text{ cm}`` = ``5``); words compare case-insensitively (``\\text{Tuesday}`` = ``tuesday``).
An answer over several boxes is one list (``\\boxed{1}, \\boxed{2}`` is ``1, 2``): unordered against a
set or list gold, ordered against a tuple gold (``(2, 3)``), wrong against a single value; the gold
is read the same way. ``-x > -1`` is ``x < 1``; ``x = 5+5+1 = 11`` is ``x = 11``; ``1,22`` is ``1.22``
against a decimal gold and a list otherwise (``1,2`` is never ``12``; ``32, 349`` is no thousands).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from verl_ext_eval.math.extract import Extraction, extract_answer, gold_answer
from verl_ext_eval.math.normalize import PERCENT_POLICIES, fast_verdict, rewrite_forms
from verl_ext_eval.math.pool import BoundedPool, TaskResult

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEMORY_MB = 4096  # per worker address space; a SymPy blow-up fails that sample, not the host
VERIFY_TARGET = "verl_ext_eval.math.verifier:verify_strings"
WARM_UP_TARGET = "verl_ext_eval.math.verifier:warm_up"
GIVEN = "given"  # extract_method when the caller passes the answer itself (extract=False)
DEFAULT_PERCENT = "as_fraction"  # 50\% = 0.5; "strict": a percent sign is a unit (50\% = 50 only)


class GradingOptionError(ValueError):
    """A grader setting out of range (names the setting and what it accepts)."""


@dataclass(frozen=True)
class GradeResult:
    """One graded sample. ``reason`` says how the verdict was reached: ``exact`` / ``numeric``
    / ``list`` / ``interval`` / ``text`` / ``choice`` (cheap path), ``math_verify``, ``no_answer`` (nothing extracted), ``unclosed_think``,
    ``empty_answer``, ``no_gold``, ``timeout``, or ``error: ...``."""

    correct: bool
    reason: str
    extracted: str | None
    extract_method: str
    timed_out: bool = False
    seconds: float = 0.0


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _prepare(response: str, gold: str, extract: bool) -> tuple[Extraction, str]:
    ext = extract_answer(response) if extract else Extraction(response.strip(), GIVEN)
    return ext, gold_answer(gold)


class MathGrader:
    """Holds the worker pool between calls (a runner grades as it goes). Workers start on the
    first pair the cheap path cannot decide. Use as a context manager or call ``close()``; one
    thread at a time per grader (``grade_many`` without a grader is safe from any thread)."""

    def __init__(self, workers: int | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, *,
                 memory_mb: int | None = DEFAULT_MEMORY_MB, chunk_size: int = 4,
                 percent: str = DEFAULT_PERCENT):
        if timeout_s <= 0:
            raise GradingOptionError(f"grading.timeout_s must be > 0, got {timeout_s}")
        if percent not in PERCENT_POLICIES:
            raise GradingOptionError(f"grading.percent must be one of {'|'.join(PERCENT_POLICIES)}, got {percent!r}")
        self.workers = workers or default_workers()
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.chunk_size = chunk_size
        self.percent = percent
        self._pool: BoundedPool | None = None

    def _get_pool(self) -> BoundedPool:
        if self._pool is None:  # the parent never imports SymPy: only workers do
            self._pool = BoundedPool(VERIFY_TARGET, self.workers, self.timeout_s, chunk_size=self.chunk_size,
                                     memory_mb=self.memory_mb, initializer=WARM_UP_TARGET)
        return self._pool

    @property
    def workers_replaced(self) -> int:
        return 0 if self._pool is None else self._pool.replaced

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def __enter__(self) -> "MathGrader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def grade_many(self, pairs: Sequence[tuple[str, str]], *, extract: bool = True,
                   on_result: Callable[[int, GradeResult], None] | None = None) -> list[GradeResult]:
        """Grade ``(response, gold)`` pairs; results in input order. ``gold`` may be a bare answer,
        a boxed answer or a full MATH/GSM8K solution. ``extract=False`` takes each response as
        the answer itself."""
        results: list[GradeResult | None] = [None] * len(pairs)
        # identical (gold, answer) pairs (many samples of one problem) go to math-verify once
        slow: dict[tuple[str, str], list[int]] = {}
        extractions: list[Extraction] = []

        def done(i: int, r: GradeResult) -> None:
            results[i] = r
            if on_result is not None:
                on_result(i, r)

        for i, (response, gold) in enumerate(pairs):
            start = time.perf_counter()
            ext, gold_value = _prepare(response, gold, extract)
            extractions.append(ext)
            if ext.answer is None or not ext.answer.strip():
                reason = "unclosed_think" if ext.method == "unclosed_think" else (
                    "no_answer" if ext.answer is None else "empty_answer")
                done(i, GradeResult(False, reason, ext.answer, ext.method, seconds=time.perf_counter() - start))
                continue
            if not gold_value:
                done(i, GradeResult(False, "no_gold", ext.answer, ext.method))
                continue
            verdict = fast_verdict(gold_value, ext.answer, self.percent)
            if verdict is not None:
                done(i, GradeResult(verdict[0], verdict[1], ext.answer, ext.method,
                                    seconds=time.perf_counter() - start))
                continue
            slow.setdefault((rewrite_forms(gold_value), rewrite_forms(ext.answer), self.percent), []).append(i)
        if slow:
            keys = list(slow)

            def collect(k: int, tr: TaskResult) -> None:
                for i in slow[keys[k]]:
                    ext = extractions[i]
                    if tr.error is None:
                        r = GradeResult(bool(tr.value), "math_verify", ext.answer, ext.method, seconds=tr.seconds)
                    elif tr.timed_out:
                        r = GradeResult(False, "timeout", ext.answer, ext.method, True, tr.seconds)
                    else:
                        r = GradeResult(False, f"error: {tr.error}", ext.answer, ext.method, seconds=tr.seconds)
                    done(i, r)

            self._get_pool().map(keys, on_result=collect)
        return results  # type: ignore[return-value]


def grade_many(pairs: Sequence[tuple[str, str]], workers: int | None = None,
               timeout_s: float = DEFAULT_TIMEOUT_S, *, extract: bool = True,
               grader: MathGrader | None = None, percent: str = DEFAULT_PERCENT) -> list[GradeResult]:
    """Grade ``(response, gold)`` pairs in parallel over processes, each bounded by ``timeout_s``
    seconds of wall time. Pass ``grader`` to reuse a running pool across calls (its ``percent``
    policy then applies)."""
    if grader is not None:
        return grader.grade_many(pairs, extract=extract)
    with MathGrader(workers, timeout_s, percent=percent) as g:
        return g.grade_many(pairs, extract=extract)


def grade(response: str, gold: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> GradeResult:
    """One sample (starts a one-worker pool only if the cheap path cannot decide)."""
    return grade_many([(response, gold)], workers=1, timeout_s=timeout_s)[0]
