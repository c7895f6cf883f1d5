"""The hf backend on the tiny random Qwen3 (fast) and on SmolLM2-135M (slow: real text, real EOS)."""
from __future__ import annotations

import asyncio

import pytest
import torch

from verl_ext_eval.backends import make_backend
from verl_ext_eval.backends.base import SamplingParams

PROMPTS = [
    "What is 2+3?",
    "Name a colour.",
    "Write a long haiku about the sea and the wind, please, with many words in it.",
    "Hi",
]


def _chat(q: str) -> list[dict]:
    return [{"role": "user", "content": q}]


def run(coro):
    return asyncio.run(coro)


async def _alone_and_batched(backend, params, prompts=PROMPTS):
    alone = [await backend.chat(_chat(q), params) for q in prompts]
    batched = await asyncio.gather(*[backend.chat(_chat(q), params) for q in prompts])
    return alone, batched


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    backend = make_backend("hf", path=str(tiny_model_dir), max_batch_size=8, batch_window_s=0.05, dtype="float32",
                           chat_template_kwargs={"enable_thinking": False})
    yield backend
    run(backend.close())


def _manual_entropy(backend, prompt_ids: list[int], n: int) -> float:
    """Mean raw next-token entropy over ``n`` greedy tokens, from plain ``generate`` + one forward."""
    prompt = torch.tensor([prompt_ids])
    with torch.no_grad():
        seq = backend.model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                                     max_new_tokens=n, min_new_tokens=n)
        logits = backend.model(seq[:, :-1]).logits[0, len(prompt_ids) - 1:].float()
    logp = torch.log_softmax(logits, -1)
    return float(-(logp.exp() * logp).sum(-1).mean())


def test_greedy_same_alone_or_batched_tiny(tiny):
    params = SamplingParams(max_new_tokens=12)
    alone, batched = run(_alone_and_batched(tiny, params))
    assert [g.meta["batch_size"] for g in alone] == [1] * 4
    assert [g.meta["batch_size"] for g in batched] == [4] * 4  # prompts of different lengths: left padding
    assert [g.text for g in batched] == [g.text for g in alone]
    for g in alone:
        assert g.finish_reason == "length" and g.num_tokens == 12


def test_chat_template_kwargs_reach_the_template(tiny):
    ids = tiny.chat_ids(_chat("hi"))
    text = tiny.tokenizer.decode(ids)
    assert text.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")  # enable_thinking=False


def test_complete_prompt_tokens_are_the_plain_training_prompt(tiny):
    from verl_ext.data.prompt_format import prompt_ids

    text = "Solve this math problem:\n\n1+1?\n\nAnswer:"
    g = run(tiny.complete(text, SamplingParams(max_new_tokens=2)))
    assert g.meta["prompt_tokens"] == len(prompt_ids(tiny.tokenizer, text))


@pytest.mark.parametrize("how", ["inline", "file"])
def test_custom_chat_template_replaces_the_models(tiny_model_dir, tmp_path, how):
    template = ("{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                "{% if add_generation_prompt %}### assistant:{% endif %}")
    value = template
    if how == "file":
        value = str(tmp_path / "t.jinja")
        (tmp_path / "t.jinja").write_text(template)
    backend = make_backend("hf", path=str(tiny_model_dir), dtype="float32", chat_template=value)
    try:
        assert backend.tokenizer.decode(backend.chat_ids(_chat("hi"))) == "### user: hi\n### assistant:"
    finally:
        run(backend.close())


def test_max_new_tokens_per_request_in_one_batch(tiny):
    async def go():
        return await asyncio.gather(*[tiny.complete("Hello there", SamplingParams(max_new_tokens=n)) for n in (3, 9)])

    short, long = run(go())
    assert short.meta["batch_size"] == 2
    assert (short.num_tokens, long.num_tokens) == (3, 9)
    assert short.finish_reason == long.finish_reason == "length"
    assert long.text.startswith(short.text)


def test_entropy_matches_a_plain_forward(tiny):
    params = SamplingParams(max_new_tokens=6, logprobs=True)
    g = run(tiny.chat(_chat(PROMPTS[0]), params))
    assert g.num_tokens == 6
    assert g.entropy == pytest.approx(_manual_entropy(tiny, tiny.chat_ids(_chat(PROMPTS[0])), 6), rel=1e-5)
    assert run(tiny.chat(_chat(PROMPTS[0]), SamplingParams(max_new_tokens=6))).entropy is None


def test_stop_string_cuts_text_and_counts_tokens(tiny):
    free = run(tiny.complete("Once upon a time", SamplingParams(max_new_tokens=16)))
    assert len(free.text) > 6
    stop = free.text[len(free.text) // 2:][:3]  # a piece of what greedy decoding will produce
    g = run(tiny.complete("Once upon a time", SamplingParams(max_new_tokens=16, stop=(stop,))))
    assert g.text == free.text[: free.text.index(stop)]
    assert g.finish_reason == "stop" and g.meta["matched_stop"] == stop
    assert 1 <= g.num_tokens <= free.num_tokens


def test_seeded_sampling_ignores_batch_companions(tiny):
    hot = SamplingParams(max_new_tokens=10, temperature=1.5, seed=123)

    async def go():
        alone = await tiny.complete("Hello", hot)
        with_others = await asyncio.gather(
            tiny.complete("Hello", hot),
            tiny.complete("Something else entirely", SamplingParams(max_new_tokens=10, temperature=1.0, seed=9)),
            tiny.complete("Hello", SamplingParams(max_new_tokens=10)),  # a greedy row in the same batch
        )
        other_seed = await tiny.complete("Hello", SamplingParams(max_new_tokens=10, temperature=1.5, seed=124))
        greedy = await tiny.complete("Hello", SamplingParams(max_new_tokens=10))
        return alone, with_others, other_seed, greedy

    alone, (same, _, greedy_in_batch), other_seed, greedy = run(go())
    assert same.meta["batch_size"] == 3
    assert same.text == alone.text
    assert other_seed.text != alone.text  # a random model at T=1.5: different seeds diverge
    assert greedy_in_batch.text == greedy.text


def test_bad_requests_fail_clearly(tiny, tmp_path):
    from verl_ext_eval.backends.hf_local import HFBackendError

    with pytest.raises(HFBackendError, match="max_new_tokens"):
        run(tiny.complete("x", SamplingParams(max_new_tokens=0)))
    with pytest.raises(HFBackendError, match="does not exist"):
        make_backend("hf", path=str(tmp_path / "missing"))


@pytest.mark.slow
def test_smollm2_greedy_batch_invariant_eos_and_stop():
    from verl_ext.assets import convert_smollm2

    backend = make_backend("hf", path=str(convert_smollm2()), batch_window_s=0.05, dtype="float32")
    try:
        params = SamplingParams(max_new_tokens=40, logprobs=True)
        alone, batched = run(_alone_and_batched(backend, params))
        assert [g.text for g in batched] == [g.text for g in alone]
        assert batched[0].meta["batch_size"] == 4
        first = alone[0]
        assert "5" in first.text and first.finish_reason == "stop"  # ends its turn with <|im_end|>
        assert "<|im_end|>" not in first.text and 0 < first.num_tokens < 40
        assert all(g.entropy is not None and 0 <= g.entropy < 10 for g in alone)
        expected = _manual_entropy(backend, backend.chat_ids(_chat(PROMPTS[0])), first.num_tokens)
        assert first.entropy == pytest.approx(expected, rel=1e-3)
        g = run(backend.complete("The capital of France is", SamplingParams(max_new_tokens=20, stop=(".",))))
        assert g.finish_reason == "stop" and "." not in g.text and "Paris" in g.text
    finally:
        run(backend.close())
