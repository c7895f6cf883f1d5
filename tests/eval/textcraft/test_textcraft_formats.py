"""Reading one action per model turn, and writing turns the reader reads back."""
from __future__ import annotations

import pytest

from verl_ext_eval.textcraft.formats import THINK_REPLY, clean_action, get_format

AG = get_format("agentgym")
AD = get_format("adapt")


@pytest.mark.parametrize("text,action", [
    ("Thought:\nI need logs.\n\nAction:\nget 1 oak logs", "get 1 oak logs"),
    ("Thought: I need logs.\nAction: get 1 oak logs", "get 1 oak logs"),
    ("  Thought:\n  x\n\n  Action:\n   get   2   oak logs.  \n", "get 2 oak logs"),
    ("Thought:\nx\n\nAction:\n```\ncraft 4 stick using 2 oak planks\n```", "craft 4 stick using 2 oak planks"),
    ("**Thought:** x\n\n**Action:** `inventory`", "inventory"),
    # a model that goes on to invent the game's reply is cut at its first action
    ("Thought:\nx\n\nAction:\nget 1 oak logs\nObservation: Got 1 oak logs\nThought:\ny\nAction:\nget 2 z",
     "get 1 oak logs"),
    ("<think>maybe Action: get 9 z</think>\nThought:\nx\n\nAction:\nget 1 oak logs", "get 1 oak logs"),
    ("I will just do it: get 1 oak logs", None),
    ("get 1 oak logs", "get 1 oak logs"),  # bare action, no labels
    ("Thought:\nx\n\nAction:\nlook around", "look around"),  # passed on: the game answers it
])
def test_agentgym_parse(text, action):
    parsed = AG.parse(text)
    assert parsed.action == action
    assert parsed.ok == (action is not None)


def test_agentgym_unparseable_gets_a_clear_reply():
    for text in ("", "I am not sure what to do.", "Thought:\nhmm\n\nAction:\n   "):
        parsed = AG.parse(text)
        assert not parsed.ok and parsed.action is None
        assert parsed.error == AG.invalid_reply and "Action:" in parsed.error


def test_agentgym_thought_is_kept():
    assert AG.parse("Thought:\nI need 2 planks.\n\nAction:\ninventory").thought == "I need 2 planks."


@pytest.mark.parametrize("text,action,thought", [
    ("> get 1 oak logs", "get 1 oak logs", None),
    ("  >   craft 4 stick using 2 oak planks  \nsome trailing words", "craft 4 stick using 2 oak planks", None),
    ("```\n> inventory\n```", "inventory", None),
    ("> think: I need sticks first.", None, "I need sticks first"),
    ("Sure!\n> get 1 oak logs\n> get 2 oak logs", "get 1 oak logs", None),
    ("get 3 stone", "get 3 stone", None),
    ("think: plan", None, "plan"),
])
def test_adapt_parse(text, action, thought):
    parsed = AD.parse(text)
    assert parsed.ok and parsed.action == action and parsed.thought == thought


def test_adapt_unparseable():
    parsed = AD.parse("I would like some logs please")
    assert not parsed.ok and parsed.error == AD.invalid_reply and '"> ' in parsed.error


@pytest.mark.parametrize("fmt", [AG, AD])
def test_render_parse_roundtrip(fmt):
    for action in ("get 1 oak logs", "craft 1 golden carrot using 8 gold nugget, 1 carrot", "inventory"):
        assert fmt.parse(fmt.render(action, "I need it.")).action == action


def test_think_reply_and_prompts():
    assert THINK_REPLY == "OK."
    assert "Thought:\nyour thoughts.\n\nAction:\nyour next action" in AG.system_prompt
    assert "> think:" in AD.system_prompt
    with pytest.raises(ValueError, match="agentgym"):
        get_format("react")


def test_clean_action():
    assert clean_action(" `> get 1 oak logs.` ") == "get 1 oak logs"
    assert clean_action("**craft 4 stick using 2 oak planks**") == "craft 4 stick using 2 oak planks"
