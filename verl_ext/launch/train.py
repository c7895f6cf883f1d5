"""``python -m verl_ext.launch.train [--dry-run] key=value ...`` — preflight, plan, then verl's SFT trainer.

Same as ``verl-ext train``. Overrides are verl's Hydra keys (plus ``data.dataset=chat|prompt_response``
and the ``gen_eval.*`` keys); ``trainer.n_gpus_per_node`` is the number of processes.
"""
from __future__ import annotations

import argparse
import sys

EXAMPLE = """example (CPU, tiny model):
  python -m verl_ext.launch.train model.path=$(python -m verl_ext.assets tiny-qwen3) \\
      data.train_files=train.parquet data.dataset=chat data.train_batch_size=8 \\
      data.max_length=1024 trainer.n_gpus_per_node=2 trainer.total_epochs=1 trainer.logger=[console]
"""


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verl-ext train",
        description="Check the config (preflight), print the plan, and run verl's FSDP SFT trainer under torchrun.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dry-run", action="store_true", help="preflight + plan + the command, then stop")
    p.add_argument("--skip-preflight", action="store_true", help="launch without checking (not recommended)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.train_files=train.parquet")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from verl_ext.launch.launcher import train
    from verl_ext.launch.preflight import PreflightError

    try:
        return train(args.overrides, dry_run=args.dry_run, skip_preflight=args.skip_preflight)
    except PreflightError:
        return 2


if __name__ == "__main__":
    sys.exit(main())
