"""The game's exact strings, rewards, determinism and isolation between episodes."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from verl_ext_eval.textcraft.env import EnvStateError, TaskError, TextCraftEnv, make_task, task_at
from verl_ext_eval.textcraft.recipes import load_recipe_book

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture()
def env():
    e = TextCraftEnv()
    e.reset(make_task("minecraft:dark_oak_sign", seed=3))
    return e


def obs(env, action):
    return env.step(action).observation


def test_reset_observation_exact_for_a_single_recipe_goal():
    task = make_task("acacia planks", seed=0)
    assert task.observation == "Crafting commands:\ncraft 4 acacia planks using 1 acacia logs\n\nGoal: craft acacia planks."
    assert TextCraftEnv().reset(task) == task.observation


def test_reset_observation_tree_plus_distractors():
    book = load_recipe_book()
    task = make_task("minecraft:dark_oak_sign", seed=7)
    head, goal = task.observation.split("\n\n")
    assert goal == "Goal: craft dark oak sign."
    lines = head.split("\n")
    assert lines[0] == "Crafting commands:"
    shown = lines[1:]
    tree = {r.command for r in book.tree("minecraft:dark_oak_sign")}
    assert tree <= set(shown) and len(shown) == len(set(shown))
    distractors = set(shown) - tree
    assert 1 <= len(distractors) <= 10
    ingredients = {i.name for r in book.tree("minecraft:dark_oak_sign") for i in r.inputs}
    for d in distractors:
        recipe = next(r for r in book.recipes if r.command == d)
        assert {i.name for i in recipe.inputs} & ingredients
    assert task.depth == 2


def test_goal_lists_by_index():
    book = load_recipe_book()
    assert task_at("adapt", 0).goal == book.goal_list("adapt")[0]
    assert task_at("adapt", 419 + 5).goal == book.goal_list("adapt")[5]
    assert task_at("agentgym", 543).goal == book.goal_list("agentgym")[543]
    assert task_at("adapt", 12).seed == 12 and task_at("adapt", 12, seed=99).seed == 99
    with pytest.raises(TaskError, match="adapt, agentgym"):
        task_at("alfworld", 0)
    with pytest.raises(TaskError, match="not a craftable item"):
        make_task("oak logs")


def test_deterministic_under_seed_and_across_hash_seeds():
    a, b = make_task("minecraft:white_banner", seed=5), make_task("minecraft:white_banner", seed=5)
    assert a == b
    orders = {make_task("minecraft:white_banner", seed=s).commands for s in range(5)}
    assert len(orders) > 1  # the seed shuffles
    code = ("from verl_ext_eval.textcraft.env import task_at; import hashlib; "
            "print(hashlib.sha1(''.join(task_at('adapt', i).observation for i in range(0, 419, 7)).encode()).hexdigest())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": str(h), "PATH": ""}, cwd=ROOT).stdout for h in (1, 2)}
    assert len(outs) == 1


def test_get(env):
    assert obs(env, "get 1 dark oak logs") == "Got 1 dark oak logs"
    assert obs(env, "get 01 oak logs") == "Got 1 oak logs"  # number normalised, name echoed
    assert obs(env, "get 2 stick") == "Could not find stick"  # craftable
    assert obs(env, "get 2 planks") == "Could not find planks"  # a tag
    assert obs(env, "get 3 unobtainium") == "Could not find unobtainium"  # unknown
    assert obs(env, "get 0 bamboo") == "Got 0 bamboo"
    assert env.inventory == {"minecraft:dark_oak_logs": 1, "minecraft:oak_logs": 1}


def test_inventory_strings(env):
    assert obs(env, "inventory") == "Inventory: You are not carrying anything."
    env.step("get 1 dark oak logs")
    env.step("get 3 bamboo")
    assert obs(env, "inventory") == "Inventory: [dark oak logs] (1) [bamboo] (3) "
    env.step("craft 4 dark oak planks using 1 dark oak logs")  # logs reach 0 and leave
    assert obs(env, "inventory") == "Inventory: [bamboo] (3) [dark oak planks] (4) "


def test_craft_success_and_tags(env):
    env.step("get 2 oak logs")
    assert obs(env, "craft 4 oak planks using 1 oak logs") == "Crafted 4 minecraft:oak_planks"
    # any planks satisfy "planks"; the output count is the recipe's, whatever is typed
    assert obs(env, "craft 99 stick using 2 oak planks") == "Crafted 4 minecraft:stick"
    env.step("craft 4 oak planks using 1 oak logs")
    env.step("get 1 dark oak logs")
    env.step("craft 4 dark oak planks using 1 dark oak logs")
    assert obs(env, "craft 4 stick using 2 dark oak planks") == "Crafted 4 minecraft:stick"
    assert env.inventory["minecraft:stick"] == 8


def test_craft_failures(env):
    assert obs(env, "craft 4 stick using 2 oak planks") == "Could not find enough items to craft minecraft:stick"
    env.step("get 1 oak logs")
    env.step("craft 4 oak planks using 1 oak logs")
    # the tag name itself is not an item anyone holds
    assert obs(env, "craft 4 stick using 2 planks") == "Could not find enough items to craft minecraft:stick"
    assert obs(env, "craft 4 stick using 3 oak planks") == (
        "Could not find a valid recipe for ItemTagWithCount(item_tag=ItemTag(tag=None, "
        "item_id='minecraft:stick'), count=4)")
    assert obs(env, "craft stick using 1 oak planks") == (
        "Could not find a valid recipe for ItemTagWithCount(item_tag=ItemTag(tag=None, "
        "item_id='minecraft:stick'), count=1)")
    assert obs(env, "craft 4 planks using 1 oak planks") == (
        "Could not find a valid recipe for ItemTagWithCount(item_tag=ItemTag(tag='minecraft:planks', "
        "item_id=None), count=4)")
    assert obs(env, "craft 4 stick using planks") == "Wrong item format: planks"
    assert obs(env, "craft 4 stick using 2 oak planks, oops") == "Wrong item format: oops"
    assert env.inventory == {"minecraft:oak_planks": 4}  # failures change nothing


def test_unknown_and_case_sensitive_actions(env):
    assert obs(env, "look around") == "Could not execute look around"
    assert obs(env, "Inventory") == "Could not execute Inventory"
    assert obs(env, "get oak logs") == "Could not execute get oak logs"
    assert obs(env, "") == "Could not execute "
    assert obs(env, "inventory please").startswith("Inventory: ")  # prefix-anchored


def test_reward_and_done_only_on_goal(env):
    for a in ("get 2 dark oak logs", "craft 4 dark oak planks using 1 dark oak logs",
              "craft 4 dark oak planks using 1 dark oak logs", "craft 4 stick using 2 dark oak planks"):
        r = env.step(a)
        assert (r.reward, r.done) == (0.0, False)
    r = env.step("craft 3 dark oak sign using 6 dark oak planks, 1 stick")
    assert (r.observation, r.reward, r.done) == ("Crafted 3 minecraft:dark_oak_sign", 1.0, True)
    with pytest.raises(EnvStateError):
        env.step("inventory")
    with pytest.raises(EnvStateError):
        TextCraftEnv().step("inventory")


def test_no_state_leak_across_100_resets():
    book = load_recipe_book()
    counts = {k: len(v) for k, v in book.by_output.items()}
    env = TextCraftEnv(book)
    first = {i: task_at("adapt", i).observation for i in range(0, 100, 9)}
    for i in range(100):
        o = env.reset(task_at("adapt", i))
        if i in first:
            assert o == first[i]
        assert env.inventory == {}
        env.step("get 5 oak logs")
        env.step("craft 4 oak planks using 1 oak logs")
    assert env.reset(task_at("adapt", 0)) == first[0]
    assert {k: len(v) for k, v in book.by_output.items()} == counts
    assert len(book.by_output["minecraft:dark_oak_sign"]) == 1
    assert make_task("minecraft:dark_oak_sign", seed=1).observation.count("\n") <= 11 + 10 + 2


def test_thousands_of_steps_per_second():
    env = TextCraftEnv()
    actions = ["get 1 dark oak logs", "craft 4 dark oak planks using 1 dark oak logs", "inventory",
               "craft 4 stick using 2 dark oak planks", "get 1 stick", "look"]
    env.reset(make_task("minecraft:dark_oak_sign"))
    start = time.perf_counter()
    n = 0
    while time.perf_counter() - start < 0.3:
        for a in actions:
            env.step(a)
        n += len(actions)
    assert n / (time.perf_counter() - start) > 2000
