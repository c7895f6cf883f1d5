"""Expert trajectories -> Parquet splits: schema, split by goal, atomic outputs."""
from __future__ import annotations

import json

import pyarrow.parquet as pq

from verl_ext_eval.textcraft.agent import apply_turn
from verl_ext_eval.textcraft.data import expert_trajectory, main, split_goals
from verl_ext_eval.textcraft.env import TextCraftEnv, make_task
from verl_ext_eval.textcraft.formats import get_format


def test_cli_writes_disjoint_splits(tmp_path, capsys):
    out = tmp_path / "tc"
    assert main(["--out", str(out), "--format", "agentgym", "--test-ratio", "0.2", "--seed", "0"]) == 0
    train, test = (pq.read_table(out / f"{n}.parquet").to_pylist() for n in ("train", "test"))
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["skipped_over_max_rounds"]) == {"minecraft:anvil", "minecraft:netherite_block"}
    assert len(train) + len(test) == 544 - 2
    assert not {r["goal"] for r in train} & {r["goal"] for r in test}
    assert abs(len({r["goal"] for r in test}) - round(0.2 * 544)) <= 2
    assert summary["splits"]["train"]["rows"] == len(train)
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "test.parquet", "train.parquet"]  # no temp files
    row = train[0]
    roles = [m["role"] for m in row["messages"]]
    assert roles[:2] == ["system", "user"] and roles[-1] == "assistant"
    assert all(a != b for a, b in zip(roles[1:], roles[2:]))  # user/assistant alternate
    assert row["messages"][1]["content"].startswith("Crafting commands:\n")
    assert row["num_turns"] == roles.count("assistant") <= 30
    assert row["data_source"] == "textcraft_expert" and row["format"] == "agentgym"
    # replaying the assistant turns through the runner's parser crafts the goal
    env = TextCraftEnv()
    env.reset(make_task(row["goal"], row["seed"]))
    results = [apply_turn(env, get_format("agentgym"), m["content"]) for m in row["messages"] if m["role"] == "assistant"]
    assert results[-1].done and all(r.parsed for r in results)
    assert "summary" not in capsys.readouterr().err


def test_cli_is_deterministic_and_validates(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert main(["--out", str(out), "--format", "adapt", "--goal-list", "adapt", "--test-ratio", "0.5", "--seed", "3"]) == 0
    assert pq.read_table(a / "test.parquet").equals(pq.read_table(b / "test.parquet"))
    rows = pq.read_table(a / "train.parquet").to_pylist()
    assert rows[0]["messages"][2]["content"].startswith("> think: ")
    assert rows[0]["messages"][3]["content"] == "OK."
    assert main(["--out", str(tmp_path / "c"), "--test-ratio", "1.5"]) == 2


def test_split_goals_is_stable_and_disjoint():
    goals = [f"g{i}" for i in range(50)]
    train, test = split_goals(goals, 0.2, seed=1)
    assert len(test) == 10 and not set(train) & set(test) and set(train) | set(test) == set(goals)
    assert split_goals(list(reversed(goals)), 0.2, seed=1) == (train, test)
    assert split_goals(goals, 0.2, seed=2) != (train, test)


def test_expert_trajectory_messages_alternate():
    t = expert_trajectory(make_task("minecraft:dark_oak_sign", seed=2), get_format("agentgym"))
    contents = [m["content"] for m in t.messages]
    assert contents[2].startswith("Thought:\nTo craft dark oak sign, I need 6 dark oak planks, 1 stick.")
    assert contents[3] == "Got 2 dark oak logs"
    assert contents[-1].endswith("Action:\ncraft 3 dark oak sign using 6 dark oak planks, 1 stick")


def test_turn_prompt_style_rows(tmp_path):
    out = tmp_path / "turn"
    assert main(["--out", str(out), "--goal-list", "adapt", "--test-ratio", "0.1", "--prompt-style", "turn"]) == 0
    row = pq.read_table(out / "test.parquet").to_pylist()[0]
    roles = [m["role"] for m in row["messages"]]
    assert roles[:3] == ["user", "assistant", "user"] and row["messages"][1]["loss"] is False
    assert all(m["loss"] is None for m in row["messages"][2:])
    assert row["num_turns"] == roles.count("assistant") - 1
