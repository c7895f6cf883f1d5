"""``hf`` backend: a local transformers model; concurrent requests are batched into one ``generate``.

Requests wait in a queue; a collector takes every waiting request with the same sampling settings
(up to ``max_batch_size``, after a short ``batch_window_s``) and runs one left-padded ``generate``
in a worker thread, so the event loop stays responsive while the model runs. Under greedy decoding a
prompt gives the same text alone or in a batch (attention mask + position ids from it).

Semantics are those of ``SamplingParams`` only: the model's own generation_config sampling defaults
(e.g. Qwen3's top_k=20) are ignored. Sampling is done per row by our own logits processor (own
temperature, top_p and seeded generator), so a seeded request gives the same text whatever shares its
batch; an entropy recorder runs before it, so ``entropy`` is the model's raw next-token entropy (nats).

With ``prefix_reuse`` (default) each row's key/value states are kept after ``generate`` and a later
request starting with the same token ids skips them (``prefix_cache``): a multi-turn episode's turn
costs its new tokens. ``prefix_stats()`` counts prefill tokens, hits and template mismatches.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verl_ext.chat_template import apply_chat_template_override
from verl_ext.data.prompt_format import prompt_ids
from verl_ext_eval.backends.base import Generation, SamplingParams, truncate_at_stop
from verl_ext_eval.backends.prefix_cache import BatchLayout, Match, PrefixCache, batch_cache, batch_layout, row_states

logger = logging.getLogger(__name__)


class HFBackendError(RuntimeError):
    """The model folder cannot be loaded or a request cannot be served."""


@dataclass
class _Request:
    ids: list[int]
    params: SamplingParams
    future: asyncio.Future
    batch_key: tuple = field(init=False)

    def __post_init__(self) -> None:
        # temperature, top_p, seed and max_new_tokens are per row; stop strings and logprobs per call
        self.batch_key = (self.params.stop, self.params.logprobs)


def _resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        # GPU: the checkpoint's dtype. CPU: bfloat16 where the CPU multiplies bf16 natively (AMX or
        # AVX512-BF16: SmolLM2, 16 x 720-token prefill, 4.7 s vs 14.4 s in float32 on this machine
        # kind), else float32. Pass dtype=float32 for bit-stable greedy output across batch sizes.
        if device != "cpu":
            return "auto"
        from verl_ext.seam.precision import compute_dtype

        return compute_dtype("cpu")
    try:
        chosen = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                  "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise HFBackendError(f"hf backend: unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None
    if device == "cpu" and chosen == torch.bfloat16:
        from verl_ext.seam.precision import cpu_bf16, slowdown_words

        if not cpu_bf16().native:
            logger.warning("hf backend: dtype=%s on a CPU without native bf16 (%s): %s; dtype=auto picks float32",
                           dtype, cpu_bf16().why, slowdown_words())
    return chosen


class _EntropyRecorder:
    """Logits processor that records each step's raw next-token entropy per row, unchanged scores."""

    def __init__(self) -> None:
        self.steps: list[Any] = []

    def __call__(self, input_ids, scores):
        import torch

        logp = torch.log_softmax(scores.float(), dim=-1)
        self.steps.append(-(logp.exp() * logp).nan_to_num(0.0).sum(-1).cpu())
        return scores


class _RowSampler:
    """Logits processor that samples each row with its own temperature, top_p and seeded generator,
    then leaves only the chosen token (generate runs greedy over it). A request's sample so depends
    on its own seed, not on which requests share its batch; greedy rows pass through unchanged."""

    def __init__(self, rows: list[SamplingParams], device: Any):
        import torch

        self.rows = rows
        self.generators = []
        for p in rows:
            if not p.sampling:
                self.generators.append(None)
                continue
            if p.temperature <= 0 or not 0 < p.top_p <= 1:
                raise HFBackendError(f"hf backend: sampling needs temperature > 0 and 0 < top_p <= 1, got "
                                     f"temperature={p.temperature}, top_p={p.top_p}")
            seed = p.seed if p.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
            self.generators.append(torch.Generator(device=device).manual_seed(seed))

    def __call__(self, input_ids, scores):
        import torch

        out = scores
        for i, (p, gen) in enumerate(zip(self.rows, self.generators)):
            if gen is None:
                continue
            probs = torch.softmax(scores[i].float() / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sorted_probs, order = probs.sort(descending=True)
                drop = sorted_probs.cumsum(-1) - sorted_probs >= p.top_p  # keep the smallest nucleus
                probs = probs.scatter(0, order, sorted_probs.masked_fill(drop, 0.0))
            token = torch.multinomial(probs, 1, generator=gen)
            if out is scores:
                out = scores.clone()
            out[i] = float("-inf")
            out[i, token] = 0.0
        return out


class HFBackend:
    """Local transformers model. ``path``: HF folder (or the folder of ``gguf_file``)."""

    name = "hf"

    def __init__(
        self,
        path: str | Path,
        dtype: str = "auto",
        device: str = "cpu",
        gguf_file: str | None = None,
        max_batch_size: int = 8,
        batch_window_s: float = 0.02,
        chat_template_kwargs: dict | None = None,
        chat_template: str | None = None,
        attn_implementation: str = "sdpa",
        prefix_reuse: bool = True,
        prefix_cache_tokens: int = 65536,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        path = Path(path)
        if not path.exists():
            raise HFBackendError(f"hf backend: model path {path} does not exist")
        if max_batch_size < 1:
            raise HFBackendError(f"hf backend: max_batch_size must be >= 1, got {max_batch_size}")
        extra = {"gguf_file": gguf_file} if gguf_file else {}
        self.path, self.device = path, device
        self.max_batch_size, self.batch_window_s = max_batch_size, batch_window_s
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), **extra)
        # inline Jinja or a .jinja file, as training's model.custom_chat_template
        apply_chat_template_override(self.tokenizer, chat_template, "backend chat_template")
        self.model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=_resolve_dtype(dtype, device), attn_implementation=attn_implementation, **extra
        ).to(device)
        self.model.eval()
        self.eos_ids = self._eos_ids()
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        # a clean config: only SamplingParams decide how we sample (no checkpoint top_k/min_p leaking in)
        self.model.generation_config = GenerationConfig(
            eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id,
            bos_token_id=getattr(self.model.generation_config, "bos_token_id", None),
        )
        self._torch = torch
        self.prefix_cache = PrefixCache(max_tokens=prefix_cache_tokens) if prefix_reuse and self._cache_reusable() \
            else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-generate")
        self._pending: list[_Request] = []
        self._worker: asyncio.Task | None = None
        logger.info("hf backend: %s on %s (%s), eos ids %s", path.name, device, self.model.dtype, sorted(self.eos_ids))

    def _eos_ids(self) -> set[int]:
        """EOS from config, generation_config and tokenizer, plus ``<|im_end|>`` when the chat template
        ends turns with it (SmolLM2's converted tokenizer names ``<|im_start|>`` as eos)."""
        ids: set[int] = set()
        for value in (getattr(self.model.config, "eos_token_id", None),
                      getattr(self.model.generation_config, "eos_token_id", None), self.tokenizer.eos_token_id):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        template = self.tokenizer.chat_template or ""
        im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        if "<|im_end|>" in str(template) and isinstance(im_end, int) and im_end != self.tokenizer.unk_token_id:
            ids.add(im_end)
        if not ids:
            raise HFBackendError(f"hf backend: {self.path} defines no eos token (config, generation_config, tokenizer)")
        return ids

    def _cache_reusable(self) -> bool:
        """Prefix reuse slices full-attention key/value tensors; a model whose cache holds anything
        else (sliding windows, recurrent state) runs full prefills instead (logged once)."""
        from transformers.cache_utils import DynamicCache, DynamicLayer

        try:
            layers = DynamicCache(config=self.model.config).layers
        except Exception as e:  # noqa: BLE001 - unusual configs: just no reuse
            layers, why = [], f"{type(e).__name__}: {e}"
        else:
            why = "its cache has non-full-attention layers"
        if layers and all(type(layer) is DynamicLayer for layer in layers):
            return True
        logger.info("hf backend: no prefix reuse for %s (%s); every turn runs a full prefill", self.path.name, why)
        return False

    def prefix_stats(self) -> dict[str, int]:
        """Prefill counters since load (all zero without prefix reuse)."""
        return self.prefix_cache.stats.as_dict() if self.prefix_cache is not None else {}

    # -- requests ---------------------------------------------------------------------------------
    def chat_ids(self, messages: list[dict]) -> list[int]:
        """Token ids of ``messages`` rendered by the tokenizer's chat template + generation prompt."""
        if not self.tokenizer.chat_template:
            raise HFBackendError(f"hf backend: {self.path} has no chat template; give one (backend.chat_template=FILE) "
                                 "or prompt raw text (math: prompt.mode=complete, as data.prompt_format=plain trains)")
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    async def chat(self, messages: list[dict], params: SamplingParams) -> Generation:
        return await self._submit(self.chat_ids(messages), params)

    async def complete(self, prompt: str, params: SamplingParams) -> Generation:
        """Raw text, tokenized exactly as data.prompt_format=plain trains the prompt (BOS as the tokenizer adds it)."""
        return await self._submit(prompt_ids(self.tokenizer, prompt), params)

    async def _submit(self, ids: list[int], params: SamplingParams) -> Generation:
        if params.max_new_tokens < 1:
            raise HFBackendError(f"hf backend: max_new_tokens must be >= 1, got {params.max_new_tokens}")
        loop = asyncio.get_running_loop()
        request = _Request(list(ids), params, loop.create_future())
        self._pending.append(request)
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._worker = loop.create_task(self._collect())
        return await request.future

    async def _collect(self) -> None:
        """Run batches while requests wait; one generate at a time (a single worker thread)."""
        loop = asyncio.get_running_loop()
        while self._pending:
            if len(self._pending) < self.max_batch_size and self.batch_window_s > 0:
                await asyncio.sleep(self.batch_window_s)  # let concurrent callers join the batch
            # drop cancelled callers and leftovers of an event loop that has finished
            self._pending = [r for r in self._pending if not r.future.done() and r.future.get_loop() is loop]
            if not self._pending:
                break
            key = self._pending[0].batch_key
            batch = [r for r in self._pending if r.batch_key == key][: self.max_batch_size]
            self._pending = [r for r in self._pending if all(r is not b for b in batch)]
            try:
                results = await loop.run_in_executor(self._executor, self._generate, batch)
            except Exception as e:  # noqa: BLE001 - every waiter gets the failure
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(e)
                continue
            for r, g in zip(batch, results):
                if not r.future.done():
                    r.future.set_result(g)

    # -- the worker thread ------------------------------------------------------------------------
    def _generate(self, batch: list[_Request]) -> list[Generation]:
        from transformers.generation import LogitsProcessorList

        torch = self._torch
        params = batch[0].params
        longest = max(len(r.ids) for r in batch)
        input_ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for i, r in enumerate(batch):  # left padding: every prompt ends where generation starts
            input_ids[i, longest - len(r.ids):] = torch.tensor(r.ids, dtype=torch.long)
            attention[i, longest - len(r.ids):] = 1
        recorder = _EntropyRecorder() if params.logprobs else None
        processors = LogitsProcessorList([recorder] if recorder else [])
        rows = [r.params for r in batch]
        if any(p.sampling for p in rows):
            processors.append(_RowSampler(rows, self.device))  # after the recorder: raw entropy
        kwargs: dict[str, Any] = dict(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
            max_new_tokens=max(p.max_new_tokens for p in rows), do_sample=False,
            logits_processor=processors, return_dict_in_generate=True,
        )
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        matches, layout = self._plan_reuse(batch)
        with torch.inference_mode():
            if layout is not None and layout.past > 0:
                kwargs["past_key_values"] = batch_cache(matches, layout, self.model.config)
            out = self.model.generate(**kwargs)
        new_tokens = out.sequences[:, longest:].cpu()
        entropies = torch.stack(recorder.steps, dim=1) if recorder and recorder.steps else None
        results = []
        for i, r in enumerate(batch):
            g = self._finish(new_tokens[i].tolist(), r.params, entropies[i] if entropies is not None else None)
            g.meta["batch_size"] = len(batch)
            g.meta["prompt_tokens"] = len(r.ids)
            g.meta["cached_tokens"] = layout.cached[i] if layout is not None else 0
            g.meta["prefill_tokens"] = len(r.ids) - g.meta["cached_tokens"]
            results.append(g)
        if layout is not None:
            self._keep(batch, matches, out.past_key_values, longest, new_tokens)
        return results

    # -- prefix reuse (worker thread only: the cache is not locked) -------------------------------
    def _plan_reuse(self, batch: list[_Request]) -> tuple[list[Match], BatchLayout | None]:
        if self.prefix_cache is None:
            return [], None
        matches = [self.prefix_cache.lookup(r.ids) for r in batch]
        layout = batch_layout([len(r.ids) for r in batch], [m.usable for m in matches])
        for r, m, used in zip(batch, matches, layout.cached):
            self.prefix_cache.record(m, len(r.ids), used)
            if used and m.entry is not None:
                self.prefix_cache.touch(m.entry)
        return matches, layout

    def _keep(self, batch: list[_Request], matches: list[Match], cache, width: int, new_tokens) -> None:
        """Store each row's states for its prompt + generated tokens (up to its EOS, as far as the
        cache reaches: the last sampled token was never fed back)."""
        layers = getattr(cache, "layers", None)
        if not layers:
            return
        reach = layers[0].keys.shape[2] - width
        for i, (r, m) in enumerate(zip(batch, matches)):
            gen = new_tokens[i].tolist()[: r.params.max_new_tokens]
            n = min(next((k + 1 for k, t in enumerate(gen) if t in self.eos_ids), len(gen)), reach)
            keys, values = row_states(layers, i, width - len(r.ids), width + n)
            self.prefix_cache.store(r.ids + gen[:n], keys, values, extends=m.entry)

    def _finish(self, tokens: list[int], params: SamplingParams, entropy_row) -> Generation:
        """Cut one row at EOS / max_new_tokens / the first stop string; count its tokens."""
        tokens = tokens[: params.max_new_tokens]
        finish, n = "length", len(tokens)
        for i, t in enumerate(tokens):
            if t in self.eos_ids:
                finish, n = "stop", i + 1
                break
        body = tokens[: n - 1] if finish == "stop" else tokens[:n]
        text = self.tokenizer.decode(body, skip_special_tokens=True)
        meta: dict[str, Any] = {}
        if params.stop:
            cut, matched = truncate_at_stop(text, params.stop)
            if matched is not None:
                n = self._tokens_until(body, matched)
                text, finish = cut, "stop"
                meta["matched_stop"] = matched
        entropy = float(entropy_row[:n].mean()) if entropy_row is not None and n > 0 else None
        return Generation(text=text, num_tokens=n, finish_reason=finish, entropy=entropy, meta=meta)

    def _tokens_until(self, tokens: list[int], stop: str) -> int:
        """Fewest leading tokens whose text contains ``stop`` (binary search: O(log n) decodes)."""
        lo, hi = 1, len(tokens)
        while lo < hi:
            mid = (lo + hi) // 2
            if stop in self.tokenizer.decode(tokens[:mid], skip_special_tokens=True):
                hi = mid
            else:
                lo = mid + 1
        return hi

    async def close(self) -> None:
        for r in self._pending:
            if not r.future.done():
                r.future.set_exception(HFBackendError("hf backend closed"))
        self._pending = []
        self._executor.shutdown(wait=True)
        if self.prefix_cache is not None:
            self.prefix_cache.clear()
