"""TextCraft summaries carry n and 95% Wilson intervals; the runner's live progress counts turns."""
from __future__ import annotations

import asyncio

import pytest

from verl_ext_eval.backends.base import Generation
from verl_ext_eval.textcraft.agent import ExpertBackend
from verl_ext_eval.textcraft.run import EpisodeProgress, RunConfig, build_tasks, run_episodes
from verl_ext_eval.textcraft.summary import summarize


def _record(depth: int, success: bool, steps: int = 4, invalid: int = 0) -> dict:
    return {"depth": depth, "success": success, "steps": steps, "invalid_turns": invalid, "gen_tokens": 10,
            "failure": None if success else "step_limit"}


def test_every_rate_has_n_and_a_wilson_interval():
    records = [_record(2, True)] * 3 + [_record(2, False, invalid=2)] * 2 + [_record(3, False)] * 5
    summary, sections = summarize(records)
    assert summary["success_rate"] == 0.3 and summary["episodes"] == 10
    assert summary["success_rate_ci95"] == pytest.approx((0.1078, 0.6032), abs=1e-4)  # Wilson 3/10
    assert summary["success_by_depth"] == {"2": 0.6, "3": 0.0}
    assert summary["episodes_by_depth"] == {"2": 5, "3": 5}
    assert summary["success_by_depth_ci95"]["2"] == pytest.approx((0.2307, 0.8824), abs=1e-4)  # 3/5
    assert summary["success_by_depth_ci95"]["3"][0] == 0.0 and summary["success_by_depth_ci95"]["3"][1] > 0.4
    assert summary["turns"] == 40 and summary["invalid_turn_rate"] == 0.1
    assert summary["invalid_turn_rate_ci95"][0] < 0.1 < summary["invalid_turn_rate_ci95"][1]
    failures = next(s for s in sections if s.title == "Failures by reason")
    assert failures.columns[-3:] == ("share", "ci95_low", "ci95_high")
    assert failures.rows[0][:4] == ("step_limit", 7, 10, 0.7)


def test_empty_summary_has_no_interval():
    summary, _ = summarize([])
    assert summary["success_rate"] is None and summary["success_rate_ci95"] is None


def test_progress_counts_episodes_turns_and_tokens():
    cfg = RunConfig(episodes=3, concurrency=3, progress=False, save_messages=False)
    live, records = EpisodeProgress(), []

    class Sink(list):
        def append(self, r):
            super().append(r)

    sink = Sink()
    asyncio.run(run_episodes(cfg, ExpertBackend(), build_tasks(cfg), sink, live.tick, live.turn))
    assert live.episodes == 3 and live.wins == 3
    assert live.turns == sum(r["steps"] for r in sink) and live.tokens == sum(r["gen_tokens"] for r in sink)
    post = live.postfix()
    assert post["turns"] == str(live.turns) and float(post["tok/s"]) > 0 and post["success"] == "1.00"
    live.turn(Generation(text="x", num_tokens=7, finish_reason="stop"))
    assert live.tokens == sum(r["gen_tokens"] for r in sink) + 7
