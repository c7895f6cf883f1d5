"""The runner end to end: the expert through the Backend interface (100%), resume after a crash,
a torn results line, settings that would mix results, CLI errors, and the hf backend on a tiny model."""
from __future__ import annotations

import json

import pytest

from verl_ext_eval.textcraft.agent import ExpertBackend
from verl_ext_eval.textcraft.run import RunConfig, RunConfigError, evaluate, main


def cfg_for(tmp_path, **kw) -> RunConfig:
    cfg = RunConfig(out_dir=str(tmp_path / "run"), progress=False)
    cfg.backend.name = "expert"
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def lines(tmp_path):
    return [json.loads(x) for x in (tmp_path / "run" / "episodes.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["agentgym", "adapt"])
def test_expert_backend_solves_every_adapt_goal(tmp_path, fmt):
    # 50 rounds: netherite block needs 48 actions under the game's batch rules (see test_textcraft_expert)
    summary = evaluate(cfg_for(tmp_path, episodes=419, max_rounds=50, format=fmt, concurrency=32))
    assert summary["episodes"] == 419 and summary["success_rate"] == 1.0 and summary["failures"] == {}
    assert summary["success_by_depth"] == {"2": 1.0, "3": 1.0, "4": 1.0}
    records = lines(tmp_path)
    assert len(records) == 419 and len({r["key"] for r in records}) == 419
    out = tmp_path / "run"
    assert {"summary.json", "report.md", "run_config.json"} <= {p.name for p in out.iterdir()}
    assert any(p.suffix == ".png" for p in out.iterdir())
    assert "Success by crafting depth" in (out / "report.md").read_text()


def test_default_step_limit_fails_only_the_two_long_goals(tmp_path):
    summary = evaluate(cfg_for(tmp_path, episodes=419, save_messages=False))
    failed = {r["goal"] for r in lines(tmp_path) if not r["success"]}
    assert failed == {"minecraft:anvil", "minecraft:netherite_block"}
    assert summary["failures"] == {"step_limit": 2}
    assert "messages" not in lines(tmp_path)[0]


class Crashing(ExpertBackend):
    """The expert, until the n-th request: then the 'server' dies."""

    def __init__(self, n: int):
        super().__init__("agentgym")
        self.n, self.calls = n, 0

    async def chat(self, messages, params):
        self.calls += 1
        if self.calls > self.n:
            raise ConnectionError("server died")
        return await super().chat(messages, params)


def test_resume_after_a_crash_and_a_torn_line(tmp_path):
    cfg = cfg_for(tmp_path, episodes=40, concurrency=4)
    with pytest.raises(ConnectionError):
        evaluate(cfg, backend=Crashing(60))
    first = lines(tmp_path)
    assert 0 < len(first) < 40
    with open(tmp_path / "run" / "episodes.jsonl", "a") as f:
        f.write('{"key": "adapt:39:39", "succ')  # killed mid-write
    summary = evaluate(cfg)
    records = lines(tmp_path)
    assert summary["episodes"] == 40 and summary["played_this_run"] == 40 - len(first)
    assert len(records) == 40 and len({r["key"] for r in records}) == 40  # no repeats, no losses
    assert records[: len(first)] == first
    again = evaluate(cfg)
    assert again["played_this_run"] == 0 and len(lines(tmp_path)) == 40


def test_refuses_to_mix_results_of_other_settings(tmp_path):
    evaluate(cfg_for(tmp_path, episodes=2))
    with pytest.raises(RunConfigError, match="format: before 'agentgym', now 'adapt'"):
        evaluate(cfg_for(tmp_path, episodes=2, format="adapt"))
    assert evaluate(cfg_for(tmp_path, episodes=3))["played_this_run"] == 1  # more episodes: fine


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["backend.name=expert", "episodes=3", "goal_list=agentgym", "format=adapt", "progress=false",
                 f"out_dir={out}"]) == 0
    assert '"success_rate": 1.0' in capsys.readouterr().out
    assert [json.loads(x)["key"] for x in (out / "episodes.jsonl").read_text().splitlines()] == [
        "agentgym:0:0", "agentgym:1:1", "agentgym:2:2"]
    assert main(["episodes=3", "episodes=4"]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["backend.name=hf", "format=react", f"out_dir={out}-2"]) == 2
    err = capsys.readouterr().err
    assert "format='react'" in err and "backend.model_path" in err
    assert main(["goals=[dark oak sign,stick]", "backend.name=expert", "prompt_style=turn", "progress=false",
                 f"out_dir={out}-3"]) == 0
    assert '"success_rate": 1.0' in capsys.readouterr().out
    assert main(["prompt_style=chat", "backend.name=expert", f"out_dir={out}-4"]) == 2
    assert "prompt_style='chat'" in capsys.readouterr().err


@pytest.mark.slow
def test_hf_backend_on_tiny_model_writes_records_and_resumes(tmp_path, tiny_model_dir):
    args = ["backend.name=hf", f"backend.model_path={tiny_model_dir}", "episodes=2", "max_rounds=2",
            "sampling.max_new_tokens=8", "concurrency=2", "progress=false", f"out_dir={tmp_path / 'hf'}"]
    assert main(args) == 0
    records = [json.loads(x) for x in (tmp_path / "hf" / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 2 and not any(r["success"] for r in records)
    assert all(r["steps"] == 2 and r["gen_tokens"] > 0 and r["failure"] in ("step_limit", "unparseable")
               for r in records)
    summary = json.loads((tmp_path / "hf" / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["success_rate"] == 0.0
    assert main(args) == 0
    assert json.loads((tmp_path / "hf" / "summary.json").read_text())["played_this_run"] == 0
