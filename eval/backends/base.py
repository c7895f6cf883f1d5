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

    def __post_init__(self) -> None:
        # stop="###" is one stop string, not three; lists (e.g. from OmegaConf) become a tuple
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(str(s) for s in (self.stop or ()))
        object.__setattr__(self, "stop", stop)

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


def request_fields(params: SamplingParams, max_tokens_key: str, seed_key: str) -> dict:
    """Sampling settings as an SGLang/OpenAI-style request dict (greedy = temperature 0, top_p 1);
    the two key names differ between the HTTP API and SGLang's engine."""
    out: dict = {max_tokens_key: params.max_new_tokens}
    if params.sampling:
        out.update(temperature=params.temperature, top_p=params.top_p)
    else:
        out.update(temperature=0.0, top_p=1.0)
    if params.stop:
        out["stop"] = list(params.stop)
    if params.seed is not None:
        out[seed_key] = params.seed
    return out


def truncate_at_stop(text: str, stop: tuple[str, ...] | list[str]) -> tuple[str, str | None]:
    """Cut ``text`` before the earliest occurrence of any stop string (OpenAI semantics: the stop
    string itself is not returned); returns ``(text, matched_stop_or_None)``."""
    best: tuple[int, str] | None = None
    for s in stop:
        if not s:
            continue
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return (text, None) if best is None else (text[: best[0]], best[1])


def entropy_from_top_logprobs(steps: list[list[float]]) -> float | None:
    """Mean per-token entropy (nats) estimated from each step's top-k log-probs: the top-k terms
    plus the leftover probability mass as one bucket (a lower bound when k is small)."""
    import math

    values = []
    for logprobs in steps:
        probs = [math.exp(lp) for lp in logprobs if lp is not None and lp > -math.inf]
        if not probs:
            continue
        h = -sum(p * math.log(p) for p in probs if p > 0)
        rest = 1.0 - sum(probs)
        if rest > 1e-12:
            h -= rest * math.log(rest)
        values.append(h)
    return sum(values) / len(values) if values else None


def build_generation(text: str, finish_reason: str | None, num_tokens: int | None, params: SamplingParams,
                     top_logprob_steps: list[list[float]] | None = None, meta: dict | None = None) -> Generation:
    """A ``Generation`` from what an engine or server reports: any finish reason but "length" is
    "stop"; stop strings are cut client-side too (in case a server returns them); the token count
    falls back to the number of log-prob steps."""
    meta = dict(meta or {})
    finish = "length" if finish_reason == "length" else "stop"
    text, matched = truncate_at_stop(text or "", params.stop)
    if matched is not None:
        finish, meta["matched_stop"] = "stop", matched
    if num_tokens is None:
        num_tokens = len(top_logprob_steps or [])
    entropy = entropy_from_top_logprobs(top_logprob_steps) if top_logprob_steps else None
    return Generation(text=text, num_tokens=int(num_tokens), finish_reason=finish, entropy=entropy, meta=meta)
