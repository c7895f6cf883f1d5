"""One TextCraft episode over any ``Backend``: chat messages in, one action per turn.

``apply_turn`` (model text -> environment reply) is the single place a turn is interpreted; the
episode loop, the expert data writer and the verl agent loop all use it, so they agree on what a
turn means. ``ExpertBackend`` plays the expert through the ``Backend`` interface (smoke tests,
``backend.name=expert``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from verl_ext_eval.backends.base import Backend, Generation, SamplingParams

from .env import Task, TextCraftEnv
from .formats import THINK_REPLY, TurnFormat, get_format
from .recipes import RecipeBook

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROUNDS = 30  # AgentGym-RL's limit; ADaPT gave 40 actions per executor call

FAILURE_STEP_LIMIT = "step_limit"  # ran out of rounds with at least one readable action
FAILURE_UNPARSEABLE = "unparseable"  # ran out of rounds without one readable turn
FAILURE_CONTEXT = "context_length"  # the conversation outgrew the model's context window


class ContextFullError(RuntimeError):
    """The backend cannot take the conversation any more (prompt longer than its context)."""


# what servers say when a prompt outgrows the model (SGLang, vLLM, OpenAI): an HTTP 400, not retried
_CONTEXT_MARKERS = ("context length", "context window", "maximum context", "max_model_len", "longer than the model")


def is_context_error(exc: BaseException) -> bool:
    """A backend error meaning "the prompt no longer fits" (by type or by the usual messages)."""
    if isinstance(exc, ContextFullError) or type(exc).__name__ in ("ContextLengthError", "ContextFullError"):
        return True
    text = str(exc).lower()
    return any(m in text for m in _CONTEXT_MARKERS)


@dataclass(frozen=True)
class TurnOutcome:
    reply: str  # what the environment answers: observation, "OK." or the format's invalid reply
    action: str | None  # the game action taken (None for think steps and unparseable turns)
    parsed: bool
    reward: float = 0.0
    done: bool = False


def apply_turn(env: TextCraftEnv, fmt: TurnFormat, text: str) -> TurnOutcome:
    """Read one model turn with ``fmt`` and play it in ``env``."""
    parsed = fmt.parse(text)
    if not parsed.ok:
        return TurnOutcome(fmt.invalid_reply, None, False)
    if parsed.action is None:
        return TurnOutcome(THINK_REPLY, None, True)
    result = env.step(parsed.action)
    return TurnOutcome(result.observation, parsed.action, True, result.reward, result.done)


PROMPT_STYLES = ("system", "turn")
ACKNOWLEDGEMENT = "OK. I'll follow your instructions and try my best to solve the task."


def initial_messages(fmt: TurnFormat, observation: str, prompt_style: str = "system") -> list[dict]:
    """The conversation before the first model turn. ``system``: the rules as a system message;
    ``turn``: as AgentGym's trajectories (AgentTraj-L) open, the rules as a first user turn that the
    assistant acknowledges (context only, never trained), then the task."""
    if prompt_style == "system":
        return [{"role": "system", "content": fmt.system_prompt}, {"role": "user", "content": observation}]
    if prompt_style == "turn":
        return [{"role": "user", "content": fmt.system_prompt},
                {"role": "assistant", "content": ACKNOWLEDGEMENT, "loss": False},
                {"role": "user", "content": observation}]
    raise ValueError(f"unknown prompt_style {prompt_style!r}; choose one of {', '.join(PROMPT_STYLES)}")


@dataclass(frozen=True)
class EpisodeResult:
    key: str
    goal: str
    depth: int
    goal_list: str | None
    index: int | None
    seed: int
    format: str
    success: bool
    reward: float
    steps: int  # model turns played (think and unparseable turns count)
    failure: str | None
    actions: tuple[str | None, ...]
    observations: tuple[str, ...]
    invalid_turns: int
    truncated_turns: int  # turns cut by max_new_tokens
    gen_tokens: int
    prompt_tokens: int | None
    elapsed_s: float
    messages: tuple[dict, ...] = field(default=(), repr=False)
    # prompt tokens the backend ran through the model / served from its prefix cache (hf backend)
    prefill_tokens: int | None = None
    cached_tokens: int | None = None

    def to_record(self) -> dict:
        record = asdict(self)
        record["actions"] = list(self.actions)
        record["observations"] = list(self.observations)
        record["messages"] = list(self.messages)
        return record


def episode_key(task: Task) -> str:
    """A result's identity for resuming: goal list + index + seed, or goal + seed."""
    if task.goal_list is not None and task.index is not None:
        return f"{task.goal_list}:{task.index}:{task.seed}"
    return f"{task.goal}:{task.seed}"


async def run_episode(backend: Backend, task: Task, fmt: TurnFormat | str, params: SamplingParams,
                      max_rounds: int = DEFAULT_MAX_ROUNDS, book: RecipeBook | None = None,
                      prompt_style: str = "system", on_turn: Callable[[Generation], None] | None = None
                      ) -> EpisodeResult:
    """Play ``task`` with ``backend`` for at most ``max_rounds`` model turns; ``on_turn`` sees each
    generation (progress bars count turns and tokens with it)."""
    fmt = get_format(fmt) if isinstance(fmt, str) else fmt
    env = TextCraftEnv(book)
    start = time.perf_counter()
    messages = initial_messages(fmt, env.reset(task), prompt_style)
    actions: list[str | None] = []
    observations: list[str] = []
    invalid = truncated = gen_tokens = 0
    prompt_tokens: int | None = None
    counts: dict[str, int] = {}
    reward, done, failure = 0.0, False, None
    for _ in range(max_rounds):
        try:
            gen: Generation = await backend.chat(messages, params)
        except Exception as e:  # noqa: BLE001 - only context overflow ends an episode; others propagate
            if not is_context_error(e):
                raise
            failure = FAILURE_CONTEXT
            logger.info("episode %s: context full after %d turns: %s", episode_key(task), len(actions), e)
            break
        gen_tokens += gen.num_tokens
        if isinstance(gen.meta.get("prompt_tokens"), int):
            prompt_tokens = (prompt_tokens or 0) + gen.meta["prompt_tokens"]
        for key in ("prefill_tokens", "cached_tokens"):
            if isinstance(gen.meta.get(key), int):
                counts[key] = counts.get(key, 0) + gen.meta[key]
        if on_turn is not None:
            on_turn(gen)
        truncated += gen.finish_reason == "length"
        outcome = apply_turn(env, fmt, gen.text)
        invalid += not outcome.parsed
        actions.append(outcome.action)
        observations.append(outcome.reply)
        messages.append({"role": "assistant", "content": gen.text})
        if outcome.done:
            reward, done = outcome.reward, True
            break
        messages.append({"role": "user", "content": outcome.reply})
    if not done and failure is None:
        failure = FAILURE_UNPARSEABLE if actions and invalid == len(actions) else FAILURE_STEP_LIMIT
    return EpisodeResult(
        key=episode_key(task), goal=task.goal, depth=task.depth, goal_list=task.goal_list, index=task.index,
        seed=task.seed, format=fmt.name, success=done, reward=reward, steps=len(actions), failure=failure,
        actions=tuple(actions), observations=tuple(observations), invalid_turns=invalid,
        truncated_turns=truncated, gen_tokens=gen_tokens, prompt_tokens=prompt_tokens,
        elapsed_s=round(time.perf_counter() - start, 4), messages=tuple(messages),
        prefill_tokens=counts.get("prefill_tokens"), cached_tokens=counts.get("cached_tokens"),
    )


class ExpertBackend:
    """A ``Backend`` that answers every TextCraft chat with the expert's next turn (read from the
    reset observation and the number of assistant turns after it). Success must be 100%."""

    name = "expert"

    def __init__(self, format: str = "agentgym", **_ignored):
        self.fmt = get_format(format)
        self._cache: dict[str, list[str]] = {}

    async def chat(self, messages: list[dict], params: SamplingParams) -> Generation:
        at = next(i for i, m in enumerate(messages)
                  if m["role"] == "user" and m["content"].startswith("Crafting commands:"))
        observation = messages[at]["content"]
        turns = self._cache.get(observation)
        if turns is None:
            turns = self._cache[observation] = self.fmt.expert_turns(observation)
        k = sum(m["role"] == "assistant" for m in messages[at:])
        text = turns[k] if k < len(turns) else self.fmt.render("inventory", "I have run out of planned actions.")
        return Generation(text=text, num_tokens=len(text.split()), finish_reason="stop")

    async def complete(self, prompt: str, params: SamplingParams) -> Generation:
        raise NotImplementedError("the expert backend only answers chat requests")

    async def close(self) -> None:
        self._cache.clear()
