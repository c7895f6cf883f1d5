"""TextCraft eval throughput: episodes per minute with 1 and with N episodes in flight, one run.

Both settings play the same kind of episodes (goals of the ADaPT list, a fixed number of rounds,
fixed ``max_new_tokens``) on one loaded ``hf`` backend, so the ratio shows what batching the
turns of concurrent episodes buys. Default model: SmolLM2-135M-Instruct (``verl_ext.assets``).
The target is a ratio >= 4 at 16 in flight.

    python -m bench.textcraft_eval --concurrency 16 --episodes-single 4 --episodes-batched 16 \\
        --max-rounds 3 --max-new-tokens 32
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time


class _Sink:
    """Stands in for the results file: keeps records in memory."""

    def __init__(self) -> None:
        self.records: list[dict] = []

    def append(self, record: dict) -> None:
        self.records.append(record)


def episodes_per_minute(backend, cfg, tasks) -> tuple[float, list[dict]]:
    from verl_ext_eval.textcraft.run import run_episodes

    sink = _Sink()
    start = time.perf_counter()
    asyncio.run(run_episodes(cfg, backend, tasks, sink))
    elapsed = time.perf_counter() - start
    return 60.0 * len(tasks) / elapsed, sink.records


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.textcraft_eval", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="HF model folder (default: SmolLM2-135M-Instruct, built offline)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--concurrency", type=int, default=16, help="episodes in flight for the batched setting")
    p.add_argument("--episodes-single", type=int, default=4, help="episodes played one at a time")
    p.add_argument("--episodes-batched", type=int, default=16, help="episodes played with --concurrency in flight")
    p.add_argument("--max-rounds", type=int, default=3)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--format", default="agentgym", choices=["agentgym", "adapt"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from verl_ext_eval.backends import make_backend
    from verl_ext_eval.textcraft.run import RunConfig, build_tasks

    model = args.model
    if model is None:
        from verl_ext.assets import convert_smollm2

        model = str(convert_smollm2())
    backend = make_backend("hf", path=model, device=args.device, dtype=args.dtype, max_batch_size=args.concurrency)

    def config(concurrency: int, episodes: int) -> RunConfig:
        cfg = RunConfig(episodes=episodes, concurrency=concurrency, max_rounds=args.max_rounds, format=args.format,
                        progress=False, save_messages=False)
        cfg.sampling.max_new_tokens = args.max_new_tokens
        return cfg

    try:
        warm = config(1, 1)
        episodes_per_minute(backend, warm, build_tasks(warm))  # first-call costs out of the measurement
        single_cfg = config(1, args.episodes_single)
        single, _ = episodes_per_minute(backend, single_cfg, build_tasks(single_cfg))
        batched_cfg = config(args.concurrency, args.episodes_batched)
        batched, records = episodes_per_minute(backend, batched_cfg, build_tasks(batched_cfg))
    finally:
        asyncio.run(backend.close())
    result = {
        "model": model, "device": args.device, "format": args.format, "max_rounds": args.max_rounds,
        "max_new_tokens": args.max_new_tokens,
        "episodes_per_minute_1": round(single, 2),
        f"episodes_per_minute_{args.concurrency}": round(batched, 2),
        "ratio": round(batched / single, 2),
        "mean_gen_tokens_batched": round(sum(r["gen_tokens"] for r in records) / len(records), 1),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
