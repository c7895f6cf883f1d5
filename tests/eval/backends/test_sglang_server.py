"""The server backend against a real SGLang server from the CPU venv (scripts/sglang_cpu_venv.sh),
serving SmolLM2-135M-Instruct. SGLang's greedy output is not batch-invariant on CPU, so concurrent
answers are only checked for being sane, not equal to the single ones."""
from __future__ import annotations

import asyncio
import os

import pytest

from verl_ext_eval.backends import make_backend
from verl_ext_eval.backends.base import SamplingParams
from verl_ext_eval.backends.managed_server import default_sglang_python, port_is_free

pytestmark = [
    pytest.mark.sglang,
    pytest.mark.slow,
    # in CI (CI=true) the venv is built by .ci/run: a missing one fails here instead of skipping
    pytest.mark.skipif(not default_sglang_python().exists() and not os.environ.get("CI"),
                       reason=f"no SGLang CPU venv at {default_sglang_python()}: run bash scripts/sglang_cpu_venv.sh"),
]


def test_managed_sglang_chat_completion_stop_concurrency(tmp_path):
    from verl_ext.assets import convert_smollm2

    backend = make_backend("server", model_path=str(convert_smollm2()), max_concurrency=8,
                           launch={"log_path": str(tmp_path / "sglang.log"), "startup_timeout_s": 400})
    port = backend.server.port
    greedy = SamplingParams(max_new_tokens=24, logprobs=True)

    async def go():
        try:
            chat = await backend.chat([{"role": "user", "content": "What is 2+3?"}], greedy)
            again = await backend.chat([{"role": "user", "content": "What is 2+3?"}], greedy)
            completion = await backend.complete("The capital of France is", SamplingParams(max_new_tokens=20, stop=(".",)))
            short = await backend.complete("Count: 1, 2, 3,", SamplingParams(max_new_tokens=3))
            many = await asyncio.gather(*[
                backend.chat([{"role": "user", "content": f"Say the number {i}."}], SamplingParams(max_new_tokens=8))
                for i in range(4)
            ])
            return chat, again, completion, short, many
        finally:
            await backend.close()

    chat, again, completion, short, many = asyncio.run(go())
    assert "5" in chat.text and chat.finish_reason == "stop" and 0 < chat.num_tokens < 24
    assert again.text == chat.text  # the same request alone repeats exactly under greedy
    assert chat.entropy is not None and chat.entropy >= 0
    assert "Paris" in completion.text and "." not in completion.text and completion.finish_reason == "stop"
    assert short.finish_reason == "length" and short.num_tokens == 3
    assert len(many) == 4 and all(g.text.strip() and g.num_tokens > 0 for g in many)
    assert backend.server is None and port_is_free(port)
