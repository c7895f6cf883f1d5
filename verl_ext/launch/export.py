"""``verl-ext export CKPT [--out DIR]``: an FSDP checkpoint -> a Hugging Face folder that
``AutoModelForCausalLM.from_pretrained`` loads, with LoRA merged for real.

verl's ``python -m verl.model_merger merge --backend fsdp`` writes the base weights plus a separate
``lora_adapter/`` for LoRA runs, so its "merged" model equals the base model (verl #4553, #7285).
Here the adapter is folded in with peft's ``merge_and_unload`` and the result is checked: LoRA target
weights must differ from the base. The folder is written under a temp name and renamed at the end.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)


class ExportError(RuntimeError):
    pass


def resolve_checkpoint(path: str | Path) -> Path:
    """A ``global_step_N`` folder, or a ``trainer.default_local_dir`` (its latest checkpoint)."""
    path = Path(path).expanduser()
    if path.name.startswith("global_step_") and path.is_dir():
        return path
    latest = path / "latest_checkpointed_iteration.txt"
    if latest.exists():
        step = latest.read_text().strip()
        if (path / f"global_step_{step}").is_dir():
            return path / f"global_step_{step}"
    steps = sorted(path.glob("global_step_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    if not steps:
        raise ExportError(f"{path}: no global_step_<N> checkpoint folder found")
    return steps[-1]


def merge_lora(model_dir: Path, adapter_dir: Path, out_dir: Path) -> float:
    """Fold the adapter into the weights; return the largest change on a LoRA-targeted weight."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    before = {k: v.detach().clone() for k, v in base.state_dict().items()}
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    after = merged.state_dict()
    changed = max(float((after[k] - before[k]).abs().max()) for k in after if k in before)
    if changed == 0.0:
        raise ExportError(f"LoRA adapter in {adapter_dir} changes no weight: it was never trained (B matrices are zero)")
    merged.save_pretrained(str(out_dir))
    return changed


def export(checkpoint: str | Path, out_dir: str | Path | None = None) -> Path:
    ckpt = resolve_checkpoint(checkpoint)
    out = Path(out_dir) if out_dir else ckpt / "hf_merged"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        merged_dir = tmp / "verl_merge"
        cmd = [sys.executable, "-m", "verl.model_merger", "merge", "--backend", "fsdp",
               "--local_dir", str(ckpt), "--target_dir", str(merged_dir)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ExportError(f"verl.model_merger failed on {ckpt}:\n{proc.stderr[-2000:]}")
        final = tmp / "final"
        adapter = merged_dir / "lora_adapter"
        if adapter.is_dir():
            delta = merge_lora(merged_dir, adapter, final)
            logger.info("LoRA merged into the base weights (largest change %.3g)", delta)
            for f in merged_dir.iterdir():  # tokenizer + chat template
                if f.is_file() and not f.name.endswith(".safetensors") and not (final / f.name).exists():
                    shutil.copy2(f, final / f.name)
            shutil.copytree(adapter, final / "lora_adapter")
        else:
            merged_dir.rename(final)
        if out.exists():
            shutil.rmtree(out)
        os.rename(final, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="verl-ext export",
        description="Export an FSDP checkpoint to a Hugging Face folder (LoRA merged for real).",
        epilog="example: verl-ext export checkpoints/my-project/my-run --out models/my-run-hf",
    )
    p.add_argument("checkpoint", help="global_step_<N> folder, or the run's trainer.default_local_dir (latest step)")
    p.add_argument("--out", help="target folder (default: <checkpoint>/hf_merged)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(export(args.checkpoint, args.out))
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
