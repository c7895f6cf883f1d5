"""The demo's before/after table prints every rate with its 95% interval and n."""
from verl_ext.apps.demo import table
from verl_ext_eval.report import wilson_interval


def _tc(wins_by_depth: dict[str, tuple[int, int]]) -> dict:
    wins = sum(k for k, _ in wins_by_depth.values())
    n = sum(m for _, m in wins_by_depth.values())
    return {"episodes": n, "success_rate": wins / n, "success_rate_ci95": wilson_interval(wins, n),
            "success_by_depth": {d: k / m for d, (k, m) in wins_by_depth.items()},
            "success_by_depth_ci95": {d: wilson_interval(k, m) for d, (k, m) in wins_by_depth.items()},
            "episodes_by_depth": {d: m for d, (_, m) in wins_by_depth.items()}}


def _math(correct: int, formatted: int, n: int) -> dict:
    return {"overall": {"accuracy": correct / n, "accuracy_ci95": wilson_interval(correct, n), "n_samples": n,
                        "format_rate": formatted / n, "format_rate_ci95": wilson_interval(formatted, n)}}


def test_table_has_intervals_and_counts():
    before = {"textcraft": _tc({"1": (0, 10), "2": (0, 5)}), "math": _math(0, 0, 24)}
    after = {"textcraft": _tc({"1": (4, 10), "2": (0, 5)}), "math": _math(3, 24, 24)}
    text = table(before, after)
    lo, hi = wilson_interval(4, 15)
    assert f"| TextCraft success | 0.00 [0.00, {wilson_interval(0, 15)[1]:.2f}] (n=15) | 0.27 [{lo:.2f}, {hi:.2f}] (n=15) |" in text
    assert "|   depth 1 | 0.00 [0.00, " in text and "(n=10) | 0.40 [" in text
    assert "| math accuracy | 0.00 [0.00, " in text and "0.12 [" in text and "(n=24)" in text
    assert "| math format rate | 0.00 [0.00, " in text and "| 1.00 [" in text
