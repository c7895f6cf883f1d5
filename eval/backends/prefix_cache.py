"""Key/value prefix reuse for the ``hf`` backend: a turn costs its new tokens, not the conversation.

Without it every TextCraft turn re-encodes the whole conversation, so an episode costs the square of
its turns (issue 11: 14 minutes for the demo's 15 ten-round episodes). After each ``generate`` the
key/value states of every row (prompt + generated tokens) are kept here; the next request whose
token ids start with the same tokens gets them back. Matching is token-exact on ids, never on text:
a chat template that re-renders history differently (or a reply that re-tokenizes differently)
reuses only the common leading tokens and counts as a mismatch, down to a full prefill.

Batched rows are left-padded to end at one column, so a batch can only skip the columns *every*
row has cached: ``batch_layout`` computes that split; rows with more cached than the batch can use
recompute a few tokens (same values, the extra work is counted as ``padded``).

Memory is bounded: an entry that a later turn extends is dropped (the episode moved on), and the
least recently used entries go once ``max_tokens`` cached tokens or ``max_entries`` are exceeded,
which is how finished episodes' caches leave.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class CacheEntry:
    tokens: np.ndarray  # int64 ids the states belong to, from position 0
    keys: list[Any]  # per layer: [kv_heads, len(tokens), head_dim]
    values: list[Any]
    last_used: int = 0


@dataclass
class PrefixStats:
    """Counters for the whole backend lifetime (tests and the benchmark read them)."""

    requests: int = 0
    prompt_tokens: int = 0  # prompt tokens asked for
    prefill_tokens: int = 0  # prompt tokens actually run through the model (not from cache)
    cached_tokens: int = 0  # prompt tokens served from cache
    padded: int = 0  # cached tokens a row had but recomputed because its batch could not use them
    hits: int = 0  # requests that reused at least one token
    misses: int = 0  # requests that ran a full prefill
    mismatches: int = 0  # requests whose best entry diverged before its end (template re-rendered history)
    evictions: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Match:
    entry: CacheEntry | None
    length: int  # leading tokens of the request found in ``entry`` (token-exact)
    usable: int  # of those, how many may be skipped (at least one prompt token must run)


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    """Number of equal leading ids of ``a`` and ``b``."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


@dataclass
class PrefixCache:
    max_tokens: int = 65536
    max_entries: int = 256
    stats: PrefixStats = field(default_factory=PrefixStats)
    _entries: list[CacheEntry] = field(default_factory=list)
    _clock: int = 0

    @property
    def cached_total(self) -> int:
        return sum(len(e.tokens) for e in self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, ids: Sequence[int]) -> Match:
        """The entry sharing the most leading tokens with ``ids`` (ties: the most recent)."""
        arr = np.asarray(ids, dtype=np.int64)
        best, best_len = None, 0
        for e in self._entries:
            m = common_prefix(e.tokens, arr)
            if m > best_len or (m == best_len and m and best is not None and e.last_used > best.last_used):
                best, best_len = e, m
        return Match(best, best_len, min(best_len, len(arr) - 1))

    def record(self, match: Match, prompt_len: int, used: int) -> None:
        """Count one request: ``used`` of its ``prompt_len`` tokens came from ``match.entry``."""
        s = self.stats
        s.requests += 1
        s.prompt_tokens += prompt_len
        s.cached_tokens += used
        s.prefill_tokens += prompt_len - used
        s.padded += match.usable - used
        s.hits += used > 0
        s.misses += used == 0
        if match.entry is not None and 0 < match.length < len(match.entry.tokens) and match.length < prompt_len - 1:
            s.mismatches += 1

    def store(self, tokens: Sequence[int], keys: list[Any], values: list[Any], extends: CacheEntry | None) -> None:
        """Keep the states of ``tokens``; drop ``extends`` when ``tokens`` continue it entirely."""
        arr = np.asarray(tokens, dtype=np.int64)
        if extends is not None and any(e is extends for e in self._entries) and \
                common_prefix(extends.tokens, arr) == len(extends.tokens):
            self._entries = [e for e in self._entries if e is not extends]
        if len(arr) > self.max_tokens:
            return
        self._clock += 1
        self._entries.append(CacheEntry(arr, keys, values, self._clock))
        self._evict()

    def touch(self, entry: CacheEntry) -> None:
        self._clock += 1
        entry.last_used = self._clock

    def _evict(self) -> None:
        total = self.cached_total
        while self._entries and (total > self.max_tokens or len(self._entries) > self.max_entries):
            oldest = min(self._entries, key=lambda e: e.last_used)
            self._entries = [e for e in self._entries if e is not oldest]
            total -= len(oldest.tokens)
            self.stats.evictions += 1

    def clear(self) -> None:
        self._entries = []


@dataclass(frozen=True)
class BatchLayout:
    """Left-padded batch of prompts ``lengths`` long: ``width`` columns, the first ``past`` of them
    served from cache; row ``i`` takes its first ``cached[i]`` tokens from its entry."""

    width: int
    past: int
    cached: tuple[int, ...]


def batch_layout(lengths: Sequence[int], usable: Sequence[int]) -> BatchLayout:
    """Rows end at the same column, so the columns run fresh are the widest uncached tail:
    ``new = max(len - usable)``; each row then skips ``len - new`` tokens (<= its usable)."""
    width = max(lengths)
    new = max(n - u for n, u in zip(lengths, usable))
    return BatchLayout(width, width - new, tuple(max(0, n - new) for n in lengths))


def batch_cache(matches: Sequence[Match], layout: BatchLayout, config: Any):
    """A transformers ``DynamicCache`` of ``layout.past`` columns: row i's first ``cached[i]``
    states right-aligned (its left padding stays zero and is masked), for ``generate`` to run the
    remaining columns."""
    import torch
    from transformers.cache_utils import DynamicCache

    ref = next(m.entry for m, c in zip(matches, layout.cached) if c > 0 and m.entry is not None)
    data = []
    for layer in range(len(ref.keys)):
        pair = []
        for states in (ref.keys, ref.values):
            heads, _, dim = states[layer].shape
            pair.append(torch.zeros((len(matches), heads, layout.past, dim), dtype=states[layer].dtype,
                                    device=states[layer].device))
        for i, (m, c) in enumerate(zip(matches, layout.cached)):
            if c > 0:
                pair[0][i, :, layout.past - c:] = m.entry.keys[layer][:, :c]
                pair[1][i, :, layout.past - c:] = m.entry.values[layer][:, :c]
        data.append(tuple(pair))
    return DynamicCache(ddp_cache_data=data, config=config)


def row_states(layers: Sequence[Any], row: int, start: int, end: int) -> tuple[list[Any], list[Any]]:
    """Row ``row``'s keys and values for columns ``start:end`` of a batch cache, copied (a view would
    keep the whole batch's tensors alive)."""
    return ([layer.keys[row, :, start:end].clone() for layer in layers],
            [layer.values[row, :, start:end].clone() for layer in layers])
