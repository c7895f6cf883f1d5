"""The async episode loop over a Backend: success, step limit, unparseable output, context overflow."""
from __future__ import annotations

import asyncio

import pytest

from verl_ext_eval.backends.base import Backend, Generation, SamplingParams
from verl_ext_eval.textcraft.agent import (
    FAILURE_CONTEXT,
    FAILURE_STEP_LIMIT,
    FAILURE_UNPARSEABLE,
    ContextFullError,
    ExpertBackend,
    is_context_error,
    run_episode,
)
from verl_ext_eval.textcraft.env import make_task, task_at


class Scripted:
    """Answers with fixed texts in turn (the last one repeats); records what it was sent."""

    name = "scripted"

    def __init__(self, *texts, finish="stop", fail_at=None):
        self.texts, self.finish, self.fail_at = texts, finish, fail_at
        self.calls: list[list[dict]] = []

    async def chat(self, messages, params):
        self.calls.append([dict(m) for m in messages])
        if self.fail_at is not None and len(self.calls) > self.fail_at:
            raise ContextFullError("prompt of 9000 tokens exceeds the model's context length 8192")
        text = self.texts[min(len(self.calls) - 1, len(self.texts) - 1)]
        return Generation(text=text, num_tokens=7, finish_reason=self.finish, meta={"prompt_tokens": 100})

    async def complete(self, prompt, params):
        raise NotImplementedError

    async def close(self):
        pass


P = SamplingParams(max_new_tokens=50)


def run(coro):
    return asyncio.run(coro)


@pytest.mark.parametrize("fmt", ["agentgym", "adapt"])
def test_expert_backend_succeeds(fmt):
    backend = ExpertBackend(format=fmt)
    assert isinstance(backend, Backend)
    task = task_at("adapt", 3)
    r = run(run_episode(backend, task, fmt, P))
    assert r.success and r.reward == 1.0 and r.failure is None
    assert r.observations[-1] == f"Crafted {r.observations[-1].split()[1]} {task.goal}"
    assert r.steps == len(r.actions) and r.invalid_turns == 0
    assert (r.actions[0] is None) == (fmt == "adapt")  # adapt's expert opens with a think step
    assert r.messages[-1]["role"] == "assistant" and r.key == "adapt:3:3"
    record = r.to_record()
    assert record["success"] is True and record["depth"] == task.depth and len(record["messages"]) == 2 + 2 * r.steps - 1


def test_step_limit_records_actions_and_observations():
    backend = Scripted("Thought:\nx\n\nAction:\nget 1 oak logs", "Thought:\ny\n\nAction:\nlook")
    r = run(run_episode(backend, make_task("minecraft:dark_oak_sign", 1), "agentgym", P, max_rounds=3))
    assert not r.success and r.failure == FAILURE_STEP_LIMIT and r.steps == 3
    assert r.actions == ("get 1 oak logs", "look", "look")
    assert r.observations == ("Got 1 oak logs", "Could not execute look", "Could not execute look")
    assert r.gen_tokens == 21 and r.prompt_tokens == 300
    # the model saw the system prompt, the task, and each reply as a user turn
    last = backend.calls[-1]
    assert [m["role"] for m in last] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert last[3]["content"] == "Got 1 oak logs"


def test_unparseable_turns_count_as_steps_and_get_the_format_reply():
    backend = Scripted("I don't know.", finish="length")
    r = run(run_episode(backend, make_task("minecraft:dark_oak_sign", 1), "adapt", P, max_rounds=4))
    assert r.failure == FAILURE_UNPARSEABLE and r.steps == 4 and r.invalid_turns == 4 and r.truncated_turns == 4
    assert r.actions == (None,) * 4
    assert backend.calls[-1][-1]["content"].startswith("Invalid response")


def test_think_steps_are_answered_ok():
    backend = Scripted("> think: first logs", "> get 1 oak logs")
    r = run(run_episode(backend, make_task("minecraft:dark_oak_sign", 1), "adapt", P, max_rounds=2))
    assert r.observations == ("OK.", "Got 1 oak logs") and r.actions == (None, "get 1 oak logs")
    assert r.invalid_turns == 0 and r.failure == FAILURE_STEP_LIMIT


def test_context_overflow_ends_the_episode():
    backend = Scripted("> get 1 oak logs", fail_at=2)
    r = run(run_episode(backend, make_task("minecraft:dark_oak_sign", 1), "adapt", P, max_rounds=10))
    assert r.failure == FAILURE_CONTEXT and r.steps == 2


def test_context_errors_are_recognised_by_message():
    assert is_context_error(RuntimeError("HTTP 400: This model's maximum context length is 8192 tokens"))
    assert is_context_error(ContextFullError("x"))
    assert not is_context_error(RuntimeError("request timed out after 600 s"))


def test_other_backend_errors_propagate():
    class Broken(Scripted):
        async def chat(self, messages, params):
            raise ConnectionError("server gone")

    with pytest.raises(ConnectionError):
        run(run_episode(Broken(), make_task("minecraft:dark_oak_sign", 1), "adapt", P))


def test_turn_prompt_style_opens_like_agentgym_trajectories():
    backend = Scripted("Thought:\nx\n\nAction:\nget 1 oak logs")
    run(run_episode(backend, make_task("minecraft:dark_oak_sign", 1), "agentgym", P, max_rounds=1, prompt_style="turn"))
    first = backend.calls[0]
    assert [m["role"] for m in first] == ["user", "assistant", "user"]
    assert first[0]["content"].startswith("You are crafting items") and first[1]["loss"] is False
    assert first[2]["content"].startswith("Crafting commands:\n")
    r = run(run_episode(ExpertBackend("adapt"), task_at("agentgym", 200), "adapt", P, prompt_style="turn"))
    assert r.success
    with pytest.raises(ValueError, match="system, turn"):
        run(run_episode(backend, make_task("minecraft:stick", 1), "adapt", P, prompt_style="chat"))
