"""Issue 19, trait by trait, in words: what is trained and what is context for the structural traits of
real chat templates (the exhaustive comparison with the reference is test_template_families.py)."""
import json

import pytest

from tests.verl_ext.chat_families import FAMILIES, WEATHER, conversations, family_tokenizer, reference, trained_text
from verl_ext.data.masks import ChatEncoder, TemplateAlignmentError
from verl_ext.rows import DataError, RowRef, normalize_messages


@pytest.fixture
def family(qwen3_tokenizer):
    """``family(name)`` -> (tokenizer, family)."""
    return lambda name: (family_tokenizer(qwen3_tokenizer, FAMILIES[name]), FAMILIES[name])


def case(name: str, conversation: str):
    return next(c for c in conversations(FAMILIES[name]) if c[0] == conversation)


def runs(tok, messages, tools=None, **kw):
    enc = ChatEncoder(tok, template_kwargs=kw).encode(normalize_messages(messages, RowRef("t", 0)), tools)
    return trained_text(tok, enc.input_ids, enc.loss_mask), enc


def test_trait1_no_assistant_header(family):
    """Mistral: the answer follows the user turn's [/INST]; the generation prompt adds nothing."""
    tok, _ = family("mistral")
    _, messages, _, _ = case("mistral", "three_turns")
    assert ChatEncoder(tok).prompt(messages[:2]).endswith("[/INST]")
    trained, enc = runs(tok, messages)
    assert trained == [" Hello there!</s>", " Ünïcödé ✓ — 東京 🚀</s>", " 7</s>"]
    assert "[/INST] Hello there!</s>" in enc.text


def test_trait2_injected_prompt_text_is_context(family):
    """DeepSeek-R1: the generation prompt injects <think>\\n, history turns render <｜Assistant｜> +
    the answer with its reasoning stripped: trained from after what the prompt or the header renders."""
    tok, _ = family("deepseek_r1")
    _, messages, _, _ = case("deepseek_r1", "reasoning")
    assert ChatEncoder(tok).prompt(messages[:2]).endswith("<｜Assistant｜><think>\n")
    trained, enc = runs(tok, messages)
    assert trained == ["\n\n36.<｜end▁of▁sentence｜>", "\n\n9.<｜end▁of▁sentence｜>", "\n\n81.<｜end▁of▁sentence｜>"]
    assert "<think>" not in enc.text  # the template drops the reasoning: nothing of it to train


def test_trait3_eos_after_the_last_turn_and_a_final_user_turn_are_not_trained(family):
    """Phi: ...<|end|> then the EOS after the last message only; the model stops at <|end|>."""
    tok, _ = family("phi")
    trained, enc = runs(tok, case("phi", "three_turns")[1])
    assert enc.text.endswith("7<|end|><|endoftext|>") and trained[-1] == "7<|end|>"
    trained, enc = runs(tok, case("phi", "ends_with_user")[1])
    assert enc.text.endswith("<|user|>Thanks!<|end|><|endoftext|>")
    assert trained == ["2<|end|>", "3<|end|>"]


def test_trait4_content_dropped_next_to_tool_calls(family):
    """OLMo: a turn with tool calls renders only its call block: that block is the trained span."""
    tok, _ = family("olmo")
    _, messages, tools, _ = case("olmo", "tools")
    trained, enc = runs(tok, messages, tools)
    assert "Now Rome." not in enc.text
    assert trained[1] == '<function_calls>get_weather(city="Rome")</function_calls><|im_end|>'


@pytest.mark.parametrize("switch", ["system_text", "enable_thinking"])
def test_trait5_mode_switched_by_message_text(family, switch):
    """SmolLM3: /no_think in the system prompt (or enable_thinking=false) injects an empty think
    block in every assistant turn; it is context, never a target."""
    tok, _ = family("smollm3")
    _, messages, _, _ = case("smollm3", "three_turns")
    kw = {}
    if switch == "system_text":
        messages = [{"role": "system", "content": "Be brief. /no_think"}] + messages[1:]
    else:
        kw = {"enable_thinking": False}
    trained, enc = runs(tok, messages, **kw)
    assert enc.text.count("<think>\n\n</think>\n") == 3
    assert trained == ["  Hello there!  \n<|im_end|>", "Ünïcödé ✓ — 東京 🚀<|im_end|>", "7<|im_end|>"]


def test_trait6_tool_call_ids_and_fields_are_kept():
    """Templates read ids (Mistral refuses calls without a 9-character one), names, tool_call_id."""
    messages = normalize_messages([
        {"role": "user", "content": "w?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "abc123XYZ", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}},
            {"id": "def456UVW", "name": "get_weather", "arguments": '{"city": "Rome"}'}]},
        {"role": "tool", "content": "cold", "tool_call_id": "abc123XYZ", "name": "get_weather"},
        {"role": "assistant", "content": "Cold.", "weight": 2},
    ], RowRef("t", 0))
    first, second = messages[1]["tool_calls"]
    assert first == {"type": "function", "id": "abc123XYZ", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}
    assert second == {"type": "function", "id": "def456UVW", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}
    assert messages[2]["tool_call_id"] == "abc123XYZ" and messages[2]["name"] == "get_weather"
    assert messages[3]["weight"] == 2  # a field the row gives is the template's to read


def test_trait6_mistral_tool_rows_from_parquet_keep_their_ids(tmp_path, family):
    """Through the dataset (Parquet struct columns): the ids survive and the masks are exact."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from omegaconf import OmegaConf

    from verl_ext.data.datasets import ChatSFTDataset

    tok, fam = family("mistral")
    _, messages, tools, _ = case("mistral", "tools")
    path = tmp_path / "tools.parquet"
    pq.write_table(pa.Table.from_pylist([{"messages": messages, "tools": json.dumps(tools)}]), path)
    ds = ChatSFTDataset(str(path), tok, OmegaConf.create({"max_length": 4096, "cache_dir": str(tmp_path / "c")}))
    plain = [{k: v for k, v in m.items() if k != "loss"} for m in normalize_messages(messages, RowRef("t", 0))]
    ids, mask, _ = reference(tok, fam, plain, tools, {})
    assert ds[0]["input_ids"].tolist() == ids and ds[0]["loss_mask"].tolist() == mask


def test_trait7_content_none_and_empty_render_differently(family):
    """DeepSeek-R1: a tool-call turn with content None renders its calls; with "" an empty answer
    (the calls are dropped). Each is passed as the row has it, and each is exact."""
    tok, fam = family("deepseek_r1")
    _, messages, tools, _ = case("deepseek_r1", "tools")
    for content, rendered in ((None, "<｜tool▁calls▁begin｜>"), ("", "<｜Assistant｜><｜end▁of▁sentence｜>")):
        rows = [dict(m) for m in messages]
        rows[2]["content"] = content
        rows = normalize_messages(rows, RowRef("t", 0))
        assert rows[2]["content"] == content
        enc = ChatEncoder(tok).encode(rows, tools)
        ids, mask, text = reference(tok, fam, rows, tools, {})
        assert rendered in text and enc.input_ids.tolist() == ids and enc.loss_mask.tolist() == mask


def test_content_none_on_a_template_that_cannot_render_it(qwen3_tokenizer):
    """The real Qwen3 template tests '</think>' in content: None fails there, so it gets "" (as before)."""
    messages = [{"role": "user", "content": "w?"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
                {"role": "tool", "content": "cold"}, {"role": "assistant", "content": "Cold."}]
    rows = normalize_messages(messages, RowRef("t", 0))
    assert rows[1]["content"] is None
    enc = ChatEncoder(qwen3_tokenizer).encode(rows, [WEATHER], False)
    empty = [{**m, "content": ""} if m["content"] is None else m for m in rows]
    assert enc.text == qwen3_tokenizer.apply_chat_template(empty, tools=[WEATHER], tokenize=False, enable_thinking=False)
    assert trained_text(qwen3_tokenizer, enc.input_ids, enc.loss_mask)[0].startswith("<tool_call>")


def test_harmony_final_history_and_call_markers(family):
    """A past answer ends with <|end|>, the final one with <|return|>, a tool call with <|call|>; the
    function name in the call's header is the model's, in the tool result's header it is context."""
    tok, _ = family("harmony")
    _, messages, tools, _ = case("harmony", "tools")
    trained, enc = runs(tok, messages, tools)
    assert trained[0].startswith(" to=functions.get_weather<|channel|>commentary json") and trained[0].endswith("<|call|>")
    assert trained[0].count("<|call|>") == 2 and trained[-1].endswith("<|return|>")
    assert "<|start|>functions.get_weather to=assistant" in enc.text
    assert not any("to=assistant" in run for run in trained)
    trained, _ = runs(tok, case("harmony", "ends_with_user")[1])
    assert trained == ["<|channel|>final<|message|>2<|end|>", "<|channel|>final<|message|>3<|end|>"]


def test_llama_builtin_tool_call(family):
    """Builtin tools: <|python_tag|>name.call(...) closed by <|eom_id|> (the name steers the template)."""
    tok, _ = family("llama3")
    _, messages, tools, kw = case("llama3", "builtin_tool")
    trained, _ = runs(tok, messages, tools, **kw)
    assert trained[0] == '<|python_tag|>brave_search.call(query="news today")<|eom_id|>'


def test_a_turn_rendered_without_any_header_starts_where_the_previous_message_closes(family):
    """DeepSeek-R1's template never resets its tool-call state: a later tool-calling turn after a user
    message renders with no <｜Assistant｜> at all, right after the user's text. It starts there."""
    tok, fam = family("deepseek_r1")
    _, messages, tools, _ = case("deepseek_r1", "tools")
    later = {"role": "assistant", "content": None,
             "tool_calls": [{"id": "call00009", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}
    rows = normalize_messages(messages + [{"role": "user", "content": "And Oslo"}, later,
                                          {"role": "tool", "content": "cold", "tool_call_id": "call00009"},
                                          {"role": "assistant", "content": "Cold."}], RowRef("t", 0))
    enc = ChatEncoder(tok).encode(rows, tools)
    ids, mask, text = reference(tok, fam, rows, tools, {})
    assert "<｜User｜>And Oslo\n<｜tool▁call▁begin｜>" in text
    assert enc.input_ids.tolist() == ids and enc.loss_mask.tolist() == mask


def test_a_turn_that_cannot_be_placed_is_refused_naming_row_turn_and_fix(qwen3_tokenizer):
    """A template that drops the header of turns depending on how many messages follow them: neither
    a fresh conversation nor the turn's own conversation cut after it shows its layout. Refused,
    naming the turn, the trait and the fix; the dataset names the row."""
    import copy

    from verl_ext.data.datasets import ChatSFTDataset

    tok = copy.copy(qwen3_tokenizer)
    tok.chat_template = (
        "{%- for m in messages -%}{%- if m.role == 'user' -%}"
        "{{- '<|im_start|>user\\n' + m.content + '<|im_end|>\\n' -}}{%- else -%}"
        "{%- if loop.revindex <= 2 -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
        "{{- m.content + '<|im_end|>\\n' -}}{%- endif -%}{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}")
    rows = normalize_messages([{"role": "user", "content": "a"}, {"role": "assistant", "content": "one"},
                               {"role": "user", "content": "b"}, {"role": "assistant", "content": "two"},
                               {"role": "user", "content": "c"}, {"role": "assistant", "content": "three"}], RowRef("t", 0))
    with pytest.raises(TemplateAlignmentError, match=r"assistant message 1: .*without its assistant header.*custom_chat_template"):
        ChatEncoder(tok).encode(rows)
    encoder = ChatSFTDataset.row_encoder(tok, {"max_length": 4096})
    with pytest.raises(DataError, match=r"data.jsonl, row 3: assistant message 1"):
        encoder.encode_row({"messages": rows}, RowRef("data.jsonl", 3))


def test_whitespace_split_at_a_header_boundary_is_a_deliberate_choice(family):
    """An answer starting with newlines after a header ending with one ("\\n" + "\\n\\nHi" -> one "\\n\\n\\n"
    token): tokenized at the boundary, as inference sees it (the prompt ends at the header). The text
    and the trained characters are the reference's; the ids differ from the one-piece tokenization there
    (the reference trains the merged token, header newline included)."""
    tok, fam = family("qwen25")
    messages = normalize_messages([{"role": "user", "content": "q"}, {"role": "assistant", "content": "\n\nHi"},
                                   {"role": "user", "content": "q2"}, {"role": "assistant", "content": "Bye"}], RowRef("t", 0))
    enc = ChatEncoder(tok).encode(messages)
    ids, mask, text = reference(tok, fam, messages, None, {})
    assert enc.text == text and enc.straddling_tokens == 1
    assert enc.input_ids.tolist() != ids and tok.decode(enc.input_ids) == text
    assert trained_text(tok, enc.input_ids, enc.loss_mask) == ["\n\nHi<|im_end|>", "Bye<|im_end|>"]
    assert trained_text(tok, ids, mask) == ["\n\n\nHi<|im_end|>", "Bye<|im_end|>"]


def test_two_renders_per_conversation_once_the_template_is_probed(family, monkeypatch):
    """Probes are cached per (system messages, tools, kwargs): steady state is two renders."""
    tok, _ = family("mistral")
    _, messages, tools, _ = case("mistral", "tools")
    encoder = ChatEncoder(tok)
    rows = normalize_messages(messages, RowRef("t", 0))
    encoder.encode(rows, tools)
    calls = []
    original = ChatEncoder.render
    monkeypatch.setattr(ChatEncoder, "render", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    for i in range(5):
        encoder.encode([{**m, "content": f"{m['content']} {i}"} if m["role"] == "user" else m for m in rows], tools)
    assert len(calls) == 10


def test_encoder_pickles_without_its_probes(family):
    """Cache workers may receive the encoder pickled (spawn, Ray): probes are recomputed there."""
    import pickle

    tok, _ = family("phi")
    _, messages, tools, _ = case("phi", "tools")
    rows = normalize_messages(messages, RowRef("t", 0))
    encoder = ChatEncoder(tok)
    first = encoder.encode(rows, tools)
    copy_ = pickle.loads(pickle.dumps(encoder))
    again = copy_.encode(rows, tools)
    assert again.input_ids.tolist() == first.input_ids.tolist() and again.loss_mask.tolist() == first.loss_mask.tolist()
