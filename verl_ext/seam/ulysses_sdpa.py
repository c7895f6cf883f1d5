"""Ulysses sequence parallel for ``attn_implementation="sdpa"`` (flash-attn absent, e.g. on CPU).

verl 0.9.1 wires Ulysses into flash-attention's forward only; under sdpa each rank silently attends
within its own slice of the packed sequence (logits off by ~0.65). This attention function does what
the flash path does, for sdpa: all-to-all (gather sequence, scatter heads), a block-causal mask over
the packed sequences built from the all-gathered ``position_ids``, sdpa, all-to-all back.
``verl_ext.seam.patches`` registers it as transformers' ``"sdpa"`` attention; with sequence parallel
off it hands over to the stock sdpa function unchanged.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from verl.utils.ulysses import (
    gather_heads_scatter_seq,
    gather_seq_scatter_heads,
    get_ulysses_sequence_parallel_group,
    get_ulysses_sequence_parallel_world_size,
)


def block_causal_mask(position_ids: torch.Tensor) -> torch.Tensor:
    """Boolean mask [B, 1, S, S]: causal within each packed sequence, nothing across sequences.

    A new sequence starts wherever a position does not continue the previous one (+1)."""
    pos = position_ids
    starts = torch.ones_like(pos, dtype=torch.bool)
    starts[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
    segment = torch.cumsum(starts, dim=-1)
    same = segment[:, :, None] == segment[:, None, :]
    s = pos.shape[-1]
    causal = torch.ones(s, s, dtype=torch.bool, device=pos.device).tril()
    return (same & causal)[:, None]


def _all_gather_seq(x: torch.Tensor, group) -> torch.Tensor:
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim=-1)


def make_ulysses_sdpa(stock_sdpa: Callable) -> Callable:
    """Wrap transformers' sdpa attention function (signature of ``sdpa_attention_forward``)."""

    def ulysses_sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs
    ):
        sp = get_ulysses_sequence_parallel_world_size()
        position_ids = kwargs.get("position_ids")
        if sp <= 1 or position_ids is None:
            return stock_sdpa(
                module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, is_causal=is_causal, **kwargs
            )
        group = get_ulysses_sequence_parallel_group()
        # HF layout is [B, H, S/sp, D]; verl's all-to-all helpers take [B, S, H, D]
        q, k, v = (t.transpose(1, 2) for t in (query, key, value))
        if k.size(2) % sp != 0:  # fewer KV heads than ranks: repeat so each rank gets whole heads
            reps = sp // k.size(2) if sp % k.size(2) == 0 else q.size(2) // k.size(2)
            k, v = (t.repeat_interleave(reps, dim=2) for t in (k, v))
        q = gather_seq_scatter_heads(q, seq_dim=1, head_dim=2, group=group)
        k = gather_seq_scatter_heads(k, seq_dim=1, head_dim=2, group=group)
        v = gather_seq_scatter_heads(v, seq_dim=1, head_dim=2, group=group)
        groups = q.size(2) // k.size(2)
        if groups > 1:  # GQA: local query heads map onto local KV heads contiguously
            k, v = (t.repeat_interleave(groups, dim=2) for t in (k, v))
        full_pos = _all_gather_seq(position_ids, group)
        mask = block_causal_mask(full_pos)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=mask,
            dropout_p=dropout if module.training else 0.0,
            scale=scaling,
        )  # [B, H/sp, S, D]
        out = gather_heads_scatter_seq(out.transpose(1, 2), seq_dim=1, head_dim=2, group=group)
        return out.contiguous(), None

    ulysses_sdpa_attention_forward.stock = stock_sdpa
    return ulysses_sdpa_attention_forward
