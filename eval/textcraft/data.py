"""Expert TextCraft trajectories -> ``train.parquet`` / ``test.parquet`` in the ``messages`` schema.

Each row is one solved episode: a system prompt (the format's rules), the reset observation and
every later game reply as ``user`` turns (masked from the loss by role), and the expert's turns
as ``assistant`` turns written by the same format the runner parses. The split is by goal item,
so no goal is in both files. Goals whose solution needs more turns than ``--max-rounds`` are
left out and listed in the summary (the game's batch rules make some, e.g. netherite block,
need more than 30 actions).

Example:
    python -m verl_ext_eval.textcraft.data --out data/textcraft --format agentgym --test-ratio 0.2 --seed 0
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pyarrow as pa

from .agent import DEFAULT_MAX_ROUNDS, PROMPT_STYLES, apply_turn, initial_messages
from .env import Task, TextCraftEnv, make_task
from .formats import FORMATS, TurnFormat, get_format
from .recipes import GOAL_LISTS, RecipeBook, id_to_name, load_recipe_book

logger = logging.getLogger(__name__)

DATA_SOURCE = "textcraft_expert"
SCHEMA = pa.schema([
    ("messages", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string()), ("loss", pa.bool_())]))),
    ("data_source", pa.string()),
    ("item_id", pa.string()),
    ("goal", pa.string()),
    ("goal_name", pa.string()),
    ("depth", pa.int64()),
    ("seed", pa.int64()),
    ("format", pa.string()),
    ("num_turns", pa.int64()),
])


class TrajectoryError(RuntimeError):
    """The expert failed to solve a task (a bug: it must solve every goal)."""


@dataclass(frozen=True)
class Trajectory:
    task: Task
    messages: tuple[dict, ...]
    turns: int  # assistant turns

    def row(self, fmt: str) -> dict:
        return {
            "messages": list(self.messages), "data_source": DATA_SOURCE,
            "item_id": f"textcraft_{self.task.goal.split(':', 1)[1]}_{self.task.seed}",
            "goal": self.task.goal, "goal_name": id_to_name(self.task.goal), "depth": self.task.depth,
            "seed": self.task.seed, "format": fmt, "num_turns": self.turns,
        }


def expert_trajectory(task: Task, fmt: TurnFormat, book: RecipeBook | None = None,
                      prompt_style: str = "system") -> Trajectory:
    """Play the expert on ``task`` through ``apply_turn`` (what the runner does with a model)."""
    env = TextCraftEnv(book)
    observation = env.reset(task)
    messages = initial_messages(fmt, observation, prompt_style)
    turns = fmt.expert_turns(observation)
    for k, text in enumerate(turns):
        outcome = apply_turn(env, fmt, text)
        messages.append({"role": "assistant", "content": text})
        if outcome.done:
            return Trajectory(task, tuple(messages), k + 1)
        if not outcome.parsed or outcome.reply.startswith(("Could not", "Wrong item")):
            raise TrajectoryError(f"expert turn {k} for {task.goal} (seed {task.seed}) failed: {text!r} -> "
                                  f"{outcome.reply!r}")
        messages.append({"role": "user", "content": outcome.reply})
    raise TrajectoryError(f"expert did not craft {task.goal} (seed {task.seed}) in {len(turns)} turns")


def split_goals(goals: Sequence[str], test_ratio: float, seed: int) -> tuple[list[str], list[str]]:
    """Shuffle the goals under ``seed``; the first ``round(ratio * n)`` are the test goals."""
    if not 0.0 <= test_ratio < 1.0:
        raise ValueError(f"--test-ratio must be in [0, 1), got {test_ratio}")
    order = sorted(goals)
    random.Random(seed).shuffle(order)
    n_test = round(test_ratio * len(order))
    return sorted(order[n_test:]), sorted(order[:n_test])


def build_rows(goals: Sequence[str], fmt: TurnFormat, episodes_per_goal: int, seed: int, max_rounds: int,
               book: RecipeBook, position: Mapping[str, int], progress: Callable = iter,
               prompt_style: str = "system") -> tuple[list[dict], list[str]]:
    """Rows for ``goals`` (``episodes_per_goal`` shuffles each) and the goals left out because
    their solution is longer than ``max_rounds`` turns. A task's seed depends only on ``seed``
    and the goal's ``position`` in the goal list, not on the split."""
    rows, too_long = [], []
    for goal in progress(goals):
        first = seed * 1_000_003 + position[goal] * episodes_per_goal
        trajectories = [expert_trajectory(make_task(goal, first + k, book), fmt, book, prompt_style)
                        for k in range(episodes_per_goal)]
        if any(t.turns > max_rounds for t in trajectories):
            too_long.append(goal)
            continue
        rows += [t.row(fmt.name) for t in trajectories]
    return rows, too_long


def _split_summary(rows: list[dict]) -> dict:
    return {
        "rows": len(rows), "goals": len({r["goal"] for r in rows}),
        "by_depth": dict(sorted(Counter(r["depth"] for r in rows).items())),
        "mean_turns": round(sum(r["num_turns"] for r in rows) / len(rows), 3) if rows else None,
        "max_turns": max((r["num_turns"] for r in rows), default=None),
    }


def write_splits(out: Path, splits: dict[str, list[dict]]) -> list[Path]:
    """Each split to ``<out>/<name>.parquet`` atomically (nothing is renamed unless all wrote)."""
    from verl_ext.io import ParquetChunkWriter

    writers = {name: ParquetChunkWriter(out / f"{name}.parquet", SCHEMA) for name in splits}
    try:
        for name, rows in splits.items():
            writers[name].write_rows(rows)
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.commit()
    return [w.path for w in writers.values()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m verl_ext_eval.textcraft.data", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="output folder (train.parquet, test.parquet, summary.json)")
    parser.add_argument("--format", default="agentgym", choices=sorted(FORMATS), help="assistant turn format")
    parser.add_argument("--test-ratio", type=float, default=0.2, help="share of goal items in test.parquet")
    parser.add_argument("--seed", type=int, default=0, help="split and task-shuffle seed")
    parser.add_argument("--goal-list", default="agentgym", choices=GOAL_LISTS,
                        help="goals to draw from: agentgym = all 544 craftable items, adapt = the 419 of depth >= 2")
    parser.add_argument("--episodes-per-goal", type=int, default=1,
                        help="trajectories per goal, each with its own command shuffle and distractors")
    parser.add_argument("--prompt-style", default="system", choices=PROMPT_STYLES,
                        help="system: rules as a system message; turn: as a first user turn + acknowledgement (AgentTraj-L)")
    parser.add_argument("--max-rounds", type=int, default=DEFAULT_MAX_ROUNDS,
                        help="leave out goals whose solution needs more assistant turns (the runner's step limit)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes_per_goal < 1:
        print("error: --episodes-per-goal must be >= 1", file=sys.stderr)
        return 2
    book, fmt = load_recipe_book(), get_format(args.format)
    goals = book.goal_list(args.goal_list)
    try:
        train_goals, test_goals = split_goals(goals, args.test_ratio, args.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    position = {g: i for i, g in enumerate(goals)}
    splits: dict[str, list[dict]] = {}
    skipped: list[str] = []
    for name, split in (("train", train_goals), ("test", test_goals)):
        rows, too_long = build_rows(split, fmt, args.episodes_per_goal, args.seed, args.max_rounds, book, position,
                                    progress=lambda it, name=name: tqdm(it, desc=name, unit="goal"),
                                    prompt_style=args.prompt_style)
        splits[name] = rows
        skipped += too_long
    paths = write_splits(args.out, splits)
    summary = {
        "format": fmt.name, "goal_list": args.goal_list, "seed": args.seed, "test_ratio": args.test_ratio,
        "episodes_per_goal": args.episodes_per_goal, "max_rounds": args.max_rounds, "prompt_style": args.prompt_style,
        "splits": {name: _split_summary(rows) for name, rows in splits.items()},
        "skipped_over_max_rounds": sorted(skipped), "outputs": [str(p) for p in paths],
    }
    from verl_ext.io import atomic_write

    atomic_write(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
