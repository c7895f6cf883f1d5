"""TextCraft run summary: success overall and by crafting depth, steps, failures by reason.

Every rate comes with its ``n`` and a 95% Wilson interval (``*_ci95``), so a success rate on 15 or
200 episodes can be set beside published ones honestly. The plain rate keys keep their old float
form (``success_rate``, ``success_by_depth``) for the dashboards that read them.
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from verl_ext_eval.report import Section, mean_table, rate_table, wilson_interval


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarize(records: Sequence[dict], config: dict | None = None, elapsed_s: float | None = None) -> tuple[dict, list[Section]]:
    """``(summary dict, report sections)`` for ``records`` (one per episode)."""
    n = len(records)
    wins = [r for r in records if r.get("success")]
    failures = Counter(r.get("failure") for r in records if not r.get("success"))
    turns = sum(r.get("steps", 0) for r in records)
    invalid = sum(r.get("invalid_turns", 0) for r in records)
    depths = sorted({r.get("depth") for r in records}, key=lambda x: (x is None, x))
    by_depth = {str(d): (sum(bool(r.get("success")) for r in records if r.get("depth") == d),
                         sum(r.get("depth") == d for r in records)) for d in depths}
    summary = {
        "episodes": n,
        "success_rate": round(len(wins) / n, 4) if n else None,
        "success_rate_ci95": wilson_interval(len(wins), n),
        "successes": len(wins),
        "mean_steps": _mean([r.get("steps", 0) for r in records]),
        "mean_steps_success": _mean([r.get("steps", 0) for r in wins]),
        "invalid_turn_rate": round(invalid / turns, 4) if turns else None,
        "invalid_turn_rate_ci95": wilson_interval(invalid, turns),  # turns are not independent: a rough band
        "turns": turns,
        "mean_gen_tokens": _mean([r.get("gen_tokens", 0) for r in records]),
        "failures": dict(sorted(failures.items(), key=lambda kv: str(kv[0]))),
        "success_by_depth": {d: round(k / m, 4) for d, (k, m) in by_depth.items()},
        "success_by_depth_ci95": {d: wilson_interval(k, m) for d, (k, m) in by_depth.items()},
        "episodes_by_depth": {d: m for d, (_, m) in by_depth.items()},
    }
    prefill = [r["prefill_tokens"] for r in records if isinstance(r.get("prefill_tokens"), int)]
    if prefill:
        summary["mean_prefill_tokens"] = _mean(prefill)
    if elapsed_s is not None:
        summary["elapsed_s"] = round(elapsed_s, 2)
    if config is not None:
        summary["config"] = config
    sections = [
        rate_table(records, "depth", "success", title="Success by crafting depth"),
        mean_table(records, "depth", "steps", title="Steps by crafting depth"),
        Section(title="Failures by reason", columns=("reason", "episodes", "n", "share", "ci95_low", "ci95_high"),
                rows=tuple((reason, k, n, round(k / n, 4), *wilson_interval(k, n))
                           for reason, k in sorted(failures.items(), key=lambda kv: str(kv[0])))),
    ]
    return summary, sections
