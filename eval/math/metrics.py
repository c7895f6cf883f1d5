"""Math eval metrics (pure): accuracy, format rate (each with its 95% Wilson interval), answer
reward, lengths, entropy, pass@k, and their breakdown by subject and level.

pass@k is the unbiased estimator of Chen et al. 2021 (Codex, eq. 1): with ``n`` samples of which
``c`` are correct, ``1 - C(n-c, k) / C(n, k)``, computed as a running product (no huge binomials).
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from verl_ext_eval.math.boxes import last_boxed
from verl_ext_eval.math.extract import THINK_CLOSE, THINK_OPEN, final_segment
from verl_ext_eval.report import wilson_interval


@dataclass(frozen=True)
class SampleScore:
    """One graded sample as the metrics see it."""

    problem_id: str
    correct: bool
    formatted: bool
    num_tokens: int | None = None
    entropy: float | None = None  # mean per-token entropy (nats), when the backend gives it
    subject: str | None = None
    level: str | None = None


def think_block_ok(response: str) -> bool:
    """At most one ``<think>``, exactly one ``</think>``, in that order (the opening tag may sit in
    the prompt, as Qwen3's template puts it there)."""
    opens, closes = response.count(THINK_OPEN), response.count(THINK_CLOSE)
    if closes != 1 or opens > 1:
        return False
    return opens == 0 or response.index(THINK_OPEN) < response.index(THINK_CLOSE)


def format_ok(response: str, expect_think: bool = False) -> bool:
    """Well formed: a well-formed think block when one is expected (and no stray tags when not:
    an empty ``<think></think>`` from a non-thinking template is fine), and a final ``\\boxed{}``
    after it."""
    has_tags = THINK_OPEN in response or THINK_CLOSE in response
    if (expect_think or has_tags) and not think_block_ok(response):
        return False
    segment = final_segment(response)
    return segment is not None and last_boxed(segment) is not None


def answer_reward(correct: bool, formatted: bool = True, format_penalty: float = 0.0) -> float:
    """1.0 for a correct answer, else 0.0; minus ``format_penalty`` when the response is not well
    formed (so with a penalty of 1, a badly formatted wrong answer scores -1)."""
    return (1.0 if correct else 0.0) - (0.0 if formatted else float(format_penalty))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with ``n`` samples, ``c`` correct (Chen et al. 2021)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}; sample at least k per problem")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def per_problem_counts(samples: Sequence[SampleScore]) -> dict[str, tuple[int, int]]:
    """``problem_id -> (n samples, c correct)``."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in samples:
        counts[s.problem_id][0] += 1
        counts[s.problem_id][1] += int(bool(s.correct))
    return {pid: (n, c) for pid, (n, c) in counts.items()}


def mean_pass_at_k(samples: Sequence[SampleScore], k: int) -> float | None:
    """pass@k averaged over problems; None when some problem has fewer than ``k`` samples."""
    counts = per_problem_counts(samples)
    if not counts or any(n < k for n, _ in counts.values()):
        return None
    return sum(pass_at_k(n, c, k) for n, c in counts.values()) / len(counts)


def metrics(samples: Sequence[SampleScore], ks: Sequence[int] = (1,), format_penalty: float = 0.0
            ) -> dict[str, Any]:
    """Headline numbers for a set of samples (None where undefined, e.g. no samples)."""
    n = len(samples)
    correct, formatted = sum(bool(s.correct) for s in samples), sum(bool(s.formatted) for s in samples)
    out: dict[str, Any] = {
        "n_samples": n,
        "n_problems": len({s.problem_id for s in samples}),
        "accuracy": _mean(float(s.correct) for s in samples),
        # 95% Wilson intervals over samples (n = n_samples); several samples of one problem are
        # not independent, so with samples_per_problem > 1 the band is too narrow
        "accuracy_ci95": wilson_interval(correct, n),
        "format_rate": _mean(float(s.formatted) for s in samples),
        "format_rate_ci95": wilson_interval(formatted, n),
        "mean_reward": _mean(answer_reward(s.correct, s.formatted, format_penalty) for s in samples),
        "mean_tokens": _mean(s.num_tokens for s in samples),
        "mean_entropy": _mean(s.entropy for s in samples),
    }
    for k in ks:
        out[f"pass@{k}"] = mean_pass_at_k(samples, k)
    return out


def breakdown(samples: Sequence[SampleScore], field: str, ks: Sequence[int] = (1,),
              format_penalty: float = 0.0) -> dict[str, dict[str, Any]]:
    """``metrics`` per value of ``field`` (``subject`` or ``level``; missing values as ``"?"``),
    sorted by group name."""
    groups: dict[str, list[SampleScore]] = defaultdict(list)
    for s in samples:
        value = getattr(s, field)
        groups["?" if value is None or value == "" else str(value)].append(s)
    return {g: metrics(groups[g], ks, format_penalty) for g in sorted(groups)}


def summarize(samples: Sequence[SampleScore], ks: Sequence[int] = (1,), format_penalty: float = 0.0
              ) -> dict[str, Any]:
    """Overall metrics plus ``by_subject`` and ``by_level`` breakdowns."""
    return {
        "overall": metrics(samples, ks, format_penalty),
        "by_subject": breakdown(samples, "subject", ks, format_penalty),
        "by_level": breakdown(samples, "level", ks, format_penalty),
    }
