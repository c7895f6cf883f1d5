"""Dataset classes for verl's ``data.custom_cls`` (``pkg://verl_ext.datasets``).

verl's ``create_sft_dataset`` calls ``cls(parquet_files=..., tokenizer=..., config=data_cfg,
processor=..., max_samples=...)``. Rows are validated and encoded once into the tokenized cache
(``verl_ext.data.cache``; every later start, resume and rank maps it), so a bad file stops the run
(naming file and row) before any model is loaded, and the truncation policy is applied with a count
of what it did.

- ``ChatSFTDataset``: ``messages`` rows (multi-turn, tools, Qwen3 thinking) -> exact template render
  with an assistant-only loss mask (see ``verl_ext.data.masks``); ``data.multiturn_mode=per_turn`` makes
  one sample per trained assistant turn.
- ``PromptResponseDataset``: column rows (``prompt``/``response``, e.g. ``problem``/``solution``),
  turned into a two-message conversation and encoded the same way, so the EOS is trained; or, with
  ``data.prompt_format=plain`` (base models), raw prompt + response + EOS without a template.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from verl_ext.chat_template import chat_template_problem
from verl_ext.data.masks import ChatEncoder, Encoded, TemplateAlignmentError
from verl_ext.data.prompt_format import PROMPT_FORMATS, PlainEncoder, format_prompt
from verl_ext.rows import DataError, RowRef, is_trained, iter_files, normalize_bool, normalize_messages, normalize_tools, read_rows
from verl_ext.data.token_store import Sample

logger = logging.getLogger(__name__)

TRUNCATION = ("error", "left", "right")
MULTITURN_MODES = ("single", "per_turn")
# options that do not change the tokens (left out of the cache fingerprint)
NOT_ENCODING = ("pad_mode",)


@dataclass(frozen=True)
class DataOptions:
    """Keys read from verl's ``data`` config; the one home of their defaults (``null`` in YAML = this)."""

    messages_key: str = "messages"
    tools_key: str = "tools"
    enable_thinking_key: str = "enable_thinking"
    enable_thinking_default: bool | None = None
    apply_chat_template_kwargs: dict | None = None
    max_length: int = 1024
    truncation: str = "error"
    pad_mode: str = "no_padding"
    # keep reasoning of earlier assistant turns that the template would drop (Qwen3 keeps only the last)
    reasoning_in_history: bool = False
    # prompt/response datasets
    prompt_key: str = "prompt"
    response_key: str = "response"
    system_prompt: str | None = None
    prompt_template: str | None = None  # e.g. "{prompt}\n\nPut your final answer within \\boxed{{}}."
    # chat: prompt/response through the chat template | plain: raw prompt + response + EOS, no
    # template (base models; verl_ext.data.prompt_format)
    prompt_format: str = "chat"
    # single: one sample per conversation (one render); per_turn: one sample per trained assistant
    # turn, its context rendered as inference sees it at that turn (see README "Multi-turn modes")
    multiturn_mode: str = "single"

    @classmethod
    def from_config(cls, config: Any) -> "DataOptions":
        config = config or {}
        values = {}
        for f in fields(cls):
            v = config.get(f.name, None) if hasattr(config, "get") else None
            if v is not None:
                values[f.name] = v
        if "apply_chat_template_kwargs" in values:  # {} (verl's YAML default) == none
            values["apply_chat_template_kwargs"] = dict(values["apply_chat_template_kwargs"]) or None
        edt = values.get("enable_thinking_default")
        if isinstance(edt, str):  # verl's YAML default is the string "none"
            values["enable_thinking_default"] = {"none": None, "true": True, "false": False}.get(edt.lower())
        opts = cls(**values)
        if opts.truncation not in TRUNCATION:
            raise DataError(f"data.truncation={opts.truncation!r}; choose one of {', '.join(TRUNCATION)}")
        if opts.multiturn_mode not in MULTITURN_MODES:
            raise DataError(f"data.multiturn_mode={opts.multiturn_mode!r}; choose one of {', '.join(MULTITURN_MODES)}")
        if opts.multiturn_mode == "per_turn" and opts.reasoning_in_history:
            raise DataError("data.multiturn_mode=per_turn renders each turn's history as inference does; "
                            "data.reasoning_in_history=true contradicts it: set one of them")
        if opts.prompt_format not in PROMPT_FORMATS:
            raise DataError(f"data.prompt_format={opts.prompt_format!r}; choose one of {', '.join(PROMPT_FORMATS)}")
        if opts.prompt_format == "plain" and opts.system_prompt:
            raise DataError("data.system_prompt has no place in data.prompt_format=plain (no chat template): "
                            "put the text in data.prompt_template instead")
        if opts.pad_mode not in ("no_padding", "right"):
            raise DataError(f"data.pad_mode={opts.pad_mode!r}; choose no_padding (recommended) or right")
        return opts


class _EncodedDataset(Dataset):
    """Shared machinery: rows -> conversations -> encoded samples (through the tokenized cache,
    ``verl_ext.data.cache``), served from a memory-mapped ``TokenStore``."""

    PLAIN = False  # data.prompt_format=plain (no chat template) applies to this class

    def __init__(self, parquet_files, tokenizer, config=None, processor=None, max_samples: int = -1):
        from verl_ext.data import cache

        self._setup(tokenizer, config)
        files = [os.path.abspath(os.path.expanduser(p)) for p in iter_files(parquet_files)]
        self.store, self.stats, self.cache_path = cache.load_or_build(type(self), files, tokenizer, config, max_samples)
        if not len(self.store):
            raise DataError(f"no usable rows in {files} ({self.stats})")
        logger.info("verl-ext dataset: %s%s", self.stats, f" (cache {self.cache_path})" if self.cache_path else "")

    def _setup(self, tokenizer, config) -> None:
        self.opts = DataOptions.from_config(config)
        self.tokenizer = tokenizer
        if self.opts.prompt_format == "plain":
            if not self.PLAIN:
                raise DataError("data.prompt_format=plain trains column rows (data.dataset=prompt_response); "
                                f"{type(self).__name__} renders conversations with the chat template")
            self.encoder = PlainEncoder(tokenizer)
        else:
            problem = chat_template_problem(tokenizer, f"{type(self).__name__} renders every row with it")
            if problem:
                raise DataError(problem)
            self.encoder = ChatEncoder(
                tokenizer,
                template_kwargs=dict(self.opts.apply_chat_template_kwargs or {}),
                reasoning_in_history=self.opts.reasoning_in_history,
            )
        self.stats = new_stats()

    @classmethod
    def row_encoder(cls, tokenizer, config) -> "_EncodedDataset":
        """An instance that encodes rows (``encode_row``) without reading any file."""
        self = cls.__new__(cls)
        self._setup(tokenizer, config)
        return self

    @classmethod
    def sample_lengths(cls, path: str, tokenizer, config, limit: int = 256) -> list[tuple[int, int]]:
        """(tokens, trained tokens) of the samples of the first ``limit`` rows, validating them; for
        preflight when no cache exists yet. Lengths are before truncation."""
        self = cls.row_encoder(tokenizer, config)
        out = []
        for row_idx, row in enumerate(read_rows(path, limit=limit)):
            messages, tools, thinking, _ = self.to_conversation(row, RowRef(path, row_idx))
            for _, conversation in self._per_sample(messages):
                enc = self.encoder.encode(conversation, tools, thinking)
                out.append((len(enc.input_ids), int(enc.loss_mask.sum())))
        return out

    # subclasses turn a raw row into (messages, tools, enable_thinking, ref)
    def to_conversation(self, row: dict, ref: RowRef) -> tuple[list[dict], list | None, bool | None, RowRef]:
        raise NotImplementedError

    def encode_row(self, row: dict, ref: RowRef) -> list[Sample]:
        """One raw row -> its samples (one, or one per trained turn), truncated; updates ``stats``."""
        messages, tools, thinking, ref = self.to_conversation(row, ref)
        self.stats["rows"] += 1
        out = []
        for turn, conversation in self._per_sample(messages):
            sample = self._encode(conversation, tools, thinking, ref, turn)
            if sample is not None:
                out.append(sample)
        return out

    def _check_inference_prefix(self, messages, tools, thinking, text: str, ref: RowRef, turn: int) -> None:
        """per_turn's contract: the sample starts with the context as inference renders it."""
        prompt = self.encoder.prompt(messages[:-1], tools, thinking)
        if text.startswith(prompt):
            return
        hint = ""
        if thinking is False and messages[-1].get("reasoning_content"):
            hint = (" This row has thinking off but the turn has reasoning_content: the model would be "
                    "prompted with an empty think block. Set enable_thinking true for the row or drop the reasoning.")
        raise DataError(f"{ref}, turn {turn}: the template renders this turn's context differently from the "
                        f"inference prompt at that turn, so per_turn cannot train it exactly.{hint}")

    def _per_sample(self, messages: list[dict]):
        """(turn, conversation) per sample. ``per_turn``: for each trained assistant turn, the
        conversation up to it with only that turn trained; the template renders the history as it
        does at inference for that turn (Qwen3 drops the reasoning of earlier turns), while the
        turn keeps its own reasoning."""
        if self.opts.multiturn_mode == "single":
            yield -1, messages
            return
        for i, m in enumerate(messages):
            if is_trained(m):
                context = [{**x, "loss": False} if x["role"] == "assistant" else x for x in messages[:i]]
                yield i, context + [m]

    def _encode(self, messages, tools, enable_thinking, ref: RowRef, turn: int = -1) -> Sample | None:
        try:
            enc: Encoded = self.encoder.encode(messages, tools, enable_thinking)
        except TemplateAlignmentError as e:
            raise DataError(f"{ref}: {e}") from None
        except Exception as e:  # jinja errors from the template (e.g. roles it does not allow)
            raise DataError(f"{ref}: the chat template failed on this conversation: {e}") from None
        if turn >= 0:
            self._check_inference_prefix(messages, tools, enable_thinking, enc.text, ref, turn)
        ids, mask = enc.input_ids, enc.loss_mask
        length = len(ids)
        self.stats["samples_encoded"] += 1
        self.stats["straddling_tokens"] += enc.straddling_tokens
        max_len = self.opts.max_length
        if len(ids) > max_len:
            if self.opts.truncation == "error":
                where = f"{ref}" + (f", turn {turn}" if turn >= 0 else "")
                raise DataError(
                    f"{where}: {len(ids)} tokens > data.max_length={max_len}. Raise data.max_length, "
                    "filter long rows (data_converters --max-tokens), or set data.truncation=left|right"
                )
            self.stats["truncated"] += 1
            sl = slice(len(ids) - max_len, None) if self.opts.truncation == "left" else slice(0, max_len)
            ids, mask = ids[sl], mask[sl]
        if mask[1:].sum() == 0:  # the first token is never a target (the loss rolls the mask by one)
            self.stats["dropped_no_target"] += 1
            logger.warning("%s: no trained token left after truncation; sample skipped", ref)
            return None
        self.stats["samples"] += 1
        self.stats["tokens"] += len(ids)
        self.stats["trained_tokens"] += int(mask.sum())
        return Sample(ids, mask, ref, turn, length)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, item: int) -> dict:
        ids, mask = self.store.get(item)
        input_ids = torch.from_numpy(ids.astype(np.int64))
        loss_mask = torch.from_numpy(mask.astype(np.int64))
        n = len(input_ids)
        if self.opts.pad_mode == "no_padding":
            return {"input_ids": input_ids, "position_ids": torch.arange(n), "loss_mask": loss_mask}
        pad = self.opts.max_length - n
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        return {
            "input_ids": torch.cat([input_ids, torch.full((pad,), pad_id, dtype=torch.long)]),
            "attention_mask": torch.cat([torch.ones(n, dtype=torch.long), torch.zeros(pad, dtype=torch.long)]),
            "position_ids": torch.cat([torch.arange(n), torch.zeros(pad, dtype=torch.long)]),
            "loss_mask": torch.cat([loss_mask, torch.zeros(pad, dtype=torch.long)]),
        }


class ChatSFTDataset(_EncodedDataset):
    """Multi-turn ``messages`` rows; see module docstring."""

    def to_conversation(self, row, ref):
        o = self.opts
        if o.messages_key not in row:
            raise DataError(
                f"{ref}: no {o.messages_key!r} column (columns: {', '.join(sorted(row))}); "
                "set data.messages_key or use data.dataset=prompt_response for column data"
            )
        messages = normalize_messages(row[o.messages_key], ref)
        tools = normalize_tools(row.get(o.tools_key), ref)
        thinking = normalize_bool(row.get(o.enable_thinking_key), ref, o.enable_thinking_key)
        return messages, tools, o.enable_thinking_default if thinking is None else thinking, ref


class PromptResponseDataset(_EncodedDataset):
    """Column rows; the prompt goes through ``prompt_template``, then the chat template
    (``prompt_format=chat``) or none (``plain``: ``verl_ext.data.prompt_format``)."""

    PLAIN = True

    def to_conversation(self, row, ref):
        o = self.opts
        texts = []
        for key in (o.prompt_key, o.response_key):
            if key not in row:
                raise DataError(
                    f"{ref}: no {key!r} column (columns: {', '.join(sorted(row))}); "
                    "set data.prompt_key / data.response_key"
                )
            value = row[key]
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{ref}: {key!r} must be a non-empty string, got {value!r:.60}")
            texts.append(value)
        prompt, response = texts
        if o.prompt_template:
            try:
                prompt = format_prompt(o.prompt_template, prompt, row)
            except (KeyError, IndexError, ValueError) as e:
                raise DataError(f"{ref}: data.prompt_template={o.prompt_template!r} cannot be rendered "
                                f"({type(e).__name__}: {e}); use {{prompt}} or a column name, double literal "
                                "braces") from None
        messages = ([{"role": "system", "content": o.system_prompt}] if o.system_prompt else []) + [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": response},
        ]
        thinking = normalize_bool(row.get(o.enable_thinking_key), ref, o.enable_thinking_key)
        return messages, None, o.enable_thinking_default if thinking is None else thinking, ref


# ``data.dataset=<short name>`` (verl_ext.training.trainer.resolve_dataset) -> class
DATASETS = {"chat": ChatSFTDataset, "prompt_response": PromptResponseDataset}



def new_stats() -> dict:
    """Counters of one build; summed over workers, stored in the cache's meta.json."""
    return dict.fromkeys(("rows", "samples", "samples_encoded", "truncated", "dropped_no_target", "straddling_tokens", "tokens", "trained_tokens"), 0)
