"""The recipe book: rules on small in-code recipe sets, and the published numbers on the real files."""
from __future__ import annotations

from collections import Counter

import pytest

from verl_ext_eval.textcraft.recipes import (
    RecipeError,
    build_recipe_book,
    id_to_name,
    load_recipe_book,
    name_to_id,
)


def shaped(out, pattern, key, count=1, group=None):
    d = {"type": "minecraft:crafting_shaped", "pattern": pattern, "key": key,
         "result": {"item": out, "count": count}}
    if group:
        d["group"] = group
    return d


def shapeless(out, ingredients, count=1, group=None):
    d = {"type": "minecraft:crafting_shapeless", "ingredients": ingredients, "result": {"item": out, "count": count}}
    if group:
        d["group"] = group
    return d


def files(*recipes):
    return [(f"{i:03d}.json", r) for i, r in enumerate(recipes)]


def test_shaped_counts_key_characters_and_shapeless_sums_repeats():
    book = build_recipe_book(files(
        shaped("minecraft:chest", ["###", "# #", "###"], {"#": {"item": "minecraft:oak_planks"}}),
        shapeless("minecraft:book", [{"item": "minecraft:paper"}, {"item": "minecraft:paper"},
                                     {"item": "minecraft:paper"}, {"item": "minecraft:leather"}]),
    ))
    assert book.by_output["minecraft:chest"][0].command == "craft 1 chest using 8 oak planks"
    assert book.by_output["minecraft:book"][0].command == "craft 1 book using 3 paper, 1 leather"


def test_list_ingredient_takes_first_alternative_and_other_types_are_dropped():
    book = build_recipe_book(files(
        shapeless("minecraft:x", [[{"item": "minecraft:a"}, {"item": "minecraft:b"}]]),
        {"type": "minecraft:smelting", "ingredient": {"item": "minecraft:sand"}, "result": "minecraft:glass"},
        {"type": "minecraft:crafting_special_mapcloning"},
    ))
    assert [r.command for r in book.recipes] == ["craft 1 x using 1 a"]
    assert "minecraft:glass" not in book.by_output


def test_block_unpacking_and_cycles_are_skipped_in_file_order():
    book = build_recipe_book(files(
        shaped("minecraft:iron_block", ["###", "###", "###"], {"#": {"item": "minecraft:iron_ingot"}}),
        shapeless("minecraft:iron_ingot", [{"item": "minecraft:iron_block"}], count=9),  # un-blocking
        shaped("minecraft:iron_ingot", ["###", "###", "###"], {"#": {"item": "minecraft:iron_nugget"}}),
        shapeless("minecraft:iron_nugget", [{"item": "minecraft:iron_ingot"}], count=9),  # closes a cycle
    ))
    assert [r.command for r in book.recipes] == [
        "craft 1 iron block using 9 iron ingot", "craft 1 iron ingot using 9 iron nugget"]
    # the skipped outputs are still known items: a nugget can be fetched
    assert "minecraft:iron_nugget" in book.items and not book.is_craftable("minecraft:iron_nugget")
    assert book.depth == {"minecraft:iron_block": 2, "minecraft:iron_ingot": 1}


def test_groups_become_tags_and_memberless_tags_become_items():
    book = build_recipe_book(files(
        shapeless("minecraft:oak_planks", [{"tag": "minecraft:oak_logs"}], count=4, group="planks"),
        shaped("minecraft:stick", ["#", "#"], {"#": {"tag": "minecraft:planks"}}, count=4, group="sticks"),
    ))
    stick = book.by_output["minecraft:stick"][0]
    assert stick.inputs[0].is_tag and stick.inputs[0].name == "minecraft:planks"
    assert book.item_tag["minecraft:oak_planks"] == "minecraft:planks"
    # oak_logs has no craftable member: it is a plain (gettable) item now
    planks = book.by_output["minecraft:oak_planks"][0]
    assert not planks.inputs[0].is_tag
    assert "minecraft:oak_logs" in book.items and "minecraft:oak_logs" not in book.tags
    assert {"minecraft:planks", "minecraft:sticks"} <= book.tags
    assert book.depth["minecraft:stick"] == 2  # through any planks recipe


def test_bad_files_name_the_file():
    with pytest.raises(RecipeError, match="007.json"):
        build_recipe_book([("007.json", shapeless("minecraft:x", [{"nbt": 1}]))])
    with pytest.raises(RecipeError, match="008.json.*result"):
        build_recipe_book([("008.json", {"type": "minecraft:crafting_shapeless", "ingredients": []})])


def test_names():
    assert id_to_name("minecraft:dark_oak_planks") == "dark oak planks"
    assert name_to_id("dark oak planks") == "minecraft:dark_oak_planks"


def test_real_book_numbers():
    book = load_recipe_book()
    assert len(book.by_output) == 544
    assert Counter(book.depth.values()) == {1: 125, 2: 291, 3: 117, 4: 11}
    adapt, agentgym = book.goal_list("adapt"), book.goal_list("agentgym")
    assert len(adapt) == 419 and len(agentgym) == 544
    assert [book.depth[g] for g in adapt] == sorted((book.depth[g] for g in adapt), reverse=True)
    assert [book.depth[g] for g in agentgym] == sorted(book.depth[g] for g in agentgym)
    assert min(book.depth[g] for g in adapt) == 2
    # only planks and wool remain generic ingredients
    assert {i.name for r in book.recipes for i in r.inputs if i.is_tag} == {"minecraft:planks", "minecraft:wool"}
    with pytest.raises(ValueError, match="adapt, agentgym"):
        book.goal_list("webshop")


def test_real_book_is_immutable_and_tree_is_pure():
    book = load_recipe_book()
    before = {k: len(v) for k, v in book.by_output.items()}
    tree = book.tree("minecraft:dark_oak_sign")
    assert {r.command for r in tree} >= {
        "craft 3 dark oak sign using 6 dark oak planks, 1 stick",
        "craft 4 stick using 2 planks",
        "craft 4 dark oak planks using 1 dark oak logs",
        "craft 4 oak planks using 1 oak logs",
    }
    for _ in range(5):
        assert book.tree("minecraft:dark_oak_sign") == tree
    assert {k: len(v) for k, v in book.by_output.items()} == before
    assert len(book.by_output["minecraft:dark_oak_sign"]) == 1
    with pytest.raises(TypeError):
        book.by_output["minecraft:stick"] = ()  # type: ignore[index]
    assert isinstance(book.by_output["minecraft:stick"], tuple)
