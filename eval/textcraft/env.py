"""The TextCraft game: tasks (goal + shown crafting commands) and the step function.

Strings are the canonical game's, byte for byte (see /work/shared/notes/textcraft.md): models
trained on ADaPT / AgentGym trajectories have seen them. Behaviour differences from the originals
are fixes only: no state leaks across resets (the recipe book is immutable and shared), tasks are
deterministic under a seed (the originals sample from a hash-ordered set), and ``get 0 x`` adds
no zero-count entry to the inventory.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .recipes import PREFIX, RecipeBook, id_to_name, load_recipe_book, name_to_id

MAX_DISTRACTORS = 10

_CRAFT = re.compile(r"craft (.*) using (.*)")
_GET = re.compile(r"get ([0-9]+) (.*)")
_INVENTORY = re.compile(r"inventory")
_COUNT = re.compile(r"([0-9]+) (.*)")


class TaskError(ValueError):
    """A goal that the recipe book cannot make, or an unknown goal list."""


class EnvStateError(RuntimeError):
    """``step`` before ``reset`` or after the episode ended."""


@dataclass(frozen=True)
class Task:
    """One episode's setup. ``commands`` are in display order."""

    goal: str  # item id, e.g. minecraft:dark_oak_sign
    commands: tuple[str, ...]
    seed: int
    depth: int
    goal_list: str | None = None
    index: int | None = None

    @property
    def goal_name(self) -> str:
        return id_to_name(self.goal)

    @property
    def observation(self) -> str:
        """The reset observation."""
        return "Crafting commands:\n{}\n\nGoal: craft {}.".format("\n".join(self.commands), self.goal_name)


def make_task(goal: str, seed: int = 0, book: RecipeBook | None = None,
              goal_list: str | None = None, index: int | None = None) -> Task:
    """The task for ``goal`` (item id or display name): every recipe of its crafting tree plus up
    to 10 distractor recipes that use the same ingredients, shuffled under ``seed``."""
    book = book or load_recipe_book()
    goal_id = goal if goal.startswith(PREFIX) else name_to_id(goal)
    if goal_id not in book.by_output:
        raise TaskError(f"goal {goal!r} is not a craftable item (544 are; see RecipeBook.goal_list('agentgym'))")
    rng = random.Random(seed)
    tree = book.tree(goal_id)
    shown = {r.command for r in tree}
    candidates: dict[str, None] = {}
    for r in tree:
        for ing in r.inputs:
            for use in book.uses.get(ing.name, ()):
                if use.command not in shown:
                    candidates.setdefault(use.command)
    distractors = rng.sample(list(candidates), min(len(candidates), MAX_DISTRACTORS))
    lines = [r.command for r in tree] + distractors
    rng.shuffle(lines)
    return Task(goal=goal_id, commands=tuple(lines), seed=seed, depth=book.depth[goal_id],
                goal_list=goal_list, index=index)


def task_at(goal_list: str, index: int, seed: int | None = None, book: RecipeBook | None = None) -> Task:
    """Goal ``index`` (modulo the list's length) of the ``adapt`` or ``agentgym`` list; the
    shuffle seed defaults to the index (ADaPT's ``reset(seed)`` used one number for both)."""
    book = book or load_recipe_book()
    try:
        goals = book.goal_list(goal_list)
    except ValueError as e:
        raise TaskError(str(e)) from e
    return make_task(goals[index % len(goals)], index if seed is None else seed, book, goal_list, index)


@dataclass(frozen=True)
class StepResult:
    observation: str
    reward: float
    done: bool


class _Failed(Exception):
    pass


@dataclass(frozen=True)
class _Typed:
    """An item or tag as typed by the player: tag if the name is a tag, else an item id."""

    tag: str | None
    item_id: str | None
    count: int

    def __repr__(self) -> str:  # the canonical game's dataclass repr (trained models saw it)
        return (f"ItemTagWithCount(item_tag=ItemTag(tag={self.tag!r}, item_id={self.item_id!r}), "
                f"count={self.count})")


class TextCraftEnv:
    """One game. ``reset(task)`` -> observation; ``step(action)`` -> ``StepResult``. Episodes
    share the immutable recipe book; only the inventory is per episode."""

    def __init__(self, book: RecipeBook | None = None):
        self.book = book or load_recipe_book()
        self.task: Task | None = None
        self.done = False
        self._inventory: dict[str, int] = {}

    @property
    def inventory(self) -> dict[str, int]:
        """A copy: item id -> count, in insertion order."""
        return dict(self._inventory)

    def reset(self, task: Task) -> str:
        self.task = task
        self.done = False
        self._inventory = {}
        return task.observation

    def step(self, action: str) -> StepResult:
        if self.task is None:
            raise EnvStateError("step() before reset(task)")
        if self.done:
            raise EnvStateError(f"the episode for {self.task.goal} already ended; call reset(task)")
        try:
            if m := _CRAFT.match(action):
                return self._craft(m.group(1), m.group(2))
            if m := _GET.match(action):
                return self._get(int(m.group(1)), m.group(2))
            if _INVENTORY.match(action):
                return StepResult(self._inventory_text(), 0.0, False)
            raise _Failed(f"Could not execute {action}")
        except _Failed as e:
            return StepResult(str(e), 0.0, False)

    # -- actions -------------------------------------------------------------------------------
    def _typed(self, name: str, count: int) -> _Typed:
        ident = name_to_id(name)
        return _Typed(ident, None, count) if ident in self.book.tags else _Typed(None, ident, count)

    def _get(self, count: int, name: str) -> StepResult:
        typed = self._typed(name, count)
        ident = typed.item_id
        if ident is None or self.book.is_craftable(ident) or ident not in self.book.items:
            raise _Failed(f"Could not find {name}")
        if count:
            self._inventory[ident] = self._inventory.get(ident, 0) + count
        return StepResult(f"Got {count} {name}", 0.0, False)

    def _inventory_text(self) -> str:
        if not self._inventory:
            return "Inventory: You are not carrying anything."
        return "Inventory: " + "".join(f"[{id_to_name(i)}] ({n}) " for i, n in self._inventory.items())

    def _craft(self, output_text: str, inputs_text: str) -> StepResult:
        m = _COUNT.match(output_text)
        output = self._typed(m.group(2), int(m.group(1))) if m else self._typed(output_text, 1)
        inputs = []
        for part in inputs_text.split(","):
            pm = _COUNT.match(part.strip())
            if not pm:
                raise _Failed(f"Wrong item format: {part.strip()}")
            inputs.append(self._typed(pm.group(2), int(pm.group(1))))
        if not all(i.item_id in self._inventory and self._inventory[i.item_id] >= i.count for i in inputs):
            raise _Failed(f"Could not find enough items to craft {output.item_id}")
        recipe = self._match_recipe(output.item_id, inputs)
        if recipe is None:
            raise _Failed(f"Could not find a valid recipe for {output!r}")
        for i in inputs:
            self._inventory[i.item_id] -= i.count
            if self._inventory[i.item_id] == 0:
                del self._inventory[i.item_id]
        self._inventory[recipe.output] = self._inventory.get(recipe.output, 0) + recipe.count
        won = recipe.output == self.task.goal
        self.done = won
        return StepResult(f"Crafted {recipe.count} {recipe.output}", 1.0 if won else 0.0, won)

    def _match_recipe(self, output: str | None, inputs: list[_Typed]):
        """The first recipe for ``output`` whose ingredients the typed inputs match one to one with
        equal counts; a tag ingredient takes a member item (any planks for ``planks``)."""
        for recipe in self.book.by_output.get(output, ()) if output else ():
            left = list(inputs)
            for ing in recipe.inputs:
                hit = next((t for t in left if self._satisfies(t, ing.name, ing.is_tag)), None)
                if hit is None or hit.count != ing.count:
                    break
                left.remove(hit)
            else:
                if not left:
                    return recipe
        return None

    def _satisfies(self, typed: _Typed, name: str, is_tag: bool) -> bool:
        if not is_tag:
            return typed.item_id == name
        return typed.tag == name or self.book.item_tag.get(typed.item_id) == name
