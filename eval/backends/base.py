"""The one interface every generation backend implements (``sglang``, ``server``, ``hf``).

Callers send one request per coroutine and run many at once with ``asyncio.gather``; a backend
batches concurrent requests itself (the ``hf`` backend groups the turns of in-flight episodes into
one ``generate`` call, SGLang batches on its own). That keeps episode code sequential and simple.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings as users pass them (``eval.*.sampling.*`` overrides)."""

    max_new_tokens: int = 150
    temperature: float = 0.0  # 0.0 means greedy
    top_p: float = 1.0
    do_sample: bool | None = None  # None: sample iff temperature > 0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False  # ask for per-token log-probs (for token entropy) where supported

    @property
    def sampling(self) -> bool:
        return self.temperature > 0 if self.do_sample is None else bool(self.do_sample)


@dataclass(frozen=True)
class Generation:
    text: str
    num_tokens: int
    finish_reason: str  # "stop" (EOS or a stop string) | "length"
    # mean per-token entropy (nats) over the generated tokens, when the backend can compute it
    entropy: float | None = None
    meta: dict = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    name: str

    async def chat(self, messages: list[dict], params: SamplingParams) -> Generation:
        """One chat request: messages in our schema (role/content); the chat template is applied
        by the backend (server side for ``server``)."""

    async def complete(self, prompt: str, params: SamplingParams) -> Generation:
        """One raw-text completion request (no chat template)."""

    async def close(self) -> None:
        """Release the model / the managed server process."""
