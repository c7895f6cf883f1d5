"""Issue 19: exact masks for the chat templates users bring. For every template family (written for
these tests with the traits of a public family's template: Llama 3.1 with tools, Qwen2.5 + hermes
tools, Qwen3, DeepSeek-R1, Mistral, Gemma, Phi-4-mini, Granite 3.3, OLMo 3, SmolLM3, GPT-OSS
harmony) and every conversation (system prompt, 3 assistant turns, tool calls + results, reasoning
in several turns, leading/trailing whitespace, unicode, a one-character answer, a final user turn,
a whitespace-only answer, identical answers, the template's own markup inside an answer), the ids
are ``apply_chat_template(tokenize=True)`` and the loss mask is transformers'
``return_assistant_tokens_mask`` on the same template annotated with ``{% generation %}``."""
import pytest

from tests.verl_ext.chat_families import FAMILIES, conversations, family_tokenizer, reference, trained_text
from verl_ext.data.masks import ChatEncoder
from verl_ext.rows import RowRef, normalize_messages

CASES = [pytest.param(family, case, id=f"{family.name}-{case[0]}")
         for family in FAMILIES.values() for case in conversations(family)]


def _encode(tok, messages, tools, kwargs):
    kwargs = dict(kwargs)
    thinking = kwargs.pop("enable_thinking", None)  # as the dataset passes a row's enable_thinking
    return ChatEncoder(tok, template_kwargs=kwargs).encode(messages, tools, thinking)


@pytest.mark.parametrize("family, case", CASES)
def test_ids_and_mask_equal_the_generation_reference(qwen3_tokenizer, family, case):
    name, messages, tools, kwargs = case
    tok = family_tokenizer(qwen3_tokenizer, family)
    messages = normalize_messages(messages, RowRef(name, 0))
    plain = [{k: v for k, v in m.items() if k != "loss"} for m in messages]
    ids, mask, text = reference(tok, family, plain, tools, kwargs)
    # the annotation changes nothing in the render: the reference is the template verl-ext renders
    assert text == tok.apply_chat_template(plain, tools=tools, tokenize=False, **kwargs)

    enc = _encode(tok, plain, tools, kwargs)
    assert enc.text == text
    assert enc.input_ids.tolist() == ids
    assert enc.straddling_tokens == 0
    assert trained_text(tok, enc.input_ids, enc.loss_mask) == trained_text(tok, ids, mask)
    assert enc.loss_mask.tolist() == mask

    if any(m.get("loss") is False for m in messages):  # loss: false drops exactly that turn
        with_loss = _encode(tok, messages, tools, kwargs)
        assert with_loss.input_ids.tolist() == ids
        dropped = [run for run in trained_text(tok, ids, mask)
                   if run not in trained_text(tok, with_loss.input_ids, with_loss.loss_mask)]
        assert len(dropped) == 1 and "a bad answer" in dropped[0]
        assert all(a <= b for a, b in zip(with_loss.loss_mask.tolist(), mask))


def test_every_family_is_covered_by_tool_and_reasoning_conversations():
    """The parametrization above really exercises the traits (a guard against a silently empty matrix)."""
    names = {(f.name, c[0]) for f in FAMILIES.values() for c in conversations(f)}
    assert len(FAMILIES) == 11
    assert {n for n, c in names if c == "tools"} == set(FAMILIES) - {"gemma"}
    assert all((n, "reasoning") in names and (n, "ends_with_user") in names for n in FAMILIES)
    assert ("smollm3", "no_think_system") in names and ("llama3", "builtin_tool") in names
