"""The trained tokens of every conversation are exactly the assistant's own text + <|im_end|>,
and the token sequence is exactly the Qwen3 template's full render."""
import pytest

from verl_ext.data.masks import ChatEncoder
from verl_ext.rows import RowRef, normalize_messages

from tests.verl_ext.chat_families import trained_text

END = "<|im_end|>"
EMPTY_THINK = "<think>\n\n</think>\n\n"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def trained_runs(tok, enc):
    """Decoded runs of consecutive trained tokens."""
    return trained_text(tok, enc.input_ids.tolist(), enc.loss_mask.tolist())


def encode(tok, messages, tools=None, thinking=None, **kw):
    msgs = normalize_messages(messages, RowRef("test", 0))
    enc = ChatEncoder(tok, **kw).encode(msgs, tools, thinking)
    kwargs = {} if thinking is None else {"enable_thinking": thinking}
    full = tok.apply_chat_template(msgs, tools=tools, tokenize=False, **kwargs)
    if not kw.get("reasoning_in_history"):
        # the training sequence IS the template's full render, token for token
        assert enc.text == full
        assert enc.input_ids.tolist() == tok(full, add_special_tokens=False)["input_ids"]
    assert enc.straddling_tokens == 0
    return enc


def test_single_turn_trains_answer_and_eos(qwen3_tokenizer):
    msgs = [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "2+3=5."}]
    enc = encode(qwen3_tokenizer, msgs, thinking=False)
    assert trained_runs(qwen3_tokenizer, enc) == ["2+3=5." + END]
    # thinking off: the injected empty think block is prompt, not target
    assert EMPTY_THINK in enc.text


def test_single_turn_thinking_on_trains_think_block(qwen3_tokenizer):
    msgs = [
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "The answer is 5.", "reasoning_content": "Add 2 and 3."},
    ]
    enc = encode(qwen3_tokenizer, msgs, thinking=True)
    assert trained_runs(qwen3_tokenizer, enc) == ["<think>\nAdd 2 and 3.\n</think>\n\nThe answer is 5." + END]


def test_inline_think_in_content_is_kept_for_final_turn(qwen3_tokenizer):
    msgs = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "<think>\nstep one\n</think>\n\nfinal"},
    ]
    enc = encode(qwen3_tokenizer, msgs)
    assert trained_runs(qwen3_tokenizer, enc) == ["<think>\nstep one\n</think>\n\nfinal" + END]


def test_six_turns_with_system_prompt(qwen3_tokenizer):
    msgs = [{"role": "system", "content": "You are terse."}]
    answers = [f"answer number {i}" for i in range(6)]
    for i, a in enumerate(answers):
        msgs += [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": a}]
    enc = encode(qwen3_tokenizer, msgs, thinking=False)
    assert trained_runs(qwen3_tokenizer, enc) == [a + END for a in answers]
    # nothing of the system prompt or the questions is trained
    trained_text = "".join(trained_runs(qwen3_tokenizer, enc))
    assert "terse" not in trained_text and "question" not in trained_text


def test_tool_calls_trained_tool_results_masked(qwen3_tokenizer):
    msgs = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        {"role": "tool", "content": "sunny, 21C"},
        {"role": "assistant", "content": "Let me check London too.", "tool_calls": '[{"function": {"name": "get_weather", "arguments": "{\\"city\\": \\"London\\"}"}}]'},
        {"role": "tool", "content": "rain"},
        {"role": "assistant", "content": "Paris is sunny; London has rain."},
    ]
    enc = encode(qwen3_tokenizer, msgs, tools=[WEATHER_TOOL], thinking=False)
    runs = trained_runs(qwen3_tokenizer, enc)
    assert runs == [
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' + END,
        'Let me check London too.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "London"}}\n</tool_call>' + END,
        "Paris is sunny; London has rain." + END,
    ]
    assert "sunny, 21C" in enc.text and not any("sunny, 21C" in r for r in runs)


def test_historical_reasoning_dropped_by_default_kept_on_request(qwen3_tokenizer):
    msgs = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "A1", "reasoning_content": "think one"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "A2", "reasoning_content": "think two"},
    ]
    enc = encode(qwen3_tokenizer, msgs, thinking=True)
    # Qwen3 renders reasoning only after the last user query: the model sees A1 bare
    assert trained_runs(qwen3_tokenizer, enc) == ["A1" + END, "<think>\nthink two\n</think>\n\nA2" + END]
    kept = encode(qwen3_tokenizer, msgs, thinking=True, reasoning_in_history=True)
    assert trained_runs(qwen3_tokenizer, kept) == [
        "<think>\nthink one\n</think>\n\nA1" + END,
        "<think>\nthink two\n</think>\n\nA2" + END,
    ]


def test_loss_false_turn_is_context_only(qwen3_tokenizer):
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "a bad early answer", "loss": False},
        {"role": "user", "content": "try again"},
        {"role": "assistant", "content": "a good answer", "loss": True},
    ]
    enc = encode(qwen3_tokenizer, msgs, thinking=False)
    assert trained_runs(qwen3_tokenizer, enc) == ["a good answer" + END]
    assert "a bad early answer" in enc.text


def test_agentgym_style_roles_and_observations(qwen3_tokenizer):
    msgs = [
        {"from": "human", "value": "Craft a stick.", "loss": None},
        {"from": "gpt", "value": "OK", "loss": False},
        {"from": "human", "value": "Crafting commands:\ncraft 4 stick using 2 planks\n\nGoal: craft stick."},
        {"from": "gpt", "value": "Thought:\nI need planks.\n\nAction:\nget 2 oak planks", "loss": True},
        {"from": "human", "value": "Got 2 oak planks"},
        {"from": "gpt", "value": "Thought:\nNow craft.\n\nAction:\ncraft 4 stick using 2 oak planks", "loss": True},
    ]
    enc = encode(qwen3_tokenizer, msgs, thinking=False)
    assert trained_runs(qwen3_tokenizer, enc) == [
        "Thought:\nI need planks.\n\nAction:\nget 2 oak planks" + END,
        "Thought:\nNow craft.\n\nAction:\ncraft 4 stick using 2 oak planks" + END,
    ]


def test_other_template_smollm2(tiny_model_dir):
    """A second real template (SmolLM2 ships its own, with a default system prompt)."""
    from transformers import AutoTokenizer

    from verl_ext.assets import convert_smollm2

    tok = AutoTokenizer.from_pretrained(str(convert_smollm2()))
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "goodbye"},
    ]
    enc = ChatEncoder(tok).encode(normalize_messages(msgs, RowRef("t", 0)))
    assert enc.text == tok.apply_chat_template(msgs, tokenize=False)
    assert trained_runs(tok, enc) == ["hello there<|im_end|>", "goodbye<|im_end|>"]


@pytest.mark.parametrize(
    "bad, match",
    [
        ([{"role": "user", "content": "only a question"}], "no trained assistant turn"),
        ([{"role": "narrator", "content": "x"}, {"role": "assistant", "content": "y"}], "role 'narrator'"),
        ([{"role": "user", "content": 5}, {"role": "assistant", "content": "y"}], "content must be a string"),
        (None, "'messages' is missing"),
    ],
)
def test_bad_conversations_name_the_row(bad, match):
    from verl_ext.rows import DataError

    with pytest.raises(DataError, match=match) as e:
        normalize_messages(bad, RowRef("data/train.parquet", 17))
    assert "data/train.parquet, row 17" in str(e.value)


def test_thinking_off_with_reasoning_trains_the_whole_block(qwen3_tokenizer):
    """Contradictory rows (thinking off, reasoning given): the template renders the block, and it is
    trained whole, never from inside it."""
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "Ans", "reasoning_content": "deep thought"}]
    enc = encode(qwen3_tokenizer, msgs, thinking=False)
    assert trained_runs(qwen3_tokenizer, enc) == ["<think>\ndeep thought\n</think>\n\nAns" + END]


def test_json_nulls_and_string_arguments_kept_verbatim(qwen3_tokenizer):
    import json

    tool = {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "cursor": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}}}}}
    from verl_ext.rows import normalize_tools

    tools = normalize_tools(json.dumps([tool]), RowRef("t", 0))
    msgs = [
        {"role": "user", "content": "find cats"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "search", "arguments": {"query": "cats", "cursor": None}}}]},
        {"role": "tool", "content": "[]"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "search", "arguments": '{"query":"dogs"}'}}]},
        {"role": "tool", "content": "[]"},
        {"role": "assistant", "content": "Nothing found."},
    ]
    enc = encode(qwen3_tokenizer, msgs, tools=tools, thinking=False)
    assert '"default": null' in enc.text
    runs = trained_runs(qwen3_tokenizer, enc)
    assert '{"query": "cats", "cursor": null}' in runs[0]
    assert '"arguments": {"query":"dogs"}' in runs[1]


def test_leading_newlines_of_a_turn_are_trained(qwen3_tokenizer):
    """"\\n\\n\\n" would straddle the header and the answer: split there, train all the model wrote."""
    msgs = normalize_messages([{"role": "user", "content": "q1"}, {"role": "assistant", "content": "\n\nFirst answer."},
                               {"role": "user", "content": "q2"}, {"role": "assistant", "content": "Second."}], RowRef("t", 0))
    enc = ChatEncoder(qwen3_tokenizer).encode(msgs, None, False)
    assert enc.text == qwen3_tokenizer.apply_chat_template(msgs, tokenize=False, enable_thinking=False)
    assert enc.straddling_tokens > 0
    assert qwen3_tokenizer.decode(enc.input_ids) == enc.text
    assert trained_runs(qwen3_tokenizer, enc) == ["\n\nFirst answer." + END, "Second." + END]
