"""``verl-ext prepare <the overrides of train>`` — build the tokenized cache ahead of time.

The config is composed exactly as ``verl-ext train`` composes it, so the cache it writes is the one
the training maps (same fingerprint). Prints the stats of the train and val sets.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

EXAMPLE = """examples:
  verl-ext prepare model.path=Qwen/Qwen3-1.7B data.train_files=train.parquet data.val_files=val.parquet \\
      data.max_length=8192 data.truncation=left
  # on a Ray cluster (workers read the files: put them on a shared filesystem, and data.cache_dir too)
  verl-ext prepare --ray --address HEAD_IP:6379 model.path=... data.train_files=/shared/train.parquet \\
      data.cache_dir=/shared/verl-ext-cache
then `verl-ext train` with the same data/model overrides maps the cache in seconds.
"""


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="verl-ext prepare",
        description="Read, validate and tokenize the train/val files into the tokenized cache "
        "(data.cache_dir) so every later training start maps it instead of tokenizing.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--ray", action="store_true", help="encode on a Ray cluster (Ray Data) instead of this machine's cores")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--json", action="store_true", help="print the stats as one JSON object")
    p.add_argument("overrides", nargs="*", help="the Hydra overrides you pass to verl-ext train")
    return p


def prepare(overrides: list[str], use_ray: bool = False, address: str | None = None) -> dict:
    """Build (or find) the caches of the train and val files; returns {split: {path, stats, seconds}}."""
    from omegaconf import open_dict

    from verl_ext.chat_template import inline_custom_chat_template, load_tokenizer
    from verl_ext.data import cache
    from verl_ext.seam.devices import apply_device_defaults
    from verl_ext.launch.preflight import compose
    from verl_ext.rows import DataError, iter_files
    from verl_ext.training.trainer import resolve_dataset

    config = compose(overrides)
    apply_device_defaults(config)
    resolve_dataset(config)
    cls = None
    if config.data.custom_cls.get("path"):
        from verl.utils.import_utils import load_extern_object

        cls = load_extern_object(config.data.custom_cls.path, config.data.custom_cls.name)
    if not hasattr(cls, "row_encoder"):
        raise DataError("the tokenized cache serves verl-ext's datasets (data.dataset=chat|prompt_response); "
                        f"this config uses {getattr(cls, '__name__', None) or 'verl MultiTurnSFTDataset'}")
    inline_custom_chat_template(config)
    tokenizer = load_tokenizer(config.model)  # as the trainer builds it: the cache fingerprint must match
    if use_ray and str(config.data.get("cache") or "auto") == "off":
        with open_dict(config):
            config.data.cache = "auto"
    out = {}
    for split, key, limit_key in (("train", "train_files", "train_max_samples"), ("val", "val_files", "val_max_samples")):
        if not config.data.get(key):
            continue
        files = [os.path.abspath(os.path.expanduser(p)) for p in iter_files(config.data[key])]
        t0 = time.monotonic()
        producer = None
        if use_ray:
            from verl_ext.data.cache_ray import ray_producer

            producer = ray_producer(files, config.data.get(limit_key, -1), address)
        _, stats, path = cache.load_or_build(cls, files, tokenizer, config.data, config.data.get(limit_key, -1),
                                             progress=True, producer=producer)
        out[split] = {"cache": path, "stats": stats, "seconds": round(time.monotonic() - t0, 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from verl_ext.chat_template import ChatTemplateError
    from verl_ext.rows import DataError

    try:
        result = prepare(args.overrides, use_ray=args.ray, address=args.address)
    except (DataError, ChatTemplateError) as e:
        print(f"verl-ext prepare: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    for split, r in result.items():
        s = r["stats"]
        print(f"{split}: {s['samples']:,} samples from {s['rows']:,} rows in {r['seconds']:.1f}s; {s['tokens']:,} tokens, "
              f"{s['trained_tokens']:,} trained; {s['truncated']:,} truncated, {s['dropped_no_target']:,} dropped\n"
              f"  cache: {r['cache']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
