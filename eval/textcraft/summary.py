"""TextCraft run summary: success overall and by crafting depth, steps, failures by reason."""
from __future__ import annotations

from collections import Counter
from typing import Sequence

from verl_ext_eval.report import Section, mean_table, rate_table


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarize(records: Sequence[dict], config: dict | None = None, elapsed_s: float | None = None) -> tuple[dict, list[Section]]:
    """``(summary dict, report sections)`` for ``records`` (one per episode)."""
    n = len(records)
    wins = [r for r in records if r.get("success")]
    failures = Counter(r.get("failure") for r in records if not r.get("success"))
    turns = sum(r.get("steps", 0) for r in records)
    summary = {
        "episodes": n,
        "success_rate": round(len(wins) / n, 4) if n else None,
        "successes": len(wins),
        "mean_steps": _mean([r.get("steps", 0) for r in records]),
        "mean_steps_success": _mean([r.get("steps", 0) for r in wins]),
        "invalid_turn_rate": round(sum(r.get("invalid_turns", 0) for r in records) / turns, 4) if turns else None,
        "mean_gen_tokens": _mean([r.get("gen_tokens", 0) for r in records]),
        "failures": dict(sorted(failures.items(), key=lambda kv: str(kv[0]))),
        "success_by_depth": {str(d): round(sum(bool(r.get("success")) for r in records if r.get("depth") == d)
                                           / sum(r.get("depth") == d for r in records), 4)
                             for d in sorted({r.get("depth") for r in records}, key=lambda x: (x is None, x))},
    }
    if elapsed_s is not None:
        summary["elapsed_s"] = round(elapsed_s, 2)
    if config is not None:
        summary["config"] = config
    sections = [
        rate_table(records, "depth", "success", title="Success by crafting depth"),
        mean_table(records, "depth", "steps", title="Steps by crafting depth"),
        Section(title="Failures by reason", columns=("reason", "episodes", "share"),
                rows=tuple((reason, k, round(k / n, 4)) for reason, k in sorted(failures.items(), key=lambda kv: str(kv[0])))),
    ]
    return summary, sections
