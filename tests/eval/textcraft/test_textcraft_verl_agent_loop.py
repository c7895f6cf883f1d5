"""The verl agent loop, built the way verl builds it (registry + hydra instantiate) with verl's own
classes, a fake server manager and the real Qwen3 tokenizer: token stream, masks, reward."""
from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("verl.experimental.agent_loop")

import hydra  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl.experimental.agent_loop.agent_loop import (  # noqa: E402
    AgentLoopOutput,
    DictConfigWrap,
    ToolListWrap,
    _agent_loop_registry,
)
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

from verl_ext_eval.textcraft.agent import apply_turn  # noqa: E402
from verl_ext_eval.textcraft.env import TextCraftEnv, make_task  # noqa: E402
from verl_ext_eval.textcraft.formats import get_format  # noqa: E402
from verl_ext_eval.textcraft.verl_agent_loop import AGENT_NAME, TextCraftAgentLoop, TextCraftRowError, rl_row  # noqa: E402
from verl_ext.assets import load_qwen3_tokenizer  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer():
    return load_qwen3_tokenizer()


class FakeServer:
    """verl's server manager interface: answers each ``generate`` with the next scripted turn."""

    def __init__(self, tokenizer, turns, logprobs=False):
        self.tokenizer, self.turns, self.logprobs = tokenizer, list(turns), logprobs
        self.prompts: list[list[int]] = []
        self.generated: list[list[int]] = []

    async def generate(self, *, request_id, prompt_ids, sampling_params, **kwargs):
        self.prompts.append(list(prompt_ids))
        text = self.turns[min(len(self.prompts) - 1, len(self.turns) - 1)]
        ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.convert_tokens_to_ids("<|im_end|>")]
        self.generated.append(ids)
        return TokenOutput(token_ids=ids, log_probs=[-0.5] * len(ids) if self.logprobs else None)


def make_loop(tokenizer, server, response_length=8192):
    config = OmegaConf.create({
        "actor_rollout_ref": {"rollout": {"prompt_length": 4096, "response_length": response_length,
                                          "full_determinism": False}},
        "data": {"apply_chat_template_kwargs": {}},
    })
    return hydra.utils.instantiate(
        config=_agent_loop_registry[AGENT_NAME], trainer_config=DictConfigWrap(config=config),
        server_manager=server, tokenizer=tokenizer, processor=None, hf_model_type="qwen3",
        dataset_cls=None, data_config=DictConfigWrap(config.data), tools=ToolListWrap([]),
    )


def play(tokenizer, server, row, response_length=8192):
    """Build the loop inside the running event loop (verl binds it at construction) and run."""

    async def go():
        loop = make_loop(tokenizer, server, response_length)
        assert isinstance(loop, TextCraftAgentLoop)
        return await loop.run({"temperature": 0.0}, **row)

    return asyncio.run(go())


def segments(mask):
    """(value, start, end) runs of equal mask values."""
    runs, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            runs.append((mask[start], start, i))
            start = i
    return runs


def test_registered_under_its_name():
    assert _agent_loop_registry[AGENT_NAME]["_target_"] == "verl_ext_eval.textcraft.verl_agent_loop.TextCraftAgentLoop"


def test_expert_episode_tokens_masks_and_reward(tokenizer):
    task = make_task("minecraft:dark_oak_sign", seed=2)
    fmt = get_format("agentgym")
    turns = fmt.expert_turns(task.observation)
    server = FakeServer(tokenizer, turns)
    row = rl_row(task, "agentgym")
    out = play(tokenizer, server, {**row, "raw_prompt": row["prompt"]})
    assert isinstance(out, AgentLoopOutput)
    assert out.reward_score == 1.0 and out.extra_fields["textcraft"]["success"] is True
    assert out.extra_fields["textcraft"]["turns"] == len(turns) == len(server.generated)
    assert out.num_turns == 1 + len(turns) + len(turns) - 1

    # the prompt is the chat template of system + reset observation
    prompt_text = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(out.prompt_ids) == prompt_text
    # mask: 1 exactly on the generated tokens, in order; 0 on the game's replies
    assert len(out.response_ids) == len(out.response_mask)
    ones = [t for t, m in zip(out.response_ids, out.response_mask) if m == 1]
    assert ones == [t for g in server.generated for t in g]
    runs = segments(out.response_mask)
    assert [v for v, _, _ in runs] == [1, 0] * (len(turns) - 1) + [1]
    first_reply = tokenizer.decode(out.response_ids[runs[1][1]:runs[1][2]])
    assert first_reply == "\n<|im_start|>user\nGot 2 dark oak logs<|im_end|>\n<|im_start|>assistant\n"
    # each generate call saw exactly the running stream, and the stream is the conversation
    assert server.prompts[-1] == list(out.prompt_ids) + list(out.response_ids[:runs[-1][1]])
    replies = [tokenizer.decode(out.response_ids[s:e]) for v, s, e in runs if v == 0]
    assert all(r.startswith("\n<|im_start|>user\n") and r.endswith("<|im_start|>assistant\n") for r in replies)
    assert "Crafted 4 minecraft:dark_oak_planks" in "".join(replies)
    # the whole stream is the chat template of the conversation (replayed here) + the last turn
    env = TextCraftEnv()
    env.reset(task)
    conversation = list(row["prompt"])
    for text in turns[:-1]:
        conversation += [{"role": "assistant", "content": text},
                         {"role": "user", "content": apply_turn(env, fmt, text).reply}]
    expected = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    assert tokenizer.decode(list(out.prompt_ids) + list(out.response_ids)) == expected + turns[-1] + "<|im_end|>"
    out.as_dict()  # verl's own conversion to tensors accepts it


def test_step_limit_and_unparseable_turns(tokenizer):
    task = make_task("minecraft:dark_oak_sign", seed=2)
    server = FakeServer(tokenizer, ["I am not sure."])
    row = rl_row(task, "agentgym", max_rounds=3)
    out = play(tokenizer, server, row)
    tc = out.extra_fields["textcraft"]
    assert out.reward_score == 0.0 and tc["turns"] == 3 and tc["invalid_turns"] == 3
    replies = [tokenizer.decode(out.response_ids[s:e]) for v, s, e in segments(out.response_mask) if v == 0]
    assert len(replies) == 2 and all("Invalid response" in r for r in replies)
    assert out.response_mask[-1] == 1  # ends on the model's last turn, no dangling reply


def test_response_length_cuts_before_a_reply_and_logprobs_align(tokenizer):
    task = make_task("minecraft:dark_oak_sign", seed=2)
    turns = get_format("adapt").expert_turns(task.observation)
    server = FakeServer(tokenizer, turns, logprobs=True)
    out = play(tokenizer, server, rl_row(task, "adapt"), response_length=60)
    assert out.reward_score == 0.0
    assert len(out.response_ids) <= 60 and out.response_mask[-1] == 1
    assert len(out.response_logprobs) == len(out.response_mask)
    assert all((lp == -0.5) == (m == 1) for lp, m in zip(out.response_logprobs, out.response_mask))


def test_turn_prompt_style(tokenizer):
    task = make_task("minecraft:stick", seed=0)
    turns = get_format("agentgym").expert_turns(task.observation)
    row = rl_row(task, "agentgym", prompt_style="turn")
    out = play(tokenizer, FakeServer(tokenizer, turns), row)
    assert out.reward_score == 1.0
    assert tokenizer.decode(out.prompt_ids) == tokenizer.apply_chat_template(
        row["prompt"], tokenize=False, add_generation_prompt=True)
    assert [m["role"] for m in row["prompt"]] == ["user", "assistant", "user"]


def test_row_without_goal_is_an_error(tokenizer):
    with pytest.raises(TextCraftRowError, match="extra_info.goal"):
        play(tokenizer, FakeServer(tokenizer, ["x"]), {"raw_prompt": [], "extra_info": {}})
