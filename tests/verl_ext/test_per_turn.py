"""data.multiturn_mode=per_turn: one sample per trained assistant turn, its context exactly as the
template renders it for inference at that turn, only that turn (with its reasoning) trained."""
import copy
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from verl_ext.data.datasets import ChatSFTDataset

TOOL = {"type": "function", "function": {"name": "craft", "description": "craft an item",
                                         "parameters": {"type": "object", "properties": {"item": {"type": "string"}}}}}


def agent_conversation(i: int) -> dict:
    """A thinking agent: reasoning on every assistant turn, tool calls, several user turns."""
    return {
        "messages": [
            {"role": "system", "content": "You are a crafting agent."},
            {"role": "user", "content": f"Craft {i} planks."},
            {"role": "assistant", "content": "", "reasoning_content": f"I need logs first ({i}).",
             "tool_calls": [{"type": "function", "function": {"name": "craft", "arguments": json.dumps({"item": "logs"})}}]},
            {"role": "tool", "content": "Got 1 oak log."},
            {"role": "assistant", "content": "I have a log.", "reasoning_content": "Now planks from the log."},
            {"role": "user", "content": "Go on."},
            {"role": "assistant", "content": f"Crafted {i} planks.", "reasoning_content": "Craft them.\n"},
            {"role": "user", "content": "Thanks."},
            {"role": "assistant", "content": "Context only.", "reasoning_content": "skip", "loss": False},
        ],
        "tools": json.dumps([TOOL]),
    }


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "agent.parquet"
    pq.write_table(pa.Table.from_pylist([agent_conversation(i) for i in range(3)]), path)
    return str(path)


def cfg(tmp_path, **kw):
    return OmegaConf.create({"max_length": 2048, "cache_dir": str(tmp_path / "c"), "multiturn_mode": "per_turn", **kw})


def _render(tok, messages, tools, generation_prompt, thinking):
    kwargs = {} if thinking is None else {"enable_thinking": thinking}
    clean = [{k: v for k, v in copy.deepcopy(m).items() if k != "loss"} for m in messages]
    for m in clean:
        for call in m.get("tool_calls", []):
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    return tok.apply_chat_template(clean, tools=tools, tokenize=False, add_generation_prompt=generation_prompt, **kwargs)


@pytest.mark.parametrize("thinking", [None, True])
def test_each_sample_is_the_inference_prefix_plus_its_turn(tmp_path, data, qwen3_tokenizer, thinking):
    tok = qwen3_tokenizer
    ds = ChatSFTDataset(data, tok, cfg(tmp_path, enable_thinking_default=thinking))
    conversation = agent_conversation(0)
    trained_turns = [i for i, m in enumerate(conversation["messages"]) if m["role"] == "assistant" and m.get("loss", True)]
    assert len(ds) == 3 * len(trained_turns) == 9
    assert [ds.store.table.column("turn")[k].as_py() for k in range(3)] == trained_turns
    for k, turn in enumerate(trained_turns):
        messages = conversation["messages"]
        item = ds[k]
        ids, mask = item["input_ids"].tolist(), item["loss_mask"].tolist()
        prompt = _render(tok, messages[:turn], [TOOL], True, thinking)
        full = _render(tok, messages[: turn + 1], [TOOL], False, thinking)
        assert full.startswith(prompt)
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        turn_ids = tok(full[len(prompt):], add_special_tokens=False)["input_ids"]
        assert ids == prompt_ids + turn_ids, f"turn {turn}: ids are not prefix(add_generation_prompt) + turn"
        # only this turn is trained: from the end of the generation prompt to its <|im_end|>
        assert not any(mask[: len(prompt_ids)])
        trained = tok.decode([t for t, m in zip(ids, mask) if m])
        produced = full[len(prompt):]
        produced = produced[: produced.index("<|im_end|>") + len("<|im_end|>")]
        assert trained == produced
        reasoning = messages[turn]["reasoning_content"].strip()
        assert reasoning in trained, "the trained turn keeps its own reasoning"
        # history as inference renders it: Qwen3 drops reasoning before the last user query
        if turn == 6:
            assert "I need logs first" not in prompt and "Now planks" not in prompt


def test_single_mode_trains_earlier_turns_without_their_reasoning(tmp_path, data, qwen3_tokenizer):
    """Why per_turn exists: one render drops earlier reasoning, so single trains those turns bare."""
    single = ChatSFTDataset(data, qwen3_tokenizer, cfg(tmp_path, multiturn_mode="single"))
    assert len(single) == 3
    trained = qwen3_tokenizer.decode([t for t, m in zip(single[0]["input_ids"].tolist(), single[0]["loss_mask"].tolist()) if m])
    assert "Now planks from the log." not in trained and "I have a log." in trained
    per_turn = ChatSFTDataset(data, qwen3_tokenizer, cfg(tmp_path))
    texts = [qwen3_tokenizer.decode([t for t, m in zip(per_turn[k]["input_ids"].tolist(), per_turn[k]["loss_mask"].tolist()) if m])
             for k in range(3)]
    assert "Now planks from the log." in texts[1]
    assert all("Context only." not in t for t in texts)


def test_per_turn_truncation_names_the_turn(tmp_path, data, qwen3_tokenizer):
    from verl_ext.rows import DataError

    with pytest.raises(DataError, match=r"agent.parquet, row 0, turn \d+: \d+ tokens > data.max_length=100"):
        ChatSFTDataset(data, qwen3_tokenizer, cfg(tmp_path, max_length=100))


def test_thinking_off_with_reasoning_is_refused_and_without_reasoning_is_exact(tmp_path, data, qwen3_tokenizer):
    from verl_ext.rows import DataError

    with pytest.raises(DataError, match=r"row 0, turn 2: .*thinking off but the turn has reasoning_content"):
        ChatSFTDataset(data, qwen3_tokenizer, cfg(tmp_path, enable_thinking_default=False))
    plain = agent_conversation(0)
    for m in plain["messages"]:
        m.pop("reasoning_content", None)
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.Table.from_pylist([plain]), path)
    ds = ChatSFTDataset(str(path), qwen3_tokenizer, cfg(tmp_path, enable_thinking_default=False))
    item = ds[2]
    prompt = _render(qwen3_tokenizer, plain["messages"][:6], [TOOL], True, False)
    ids = item["input_ids"].tolist()
    prompt_ids = qwen3_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert ids[: len(prompt_ids)] == prompt_ids and prompt.endswith("<think>\n\n</think>\n\n")
    trained = qwen3_tokenizer.decode([t for t, m in zip(ids, item["loss_mask"].tolist()) if m])
    assert trained == "Crafted 0 planks.<|im_end|>"


def test_per_turn_with_reasoning_in_history_is_a_config_error(tmp_path, data, qwen3_tokenizer):
    from verl_ext.rows import DataError

    with pytest.raises(DataError, match="reasoning_in_history=true contradicts"):
        ChatSFTDataset(data, qwen3_tokenizer, cfg(tmp_path, reasoning_in_history=True))


@pytest.mark.parametrize("name", ["qwen3", "smollm3", "harmony"])
def test_per_turn_on_reasoning_templates(qwen3_tokenizer, name):
    """Reasoning kept inline (SmolLM3), in reasoning_content and dropped from history (Qwen3), on an
    analysis channel closed by <|return|> only on the final turn (harmony): each sample is the
    inference prompt at its turn + the turn, trained from the prompt's end to the turn's closing."""
    from tests.verl_ext.chat_families import FAMILIES, conversations, family_tokenizer, trained_text
    from verl_ext.rows import RowRef

    tok = family_tokenizer(qwen3_tokenizer, FAMILIES[name])
    _, messages, _, _ = next(c for c in conversations(FAMILIES[name]) if c[0] == "reasoning")
    encoder = ChatSFTDataset.row_encoder(tok, {"max_length": 4096, "multiturn_mode": "per_turn"})
    samples = encoder.encode_row({"messages": messages}, RowRef("r.jsonl", 0))
    assert [s.turn for s in samples] == [2, 4, 6]
    for sample, reasoning in zip(samples, ["12*3 = 36.", "36/4 = 9.", "9*9 = 81."]):
        prompt = tok.apply_chat_template(messages[: sample.turn], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(messages[: sample.turn + 1], tokenize=False)
        assert full.startswith(prompt)
        ids, mask = sample.input_ids.tolist(), sample.loss_mask.tolist()
        assert ids == tok(full, add_special_tokens=False)["input_ids"]
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        assert ids[:n_prompt] == tok(prompt, add_special_tokens=False)["input_ids"] and not any(mask[:n_prompt])
        assert trained_text(tok, ids, mask) == [full[len(prompt):].rstrip("\n")]
        assert reasoning in full[len(prompt):], "the trained turn keeps its own reasoning"


def test_per_turn_refuses_a_template_whose_turn_lacks_what_its_prompt_injects(qwen3_tokenizer):
    """DeepSeek-R1: inference prompts with <｜Assistant｜><think>\\n, the template renders the turn without
    its reasoning: no sample can start with the inference prompt; named row and turn."""
    from tests.verl_ext.chat_families import FAMILIES, conversations, family_tokenizer
    from verl_ext.rows import DataError, RowRef

    tok = family_tokenizer(qwen3_tokenizer, FAMILIES["deepseek_r1"])
    _, messages, _, _ = next(c for c in conversations(FAMILIES["deepseek_r1"]) if c[0] == "reasoning")
    encoder = ChatSFTDataset.row_encoder(tok, {"max_length": 4096, "multiturn_mode": "per_turn"})
    with pytest.raises(DataError, match=r"r.jsonl, row 0, turn 2: the template renders this turn's context differently"):
        encoder.encode_row({"messages": messages}, RowRef("r.jsonl", 0))
