"""Evaluate a model on TextCraft: N episodes, many in flight, one JSON line per finished episode.

Overrides are Hydra-style ``key=value`` onto ``RunConfig`` (unknown or repeated keys are errors).
Episodes are goal ``start .. start+episodes-1`` of ``goal_list`` (ADaPT: deepest first, 419 goals,
its paper used seeds 0..199), each shuffled under its own index unless ``seed`` is set. Results go
to ``<out_dir>/episodes.jsonl`` as each episode ends: a killed run, rerun with the same command,
plays only what is missing. Then ``summary.json``, ``report.md`` and charts (success by depth).

Example:
    python -m verl_ext_eval.textcraft backend.name=hf backend.model_path=/models/qwen3-0.6b episodes=20 \\
        goal_list=adapt concurrency=16 format=agentgym max_rounds=30 sampling.max_new_tokens=150 \\
        sampling.temperature=0 out_dir=outputs/textcraft/qwen3-0.6b
    python -m verl_ext_eval.textcraft backend.name=expert episodes=419 out_dir=/tmp/tc-expert   # 100% by design
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from verl_ext_eval.backends.base import Backend, SamplingParams

from .agent import DEFAULT_MAX_ROUNDS, PROMPT_STYLES, ExpertBackend, episode_key, run_episode
from .env import Task, make_task, task_at
from .formats import FORMATS
from .recipes import GOAL_LISTS, load_recipe_book

logger = logging.getLogger(__name__)

RESULTS_FILE = "episodes.jsonl"
CONFIG_FILE = "run_config.json"
# settings that change what an episode means: a resumed run must not mix records across them
_RESULT_DEFINING = ("backend", "sampling", "format", "prompt_style", "max_rounds", "goal_list", "goals", "seed")


class RunConfigError(ValueError):
    """The run's settings are inconsistent or clash with the results already in ``out_dir``."""


@dataclass
class BackendConfig:
    name: str = "hf"  # hf | server | sglang | expert (plays the expert: a smoke test)
    model_path: Optional[str] = None  # model folder (hf, sglang; server launches SGLang on it)
    base_url: Optional[str] = None  # a running OpenAI-compatible server (server)
    # replaces the model's chat template: inline Jinja or a .jinja file, as training's model.custom_chat_template
    # (hf, sglang; server: passed to the SGLang it launches with --chat-template)
    chat_template: Optional[str] = None
    options: dict[str, Any] = field(default_factory=dict)  # more backend settings: +backend.options.max_batch_size=16


@dataclass
class SamplingConfig:
    max_new_tokens: int = 150
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: Optional[int] = None
    stop: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    backend: BackendConfig = field(default_factory=BackendConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    goal_list: str = "adapt"  # adapt (419, deepest first) | agentgym (544, shallowest first)
    episodes: int = 20  # goals start .. start+episodes-1 of goal_list (wrapping around)
    start: int = 0
    goals: list[str] = field(default_factory=list)  # explicit goals (ids or names) instead of goal_list
    seed: Optional[int] = None  # command shuffle seed; null = each episode's index (as ADaPT did)
    format: str = "agentgym"  # agentgym | adapt
    max_rounds: int = DEFAULT_MAX_ROUNDS  # model turns per episode
    prompt_style: str = "system"  # system | turn (rules as a first user turn + acknowledgement, as AgentTraj-L)
    concurrency: int = 16  # episodes in flight
    out_dir: str = "outputs/textcraft"
    save_messages: bool = True  # keep each episode's conversation in its record
    progress: bool = True


def check_config(cfg: RunConfig) -> None:
    """Every problem at once, as one ``RunConfigError``."""
    problems = []
    if cfg.format not in FORMATS:
        problems.append(f"format={cfg.format!r}: choose one of {', '.join(FORMATS)}")
    if cfg.prompt_style not in PROMPT_STYLES:
        problems.append(f"prompt_style={cfg.prompt_style!r}: choose one of {', '.join(PROMPT_STYLES)}")
    if cfg.goal_list not in GOAL_LISTS:
        problems.append(f"goal_list={cfg.goal_list!r}: choose one of {', '.join(GOAL_LISTS)}")
    for key in ("episodes", "concurrency", "max_rounds"):
        if getattr(cfg, key) < 1:
            problems.append(f"{key}={getattr(cfg, key)}: must be >= 1")
    if cfg.start < 0:
        problems.append(f"start={cfg.start}: must be >= 0")
    if cfg.backend.name in ("hf", "sglang") and not cfg.backend.model_path:
        problems.append(f"backend.name={cfg.backend.name} needs backend.model_path=DIR")
    if cfg.backend.name == "server" and not (cfg.backend.model_path or cfg.backend.base_url):
        problems.append("backend.name=server needs backend.base_url=URL (a running server) or backend.model_path=DIR")
    if problems:
        raise RunConfigError("bad TextCraft run config:\n" + "\n".join(f"  - {p}" for p in problems))


def build_tasks(cfg: RunConfig) -> list[Task]:
    """The run's episodes, in order (explicit ``goals`` take precedence over ``goal_list``)."""
    book = load_recipe_book()
    if cfg.goals:
        return [make_task(g, cfg.seed if cfg.seed is not None else i, book, None, i)
                for i, g in enumerate(cfg.goals)]
    return [task_at(cfg.goal_list, i, cfg.seed, book) for i in range(cfg.start, cfg.start + cfg.episodes)]


def make_run_backend(cfg: BackendConfig, fmt: str) -> Backend:
    """The backend named in ``cfg`` (``model_path`` goes to the setting the backend calls it)."""
    if cfg.name == "expert":
        return ExpertBackend(format=fmt)
    import inspect

    from verl_ext_eval.backends import backend_class, make_backend

    params = inspect.signature(backend_class(cfg.name).__init__).parameters
    settings = dict(cfg.options)
    if cfg.model_path:
        settings["model_path" if "model_path" in params else "path"] = cfg.model_path
    if cfg.base_url:
        settings["base_url"] = cfg.base_url
    if cfg.chat_template is not None:
        settings["chat_template"] = cfg.chat_template
    return make_backend(cfg.name, **settings)


def sampling_params(cfg: SamplingConfig) -> SamplingParams:
    return SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                          seed=cfg.seed, stop=tuple(cfg.stop))


def _defining(cfg: RunConfig) -> dict:
    d = dataclasses.asdict(cfg)
    return {k: d[k] for k in _RESULT_DEFINING}


def guard_out_dir(cfg: RunConfig) -> None:
    """Record the result-defining settings; refuse to resume into results made with others."""
    out = Path(cfg.out_dir)
    path = out / CONFIG_FILE
    current = _defining(cfg)
    if path.exists():
        before = json.loads(path.read_text())
        diff = sorted(k for k in current if before.get(k) != current[k])
        if diff and (out / RESULTS_FILE).exists():
            lines = "\n".join(f"  {k}: before {before.get(k)!r}, now {current[k]!r}" for k in diff)
            raise RunConfigError(f"{out} holds results made with other settings:\n{lines}\n"
                                 f"use another out_dir, or delete {out / RESULTS_FILE} to start over")
    from verl_ext.io import atomic_write

    atomic_write(path, json.dumps(current, indent=2) + "\n")


async def run_episodes(cfg: RunConfig, backend: Backend, tasks: list[Task], results, progress=None,
                       on_turn=None) -> int:
    """Play ``tasks`` with at most ``cfg.concurrency`` in flight; append each record to
    ``results`` as it finishes (then call ``progress(record)``; ``on_turn(generation)`` after
    every turn). The first backend error cancels the rest and is raised."""
    params = sampling_params(cfg.sampling)
    book = load_recipe_book()
    gate = asyncio.Semaphore(cfg.concurrency)

    async def one(task: Task) -> None:
        async with gate:
            result = await run_episode(backend, task, cfg.format, params, cfg.max_rounds, book, cfg.prompt_style,
                                       on_turn)
        record = result.to_record()
        if not cfg.save_messages:
            record.pop("messages")
        results.append(record)
        if progress is not None:
            progress(record)

    if not tasks:
        return 0
    pending = {asyncio.ensure_future(one(t)) for t in tasks}
    try:
        done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        for d in done:
            d.result()  # raises the first failure
    finally:
        for p in pending:
            p.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return len(tasks)


def evaluate(cfg: RunConfig, backend: Backend | None = None) -> dict:
    """Run (or resume) the evaluation ``cfg`` describes and write its report; returns the summary.
    ``backend`` overrides ``cfg.backend`` (tests, benchmarks); it is not closed here."""
    from verl_ext_eval.report import write_summary
    from verl_ext_eval.results import ResultsFile

    from .summary import summarize

    check_config(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    guard_out_dir(cfg)
    tasks = build_tasks(cfg)
    results = ResultsFile(out / RESULTS_FILE, key_field="key")
    done = results.done()
    keys = {}
    for t in tasks:
        keys.setdefault(episode_key(t), t)
    todo = [t for k, t in keys.items() if k not in done]
    logger.info("textcraft: %d episodes, %d already in %s, %d to play", len(keys), len(keys) - len(todo), out, len(todo))
    start = time.perf_counter()
    if todo:
        owned = backend is None
        backend = backend or make_run_backend(cfg.backend, cfg.format)
        try:
            asyncio.run(_with_progress(cfg, backend, todo, results))
        finally:
            if owned:
                asyncio.run(backend.close())
    elapsed = time.perf_counter() - start
    records = [r for r in results.records() if r.get("key") in keys]
    summary, sections = summarize(records, config=dataclasses.asdict(cfg), elapsed_s=elapsed)
    summary["played_this_run"] = len(todo)
    write_summary(out, summary, title=f"TextCraft: {cfg.goal_list if not cfg.goals else 'goals'}, {cfg.format} format",
                  sections=sections)
    return summary


class EpisodeProgress:
    """The runner's live numbers: episodes done, success so far, turns played, generated tokens/s.
    ``tick`` takes a finished record, ``turn`` a generation; ``postfix()`` is the bar's text."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.episodes = self.wins = self.turns = self.tokens = 0

    def tick(self, record: dict) -> None:
        self.episodes += 1
        self.wins += bool(record["success"])

    def turn(self, gen) -> None:
        self.turns += 1
        self.tokens += gen.num_tokens

    def postfix(self) -> dict[str, str]:
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        out = {"turns": str(self.turns), "tok/s": f"{self.tokens / elapsed:.1f}"}
        if self.episodes:
            out["success"] = f"{self.wins / self.episodes:.2f}"
        return out


async def _with_progress(cfg: RunConfig, backend: Backend, todo: list[Task], results) -> None:
    bar = None
    live = EpisodeProgress()
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="textcraft", unit="ep")

    def tick(record: dict) -> None:
        live.tick(record)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(live.postfix(), refresh=False)

    def turn(gen) -> None:
        live.turn(gen)
        if bar is not None and live.turns % 5 == 0:  # between episodes too: a 30-round episode is long
            bar.set_postfix(live.postfix())

    try:
        await run_episodes(cfg, backend, todo, results, tick, turn)
    finally:
        if bar is not None:
            bar.close()
    logger.info("textcraft: %d episodes, %d turns, %.1f generated tokens/s", live.episodes, live.turns,
                live.tokens / max(time.perf_counter() - live.start, 1e-9))


def build_parser() -> argparse.ArgumentParser:
    from omegaconf import OmegaConf

    defaults = OmegaConf.to_yaml(OmegaConf.structured(RunConfig))
    parser = argparse.ArgumentParser(
        prog="python -m verl_ext_eval.textcraft", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__, epilog="defaults (override any key with key=value):\n" + defaults)
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. episodes=50 backend.name=hf")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from verl_ext.overrides import OverrideError, build_config

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = build_config(RunConfig, args.overrides)
        summary = evaluate(cfg)
    except (OverrideError, RunConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    short = {k: summary[k] for k in ("episodes", "success_rate", "success_rate_ci95", "mean_steps", "failures",
                                     "success_by_depth", "episodes_by_depth", "success_by_depth_ci95")}
    print(json.dumps(short, indent=2))
    print(f"report: {Path(cfg.out_dir) / 'report.md'}")
    return 0
