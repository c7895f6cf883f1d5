"""Prefix reuse in the hf backend: same greedy text as full prefills, far fewer prefill tokens.

The stock tiny Qwen3 answers every prompt with newlines (its random init favours one token), which
would make "same output" trivially true; ``varied_dir`` re-draws its weights under a fixed seed so
greedy text depends on the whole conversation.
"""
from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from verl_ext_eval.backends import make_backend
from verl_ext_eval.backends.base import SamplingParams
from verl_ext_eval.backends.prefix_cache import PrefixCache, batch_layout, common_prefix

GREEDY = SamplingParams(max_new_tokens=10)


# -- pure parts ---------------------------------------------------------------------------------
def test_batch_layout_skips_only_what_every_row_can():
    # rows of 10, 7 and 12 tokens with 8, 0 and 11 cached: the fresh row needs 7 fresh columns
    layout = batch_layout([10, 7, 12], [8, 0, 11])
    assert layout.width == 12 and layout.past == 5 and layout.cached == (3, 0, 5)
    assert batch_layout([10, 12], [9, 11]) == batch_layout([10, 12], [9, 11])
    assert batch_layout([10, 12], [9, 11]).cached == (9, 11)


def test_common_prefix_is_token_exact():
    a = np.array([1, 2, 3, 4])
    assert common_prefix(a, np.array([1, 2, 3, 4, 5])) == 4
    assert common_prefix(a, np.array([1, 2, 9, 4])) == 2
    assert common_prefix(a, np.array([], dtype=np.int64)) == 0


def _states(n: int) -> list:
    return [torch.zeros(1, n, 2)]


def test_cache_drops_extended_entries_and_evicts_least_recent():
    cache = PrefixCache(max_tokens=10)
    cache.store([1, 2, 3], _states(3), _states(3), extends=None)
    first = cache.lookup([1, 2, 3, 4]).entry
    cache.store([1, 2, 3, 4, 5], _states(5), _states(5), extends=first)
    assert len(cache) == 1 and cache.cached_total == 5  # the episode moved on: its old turn is gone
    cache.store([7, 8, 9], _states(3), _states(3), extends=None)
    cache.touch(cache.lookup([1, 2, 3, 4, 5, 6]).entry)
    cache.store([4, 4, 4], _states(3), _states(3), extends=None)  # 11 > 10: the least recent goes
    assert cache.cached_total <= 10 and cache.stats.evictions == 1
    assert cache.lookup([7, 8, 9, 1]).length == 0 and cache.lookup([1, 2, 3, 4, 5, 0]).length == 5
    match = cache.lookup([1, 2, 3, 4, 5])
    assert match.length == 5 and match.usable == 4  # one prompt token must always run


# -- on a model ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def varied_dir(tiny_model_dir, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("varied-qwen3")
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir), dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(out)
    return out


def _backend(path, reuse: bool, **kw):
    return make_backend("hf", path=str(path), dtype="float32", max_batch_size=8, batch_window_s=0.05,
                        chat_template_kwargs={"enable_thinking": False}, prefix_reuse=reuse, **kw)


async def _episode(backend, k: int, turns: int, stagger_s: float = 0.0) -> list[str]:
    await asyncio.sleep(stagger_s * (k % 3))  # later starters share batches with cached rows
    messages = [{"role": "system", "content": "You craft items. Answer with one action."},
                {"role": "user", "content": f"Goal {k}: craft {k * 7} sticks from planks."}]
    texts = []
    for t in range(turns):
        gen = await backend.chat(messages, GREEDY)
        texts.append(gen.text)
        messages += [{"role": "assistant", "content": gen.text},
                     {"role": "user", "content": f"Observation {t}: got {t + k} planks."}]
    return texts


async def _play(backend, episodes: int, turns: int) -> list[list[str]]:
    return list(await asyncio.gather(*[_episode(backend, k, turns, 0.4) for k in range(episodes)]))


@pytest.fixture(scope="module")
def both(varied_dir):
    """Greedy texts and prefill counters for 1 and 6 episodes in flight, with and without reuse."""
    out = {}
    for reuse in (False, True):
        backend = _backend(varied_dir, reuse)
        try:
            alone = asyncio.run(_play(backend, 1, 5))
            stats_alone = dict(backend.prefix_stats())
            many = asyncio.run(_play(backend, 6, 5))
            out[reuse] = (alone, many, stats_alone, backend.prefix_stats())
        finally:
            asyncio.run(backend.close())
    return out


def test_greedy_text_identical_with_and_without_reuse(both):
    alone, many = both[False][0], both[False][1]
    assert len({t for ep in many for t in ep}) > 6  # the texts really vary with the conversation
    assert both[True][0] == alone
    assert both[True][1] == many


def test_reuse_prefills_far_fewer_tokens(both):
    assert both[False][3] == {}  # no reuse, no counters
    alone, total = both[True][2], both[True][3]
    assert alone["requests"] == 5 and alone["misses"] == 1 and alone["hits"] == 4
    assert alone["prefill_tokens"] + alone["cached_tokens"] == alone["prompt_tokens"]
    assert total["prefill_tokens"] < 0.4 * total["prompt_tokens"], total


def test_rerendered_history_falls_back_and_is_counted(varied_dir):
    backend = _backend(varied_dir, True)
    plain = _backend(varied_dir, False)
    try:
        first = [{"role": "user", "content": "Say something about planks and sticks."}]
        gen = asyncio.run(backend.chat(first, GREEDY))
        # the next request changes the first turn: only the tokens before the change may be reused
        edited = [{"role": "user", "content": "Say nothing about planks and sticks."},
                  {"role": "assistant", "content": gen.text}, {"role": "user", "content": "Again."}]
        again = asyncio.run(backend.chat(edited, GREEDY))
        stats = backend.prefix_stats()
        assert stats["mismatches"] == 1 and stats["hits"] == 1
        assert again.meta["cached_tokens"] < len(backend.chat_ids(first)) - 1
        assert again.text == asyncio.run(plain.chat(edited, GREEDY)).text
    finally:
        asyncio.run(backend.close())
        asyncio.run(plain.close())


def test_completions_reuse_and_cache_stays_bounded(varied_dir):
    backend = _backend(varied_dir, True, prefix_cache_tokens=400)
    plain = _backend(varied_dir, False)
    try:
        async def chain(b, k):
            prompt, texts = f"Story {k}: once upon a time", []
            for _ in range(6):
                g = await b.complete(prompt, GREEDY)
                texts.append(g.text)
                prompt += g.text + " and then"
            return texts

        async def many(b):
            return await asyncio.gather(*[chain(b, k) for k in range(4)])

        assert asyncio.run(many(backend)) == asyncio.run(many(plain))
        stats = backend.prefix_stats()
        assert stats["hits"] >= 16 and backend.prefix_cache.cached_total <= 400
    finally:
        asyncio.run(backend.close())
        asyncio.run(plain.close())
