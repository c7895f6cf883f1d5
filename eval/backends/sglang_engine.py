"""``sglang`` backend: SGLang's offline ``sgl.Engine`` in this process (GPU machines).

Chat messages are rendered with the model's tokenizer (chat template + generation prompt) and sent
as token ids, so nothing adds a second BOS; SGLang batches concurrent ``async_generate`` calls
itself. Needs CUDA and ``pip install sglang`` (the ``gpu`` extra); on CPU use the ``server`` backend
with the SGLang CPU venv (``scripts/sglang_cpu_venv.sh``) or the ``hf`` backend.

Written against sglang 0.5.23 ``Engine.async_generate(prompt|input_ids, sampling_params,
return_logprob, top_logprobs_num)`` returning ``{"text", "meta_info": {"finish_reason": {"type",
"matched"}, "completion_tokens", "output_top_logprobs": [[(logprob, id, text), ...], ...]}}``.
SGLang spawns worker processes: create the backend under ``if __name__ == "__main__":``.
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from verl_ext.chat_template import apply_chat_template_override
from verl_ext.data.prompt_format import prompt_ids
from verl_ext_eval.backends.base import Generation, SamplingParams, build_generation, request_fields

logger = logging.getLogger(__name__)


class BackendUnavailableError(RuntimeError):
    """This backend cannot run on this machine; the message names the alternative."""


def _require_cuda_and_sglang():
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a core dependency
        raise BackendUnavailableError(f"the sglang backend needs torch: {e}") from e
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "the sglang backend runs SGLang's Engine in-process and needs a CUDA GPU, but none is "
            "available here; on CPU use backend=server (a managed SGLang server from the CPU venv: "
            "bash scripts/sglang_cpu_venv.sh) or backend=hf (local transformers)"
        )
    try:
        import sglang
    except ImportError as e:
        raise BackendUnavailableError(
            f"the sglang backend needs the sglang package ({e}); install it with "
            f"`pip install 'verl-ext[gpu]'` or use backend=server / backend=hf"
        ) from e
    return sglang


class SGLangEngineBackend:
    """In-process ``sgl.Engine`` for ``model_path``; ``engine_kwargs`` go to ``sgl.Engine`` (e.g.
    ``tp_size``, ``mem_fraction_static``, ``context_length``)."""

    name = "sglang"

    def __init__(
        self,
        model_path: str | Path,
        chat_template_kwargs: dict | None = None,
        chat_template: str | None = None,
        top_logprobs: int = 5,
        engine_kwargs: dict | None = None,
    ):
        sgl = _require_cuda_and_sglang()
        if not Path(model_path).exists():
            raise BackendUnavailableError(f"sglang backend: model path {model_path} does not exist")
        self.model_path = str(model_path)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.top_logprobs = top_logprobs
        logger.info("starting sgl.Engine for %s", self.model_path)
        self.engine = sgl.Engine(model_path=self.model_path, **(engine_kwargs or {}))
        tokenizer = getattr(getattr(self.engine, "tokenizer_manager", None), "tokenizer", None)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        # inline Jinja or a .jinja file (as training's model.custom_chat_template); chat() renders here
        self.tokenizer = apply_chat_template_override(tokenizer, chat_template, "backend chat_template")

    def _sampling_params(self, params: SamplingParams) -> dict:
        return request_fields(params, max_tokens_key="max_new_tokens", seed_key="sampling_seed")

    async def _generate(self, params: SamplingParams, **inputs: Any) -> Generation:
        logprob_args = {"return_logprob": True, "top_logprobs_num": self.top_logprobs} if params.logprobs else {}
        out = await self.engine.async_generate(sampling_params=self._sampling_params(params), **inputs,
                                               **logprob_args)
        info = out.get("meta_info") or {}
        reason = info.get("finish_reason") or {}
        kind = reason.get("type") if isinstance(reason, dict) else reason
        if kind == "abort":
            raise RuntimeError(f"sglang engine aborted the request: {reason.get('message', reason)}")
        meta = {}
        if isinstance(reason, dict) and isinstance(reason.get("matched"), str):
            meta["matched_stop"] = reason["matched"]
        steps = None
        if params.logprobs and info.get("output_top_logprobs"):
            steps = [[entry[0] for entry in step] for step in info["output_top_logprobs"] if step]
        return build_generation(out.get("text") or "", kind, info.get("completion_tokens"), params, steps, meta)

    async def chat(self, messages: list[dict], params: SamplingParams) -> Generation:
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  **self.chat_template_kwargs)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return await self._generate(params, input_ids=ids)

    async def complete(self, prompt: str, params: SamplingParams) -> Generation:
        # tokenized as data.prompt_format=plain trains the prompt
        return await self._generate(params, input_ids=prompt_ids(self.tokenizer, prompt))

    async def close(self) -> None:
        engine, self.engine = getattr(self, "engine", None), None
        if engine is not None:
            await asyncio.to_thread(engine.shutdown)
