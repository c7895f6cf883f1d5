"""An expert that solves a TextCraft task from the reset observation's text alone.

It parses the shown crafting commands, picks one recipe per needed item (cheapest first), maps a
generic ingredient (``planks``) to a concrete member (one the plan already uses, else the cheapest),
adds up demand over the whole tree (recipe outputs come in batches: 8 sticks are two crafts of 4;
leftovers feed later crafts; a starting inventory is used first) and emits each base item's ``get``
once, just before its first use, and every craft once per batch, children before parents.
"""
from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Mapping

_COMMAND = re.compile(r"craft (\d+) (.+?) using (.+)")
_INGREDIENT = re.compile(r"(\d+) (.+)")
_GOAL = re.compile(r"Goal: craft (.+)\.\s*$")


class ExpertError(ValueError):
    """The observation is not a TextCraft reset observation, or its goal cannot be planned."""


@dataclass(frozen=True)
class ShownRecipe:
    output: str  # display name
    count: int
    inputs: tuple[tuple[str, int], ...]  # (display name, count)

    @property
    def command(self) -> str:
        ins = ", ".join(f"{c} {n}" for n, c in self.inputs)
        return f"craft {self.count} {self.output} using {ins}"


@dataclass(frozen=True)
class ShownTask:
    goal: str  # display name
    recipes: tuple[ShownRecipe, ...]


@dataclass(frozen=True)
class PlannedStep:
    action: str
    thought: str


def parse_observation(text: str) -> ShownTask:
    """The goal and the commands of ``Crafting commands:\\n...\\n\\nGoal: craft X.``"""
    head, sep, tail = text.strip().partition("\n\nGoal: ")
    goal = _GOAL.match("Goal: " + tail) if sep else None
    if not head.startswith("Crafting commands:") or goal is None:
        raise ExpertError(f"not a TextCraft reset observation (expected 'Crafting commands:...Goal: craft X.'): "
                          f"{text[:80]!r}")
    recipes = []
    for line in head.splitlines()[1:]:
        m = _COMMAND.fullmatch(line.strip())
        if not m:
            continue
        inputs = []
        for part in m.group(3).split(", "):
            im = _INGREDIENT.fullmatch(part.strip())
            if im:
                inputs.append((im.group(2), int(im.group(1))))
        recipes.append(ShownRecipe(m.group(2), int(m.group(1)), tuple(inputs)))
    return ShownTask(goal.group(1), tuple(recipes))


class _Planner:
    def __init__(self, task: ShownTask):
        self.task = task
        self.producers: dict[str, list[ShownRecipe]] = {}
        for r in task.recipes:
            self.producers.setdefault(r.output, []).append(r)
        self._cost: dict[str, float] = {}
        self.choice: dict[str, ShownRecipe] = {}
        self.member: dict[str, str] = {}
        self._members: dict[str, list[str]] = {}

    def members(self, name: str) -> list[str]:
        """Concrete kinds shown for a generic ingredient (``planks``, ``wool``), empty if ``name`` is
        a plain item. A kind is an output named ``<...> <name>`` that is not made from ``<name>``
        (``white stained glass`` is made from glass: no kind of glass) nor the raw material of
        another kind (``white wool`` dyes into the others: in the game it is not a ``wool``); a
        generic ingredient has several kinds (``packed ice`` alone does not make ``ice`` generic)."""
        if name in self._members:
            return self._members[name]
        kinds = [o for o, rs in self.producers.items()
                 if o.endswith(" " + name) and not any(n == name for r in rs for n, _ in r.inputs)]
        raw = {n for o in kinds for r in self.producers[o] for n, _ in r.inputs}
        kinds = sorted(o for o in kinds if o not in raw)
        self._members[name] = kinds if len(kinds) >= 2 else []
        return self._members[name]

    def kind(self, name: str) -> str:
        if name in self.producers:
            return "craft"
        return "tag" if self.members(name) else "base"

    def cost(self, name: str, active: frozenset[str] = frozenset()) -> float:
        """Steps to make one batch of ``name`` from nothing (a rough ranking, not exact)."""
        if name in self._cost:
            return self._cost[name]
        if name in active:
            return math.inf
        kind = self.kind(name)
        if kind == "base":
            return 1.0
        inner = active | {name}
        if kind == "tag":
            value = min(self.cost(m, inner) for m in self.members(name))
        else:
            best = min(self.producers[name], key=lambda r: (self._recipe_cost(r, inner), r.command))
            value = self._recipe_cost(best, inner)
            if value < math.inf:
                self.choice[name] = best
        if not active or value < math.inf:
            self._cost[name] = value
        return value

    def _recipe_cost(self, r: ShownRecipe, active: frozenset[str]) -> float:
        return 1.0 + sum(self.cost(n, active) for n, _ in r.inputs)

    def concrete(self, name: str) -> str:
        return self.member.get(name, name) if self.kind(name) == "tag" else name

    def order(self) -> list[str] | None:
        """Items of the plan, children before parents (depth-first post-order from the goal);
        None if the current choices loop."""
        state: dict[str, int] = {}
        post: list[str] = []

        def visit(name: str) -> bool:
            name = self.concrete(name)
            if name in state:
                return state[name] == 2  # 1: on the current path, a loop
            state[name] = 1
            if self.kind(name) == "craft":
                if name not in self.choice or not all(visit(n) for n, _ in self.choice[name].inputs):
                    return False
            state[name] = 2
            post.append(name)
            return True

        return post if visit(self.task.goal) else None

    def resolve_tags(self) -> None:
        """Pick each generic ingredient's member: one the plan names concretely, else the cheapest."""
        for _ in range(4):  # a member's subtree can name further generic ingredients
            used = set(self.order() or ())
            pending = {n for item in used if self.kind(item) == "craft"
                       for n, _ in self.choice[item].inputs if self.kind(n) == "tag" and n not in self.member}
            if not pending:
                return
            for tag in sorted(pending):
                members = self.members(tag)
                named = [m for m in members if m in used]
                self.member[tag] = named[0] if named else min(members, key=lambda m: (self.cost(m), len(m), m))

    def schedule(self, have: Mapping[str, int]) -> tuple[list[str], dict[str, int], dict[str, str]] | None:
        """``(order, runs, first_use)``: how many crafts (or how many to get) of each item, with
        demand summed over the whole plan, batches rounded up and held items used first."""
        order = self.order()
        if order is None:
            return None
        need: dict[str, int] = {self.task.goal: 1}
        runs: dict[str, int] = {}
        first_use: dict[str, str] = {}
        for item in reversed(order):  # parents before children
            net = max(0, need.get(item, 0) - have.get(item, 0))
            if self.kind(item) != "craft":
                runs[item] = net
                continue
            r = self.choice[item]
            runs[item] = math.ceil(net / r.count)
            for n, c in r.inputs:
                child = self.concrete(n)
                need[child] = need.get(child, 0) + c * runs[item]
                first_use.setdefault(child, item)
        return order, runs, first_use

    def length(self, have: Mapping[str, int]) -> float:
        plan = self.schedule(have)
        if plan is None:
            return math.inf
        _, runs, _ = plan
        return sum(n if self.kind(i) == "craft" else n > 0 for i, n in runs.items())

    def improve(self, have: Mapping[str, int], passes: int = 3) -> None:
        """Coordinate descent on the recipe chosen per item (with the members of the generic
        ingredients it brings in) to shorten the whole plan: shared leftovers beat a locally
        cheaper recipe (a stick from the sign's planks, not from bamboo)."""
        best = self.length(have)
        for _ in range(passes):
            changed = False
            for item in list(self.order() or ()):
                if self.kind(item) != "craft" or len(self.producers[item]) < 2:
                    continue
                keep = (self.choice[item], dict(self.member))
                for alt in self.producers[item]:
                    tags = [n for n, _ in alt.inputs if self.kind(n) == "tag"]
                    for combo in itertools.islice(itertools.product(*(self.members(t) for t in tags)), 64):
                        self.choice[item] = alt
                        self.member.update(zip(tags, combo))
                        length = self.length(have)
                        if length < best:
                            best, keep, changed = length, (alt, dict(self.member)), True
                self.choice[item], self.member = keep[0], keep[1]
            if not changed:
                return


def _prepared(observation: str, have: Mapping[str, int] | None = None) -> tuple[ShownTask, _Planner]:
    task = parse_observation(observation)
    p = _Planner(task)
    if p.kind(task.goal) != "craft" or p.cost(task.goal) == math.inf:
        raise ExpertError(f"no shown command makes {task.goal!r} from gettable items")
    p.resolve_tags()
    p.improve(have or {})
    return task, p


def plan(observation: str, inventory: Mapping[str, int] | None = None) -> tuple[PlannedStep, ...]:
    """The actions (with a short thought each) that craft the goal. ``inventory`` maps display
    names to counts already held (empty at reset)."""
    have = dict(inventory or {})
    task, p = _prepared(observation, have)
    scheduled = p.schedule(have)
    if scheduled is None:
        raise ExpertError(f"the shown commands for {task.goal!r} only loop")
    order, runs, first_use = scheduled
    steps: list[PlannedStep] = []
    for item in order:
        if not runs[item]:
            continue
        if p.kind(item) != "craft":
            steps.append(PlannedStep(f"get {runs[item]} {item}",
                                     f"I need {runs[item]} {item} for {first_use.get(item, task.goal)} and no "
                                     f"command makes it, so I will get it."))
            continue
        r = p.choice[item]
        typed = ", ".join(f"{c} {p.concrete(n)}" for n, c in r.inputs)
        for k in range(runs[item]):
            batch = f" (batch {k + 1} of {runs[item]})" if runs[item] > 1 else ""
            why = "the goal" if item == task.goal else f"needed for {first_use.get(item, task.goal)}"
            steps.append(PlannedStep(f"craft {r.count} {item} using {typed}",
                                     f"I have the ingredients for {item}{batch}, {why}. I will craft it."))
    if steps and not inventory:
        steps[0] = PlannedStep(steps[0].action, f"{_summary(task, p)} {steps[0].thought}")
    return tuple(steps)


def _summary(task: ShownTask, p: _Planner) -> str:
    ins = ", ".join(f"{c} {p.concrete(n)}" for n, c in p.choice[task.goal].inputs)
    return f"To craft {task.goal}, I need {ins}."


def plan_summary(observation: str) -> str:
    """One sentence naming the goal's recipe, for a format's opening ``think`` step."""
    task, p = _prepared(observation)
    return f"{_summary(task, p)} I will get the base items and craft the intermediate items first."
