"""How a model talks to TextCraft: the system prompt, how a turn is written, how an action is read.

Two formats, one code path each way (the expert writes its turns with ``render`` and the runner reads
model turns with ``parse``, so trained data matches what the runner parses):

- ``agentgym``: ``Thought:\\n...\\n\\nAction:\\n<one action>`` (AgentGym / AgentGym-RL).
- ``adapt``: one ``> <action>`` line; ``> think: ...`` plans and is answered ``OK.`` (ADaPT).

Parsing takes exactly one action per turn and forgives extra whitespace, code fences, markdown
emphasis, a trailing period and text after the action (a model that goes on to invent the next
observation is cut at its first action). A turn with no action gets ``invalid_reply`` from the
environment and still counts as a step.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .expert import plan, plan_summary

THINK_REPLY = "OK."

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_VERB = re.compile(r"(get \d|craft |inventory\b)")
_ACTION_LABEL = re.compile(r"^\W*action\W*:\W*(.*)$", re.IGNORECASE)
_THOUGHT_LABEL = re.compile(r"^\W*thought\W*:\W*(.*)$", re.IGNORECASE)

_RULES = (
    "You are crafting items in a text version of Minecraft. Each task lists some crafting commands and a "
    "goal item. A crafting command reads \"craft [target] using [ingredients]\".\n"
    "Every turn you get an observation from the game and answer with exactly one action:\n"
    "- get N item: take N of a base item, e.g. get 1 lapis lazuli\n"
    "- craft N target using N ingredient, N ingredient: apply one of the listed crafting commands once, "
    "e.g. craft 1 blue dye using 1 lapis lazuli, or craft 1 golden carrot using 8 gold nugget, 1 carrot\n"
    "- inventory: show what you carry\n"
    "Always give quantities, and use only the listed crafting commands with their exact counts. Items that "
    "have a crafting command must be crafted, not taken. A generic ingredient such as \"planks\" can be "
    "replaced by a specific kind of it, e.g. \"dark oak planks\".\n"
)


@dataclass(frozen=True)
class Parsed:
    """One model turn read: ``action`` for the game, or a ``thought`` only (``adapt``'s think
    step), or neither (unparseable: ``error`` says why)."""

    action: str | None
    thought: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def clean_action(text: str) -> str:
    """One action line without decoration: ``**get 1 oak logs.**`` -> ``get 1 oak logs``."""
    text = text.strip().strip("`*_\"'").strip()
    if text.startswith(">"):
        text = text[1:].strip()
    text = re.sub(r"\s+", " ", text).strip()
    return text.rstrip(".").strip("`*_\"'").strip()


def _lines(text: str) -> list[str]:
    """Non-empty lines, without closed ``<think>`` blocks and code-fence markers."""
    text = _THINK_BLOCK.sub("", text)
    return [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("```")]


def _bare_action(lines: list[str], verbs: re.Pattern) -> str | None:
    for ln in lines:
        candidate = clean_action(ln)
        if verbs.match(candidate):
            return candidate
    return None


class TurnFormat:
    """Base: a name, the system prompt, ``render`` (writes a turn) and ``parse`` (reads one)."""

    name = ""
    system_prompt = ""
    invalid_reply = ""

    def render(self, action: str, thought: str = "") -> str:
        raise NotImplementedError

    def parse(self, text: str) -> Parsed:
        raise NotImplementedError

    def opening(self, observation: str) -> list[str]:
        """Turns the expert writes before its first action (none by default)."""
        return []

    def expert_turns(self, observation: str) -> list[str]:
        """Every assistant turn of the expert's solution to the task in ``observation``."""
        return self.opening(observation) + [self.render(s.action, s.thought) for s in plan(observation)]


class AgentGymFormat(TurnFormat):
    name = "agentgym"
    system_prompt = _RULES + (
        "Your reply must strictly follow this format:\n"
        "Thought:\nyour thoughts.\n\nAction:\nyour next action"
    )
    invalid_reply = ('Invalid response: no action found. Your reply must strictly follow this format: '
                     '"Thought:\\nyour thoughts.\\n\\nAction:\\nyour next action"')

    def render(self, action: str, thought: str = "") -> str:
        return f"Thought:\n{thought}\n\nAction:\n{action}"

    def parse(self, text: str) -> Parsed:
        lines = _lines(text)
        thought: list[str] = []
        for i, ln in enumerate(lines):
            m = _ACTION_LABEL.match(ln)
            if m is None:
                t = _THOUGHT_LABEL.match(ln)
                thought.append(t.group(1) if t else ln.strip())
                continue
            rest = [m.group(1)] if m.group(1).strip() else []
            rest += lines[i + 1:i + 2] if not rest else []
            action = clean_action(rest[0]) if rest else ""
            if action:
                return Parsed(action, "\n".join(x for x in thought if x).strip() or None)
            break
        bare = _bare_action(lines, _VERB)
        if bare:
            return Parsed(bare, None)
        return Parsed(None, None, self.invalid_reply)


class AdaptFormat(TurnFormat):
    name = "adapt"
    system_prompt = _RULES + (
        "Write your action on one line that starts with \"> \", e.g.\n> get 1 oak logs\n"
        "To plan, write \"> think: your thoughts\"; the game answers \"OK.\" (this also uses a turn)."
    )
    invalid_reply = ('Invalid response: no action found. Reply with one line "> your next action", '
                     'e.g. "> get 1 oak logs", or "> think: your thoughts".')
    _verbs = re.compile(r"(get \d|craft |inventory\b|think:)")

    def render(self, action: str, thought: str = "") -> str:
        return f"> {action}"

    def opening(self, observation: str) -> list[str]:
        return [f"> think: {plan_summary(observation)}"]

    def parse(self, text: str) -> Parsed:
        lines = _lines(text)
        marked = next((ln.strip()[1:].strip() for ln in lines if ln.strip().startswith(">")), None)
        action = clean_action(marked) if marked else _bare_action(lines, self._verbs)
        if not action:
            return Parsed(None, None, self.invalid_reply)
        if action.startswith("think:"):
            return Parsed(None, action[len("think:"):].strip())
        return Parsed(action)


FORMATS: dict[str, TurnFormat] = {f.name: f for f in (AgentGymFormat(), AdaptFormat())}


def get_format(name: str) -> TurnFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown TextCraft format {name!r}; choose one of {', '.join(FORMATS)}") from None
