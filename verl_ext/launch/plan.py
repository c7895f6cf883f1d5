"""The training plan, computed the way verl 0.9.1's SFT trainer computes it.

verl: ``DistributedSampler(drop_last=True)`` over dp ranks, a ``StatefulDataLoader`` with batch
``train_batch_size // dp`` and ``drop_last=True``; total steps = ``total_training_steps`` or
``len(dataloader) * total_epochs``; a checkpoint at every ``save_freq`` step and at the last step.
``train_batch_size`` is GLOBAL: the hand-computed "rows / batch per GPU" users write is off by dp.
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from verl_ext.rows import iter_files


@dataclass(frozen=True)
class Plan:
    rows: int
    processes: int
    dp: int
    sp: int
    global_batch: int
    per_rank_batch: int
    steps_per_epoch: int
    total_steps: int
    epochs: float
    grad_accumulation: str
    tokens_per_step: int | None
    checkpoint_steps: tuple[int, ...]
    checkpoints_kept: int
    checkpoint_bytes: int | None  # one checkpoint
    exact: bool = False  # rows = samples counted in the tokenized cache
    precision: str | None = None  # compute dtype and why (verl_ext.seam.precision)

    @property
    def checkpoint_bytes_on_disk(self) -> int | None:
        return None if self.checkpoint_bytes is None else self.checkpoint_bytes * self.checkpoints_kept

    def render(self) -> str:
        ck = ", ".join(str(s) for s in self.checkpoint_steps[:8]) + (" ..." if len(self.checkpoint_steps) > 8 else "")
        size = "" if self.checkpoint_bytes is None else f", ~{self.checkpoint_bytes / 2**30:.2f} GiB each"
        tokens = "unknown" if self.tokens_per_step is None else f"~{self.tokens_per_step:,}"
        return "\n".join(
            [
                "plan:",
                f"  rows              {self.rows:,} " + ("(samples in the tokenized cache)" if self.exact else "(train files)"),
                f"  processes         {self.processes} = dp {self.dp} x sp {self.sp}",
                f"  batch             {self.global_batch} global = {self.per_rank_batch} per dp rank",
                f"  steps per epoch   {self.steps_per_epoch}",
                f"  total steps       {self.total_steps} ({self.epochs:.2f} epochs)",
                f"  grad accumulation {self.grad_accumulation}",
                f"  tokens per step   {tokens}",
                f"  checkpoints       {len(self.checkpoint_steps)} at steps {ck or '-'}; {self.checkpoints_kept} kept{size}",
            ]
            + ([f"  precision         {self.precision}"] if self.precision else [])
        )


def count_rows(path: str) -> int:
    path = os.path.expanduser(path)
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if path.endswith(".json"):
        with open(path) as f:
            return len(json.load(f))
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def count_params(model_dir: str) -> int | None:
    """Sum of tensor sizes from the safetensors headers (reads a few KB per shard)."""
    files = sorted(Path(model_dir).glob("*.safetensors")) if os.path.isdir(model_dir) else []
    if not files:
        cfg = Path(model_dir) / "config.json"
        return _params_from_config(json.loads(cfg.read_text())) if cfg.exists() else None
    total = 0
    for f in files:
        with open(f, "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, meta in header.items():
            if name != "__metadata__":
                total += math.prod(meta["shape"])
    return total


def _params_from_config(c: dict) -> int | None:
    """Decoder-only estimate for stub folders that hold only config.json."""
    try:
        h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
        inter = c.get("intermediate_size", 4 * h)
        heads = c["num_attention_heads"]
        kv = c.get("num_key_value_heads", heads)
        hd = c.get("head_dim", h // heads)
    except KeyError:
        return None
    attn = h * heads * hd * 2 + h * kv * hd * 2
    per_layer = attn + 3 * h * inter + 2 * h
    emb = vocab * h * (1 if c.get("tie_word_embeddings") else 2)
    return layers * per_layer + emb + h


def _sampler_len(rows: int, dp: int) -> int:
    # torch DistributedSampler with drop_last=True
    if rows % dp:
        return math.ceil((rows - dp) / dp)
    return rows // dp


def make_plan(config: DictConfig, nproc: int, lengths: list[tuple[int, int]], params: int | None,
              samples: int | None = None, precision: str | None = None) -> Plan:
    """``samples``: the exact train sample count from the tokenized cache (after drops and per_turn
    expansion); without it, rows of the train files. ``precision``: the compute dtype line."""
    sp = int(config.engine.get("ulysses_sequence_parallel_size", 1))
    dp = max(1, nproc // sp)
    gbs = int(config.data.train_batch_size)
    per_rank = max(1, gbs // dp)
    if samples is not None:
        rows = samples
    else:
        rows = sum(count_rows(p) for p in iter_files(config.data.train_files) if os.path.exists(os.path.expanduser(p)))
        max_samples = int(config.data.get("train_max_samples", -1) or -1)
        if 0 < max_samples < rows:
            rows = max_samples
    steps_per_epoch = _sampler_len(rows, dp) // per_rank
    total = config.trainer.total_training_steps
    total = int(total) if total is not None else steps_per_epoch * int(config.trainer.total_epochs)
    epochs = total / steps_per_epoch if steps_per_epoch else 0.0
    save_freq = config.trainer.save_freq
    save_freq = steps_per_epoch if save_freq == "after_each_epoch" else int(save_freq)
    ck = sorted({s for s in range(1, total + 1) if save_freq > 0 and s % save_freq == 0} | ({total} if total else set()))
    keep = config.trainer.max_ckpt_to_keep
    kept = len(ck) if keep in (None, 0) else min(len(ck), int(keep))
    mean_tokens = sum(n for n, _ in lengths) / len(lengths) if lengths else None
    if config.data.use_dynamic_bsz:
        if mean_tokens:
            budget = int(config.data.max_token_len_per_gpu) * sp
            micro = max(1, math.ceil(per_rank * mean_tokens / budget))
            accum = f"dynamic (~{micro} micro batch(es) of <= {budget} tokens per rank)"
        else:
            accum = "dynamic (token budget data.max_token_len_per_gpu)"
    else:
        accum = str(max(1, per_rank // int(config.data.micro_batch_size_per_gpu)))
    return Plan(
        rows=rows,
        processes=nproc,
        dp=dp,
        sp=sp,
        global_batch=gbs,
        per_rank_batch=per_rank,
        steps_per_epoch=steps_per_epoch,
        total_steps=total,
        epochs=epochs,
        grad_accumulation=accum,
        tokens_per_step=int(mean_tokens * gbs) if mean_tokens else None,
        exact=samples is not None,
        checkpoint_steps=tuple(ck),
        checkpoints_kept=kept,
        checkpoint_bytes=_checkpoint_bytes(config, params),
        precision=precision,
    )


def _checkpoint_bytes(config: DictConfig, params: int | None) -> int | None:
    """fp32 weights + AdamW's two fp32 moments (+ an HF export when requested)."""
    if not params:
        return None
    contents = set(config.checkpoint.save_contents)
    lora = int(config.model.get("lora_rank", 0) or 0) > 0
    trainable = params * 0.01 if lora else params
    size = 0
    if "model" in contents:
        size += params * 4
    if "optimizer" in contents:
        size += trainable * 8
    if "hf_model" in contents:
        size += params * 4
    return int(size)
