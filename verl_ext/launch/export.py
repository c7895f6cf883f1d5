"""``verl-ext export CKPT [--out DIR] [--chat-template FILE]``: an FSDP checkpoint -> a Hugging Face folder that
``AutoModelForCausalLM.from_pretrained`` loads, with LoRA merged for real.

verl's ``python -m verl.model_merger merge --backend fsdp`` writes the base weights plus a separate
``lora_adapter/`` for LoRA runs, so its "merged" model equals the base model (verl #4553, #7285).
Here the adapter is folded in with peft's ``merge_and_unload`` and the result is checked: LoRA target
weights must differ from the base. The folder is written under a temp name and renamed at the end.
Its chat template is the one the run trained with (verl saves the tokenizer with
``model.custom_chat_template`` applied) or ``--chat-template``'s, as ``chat_template.jinja``: what
SGLang serves.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from verl_ext.io import atomic_write

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


def write_chat_template(folder: Path, value: str | None) -> str | None:
    """Set the HF folder's chat template to ``value`` (inline Jinja or a ``.jinja`` file; None keeps
    the one training saved, ``model.custom_chat_template`` included) the way transformers saves it
    (``chat_template.jinja``), so SGLang and ``from_pretrained`` serve it; returns the folder's template."""
    from transformers import AutoTokenizer

    from verl_ext.chat_template import apply_chat_template_override

    if value is not None:
        tokenizer = apply_chat_template_override(AutoTokenizer.from_pretrained(str(folder)), value, "--chat-template")
        tokenizer.save_pretrained(str(folder))
    saved = AutoTokenizer.from_pretrained(str(folder)).chat_template
    if value is not None and saved != tokenizer.chat_template:
        raise ExportError(f"{folder}: the chat template did not survive save and reload")
    if not saved:
        logger.warning("%s has no chat template: evaluate it with raw-text prompts (prompt.mode=complete) or "
                       "export again with --chat-template FILE", folder)
    return saved


DTYPES = ("auto", "bfloat16", "float32")


def export_dtype(requested: str = "auto") -> str:
    """The dtype the exported weights are stored (and so, by default, loaded and served) in. ``auto``:
    float32 where this machine computes in fp32 (a CPU without native bf16, ``verl_ext.seam.precision``),
    else bfloat16, what verl's merger writes."""
    if requested not in DTYPES:
        raise ExportError(f"--dtype {requested!r}; choose one of {', '.join(DTYPES)}")
    if requested != "auto":
        return requested
    import torch

    from verl_ext.seam.precision import compute_dtype

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return "float32" if compute_dtype(device) == torch.float32 else "bfloat16"


def cast_folder(folder: Path, dtype: str) -> int:
    """Store every floating-point tensor of the folder's safetensors in ``dtype`` and record it in
    ``config.json`` (what ``from_pretrained`` and SGLang's ``--dtype auto`` load in); returns the
    number of tensors cast. One shard at a time, each replaced atomically."""
    import torch
    from safetensors.torch import load_file, save_file

    target = getattr(torch, dtype)
    cast, total_bytes = 0, 0
    for shard in sorted(folder.glob("*.safetensors")):
        tensors = load_file(str(shard))
        todo = [k for k, v in tensors.items() if v.is_floating_point() and v.dtype != target]
        for k in todo:
            tensors[k] = tensors[k].to(target)
        total_bytes += sum(v.numel() * v.element_size() for v in tensors.values())
        if todo:
            tmp = shard.with_name(f".{shard.name}.tmp")
            save_file(tensors, str(tmp), metadata={"format": "pt"})
            os.replace(tmp, shard)
            cast += len(todo)
    config = folder / "config.json"
    if config.exists():
        cfg = json.loads(config.read_text())
        cfg["dtype"] = dtype  # transformers 5 writes "dtype"; older readers look for "torch_dtype"
        if "torch_dtype" in cfg:
            cfg["torch_dtype"] = dtype
        atomic_write(config, json.dumps(cfg, indent=2) + "\n")
    index = folder / "model.safetensors.index.json"
    if index.exists() and cast:
        idx = json.loads(index.read_text())
        idx.setdefault("metadata", {})["total_size"] = total_bytes
        atomic_write(index, json.dumps(idx, indent=2) + "\n")
    return cast


def export(checkpoint: str | Path, out_dir: str | Path | None = None, chat_template: str | None = None,
           dtype: str = "auto") -> Path:
    """The checkpoint as an HF folder at ``out_dir``; ``chat_template`` replaces its chat template;
    weights stored in ``export_dtype(dtype)`` (verl's merger rounds them to bf16 first: an fp32 export
    is for computing in fp32 where bf16 is slow, not for more precision)."""
    dtype = export_dtype(dtype)
    from verl_ext.chat_template import resolve_chat_template

    chat_template = resolve_chat_template(chat_template, "--chat-template")  # a bad path fails before the merge
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
        write_chat_template(final, chat_template)
        if cast_folder(final, dtype):
            logger.info("weights stored as %s (--dtype)", dtype)
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
        epilog="examples:\n  verl-ext export checkpoints/my-project/my-run --out models/my-run-hf\n"
               "  verl-ext export checkpoints/my-project/my-run --out models/my-run-hf --chat-template r1_keep_reasoning.jinja",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="global_step_<N> folder, or the run's trainer.default_local_dir (latest step)")
    p.add_argument("--out", help="target folder (default: <checkpoint>/hf_merged)")
    p.add_argument("--chat-template", metavar="FILE_OR_JINJA", default=None,
                   help="write this chat template (a .jinja file or inline Jinja) into the folder; default: the "
                        "one the run trained with (model.custom_chat_template, else the model's own)")
    p.add_argument("--dtype", choices=DTYPES, default="auto",
                   help="dtype the weights are stored in; auto: float32 on a CPU without native bf16 (so loaders "
                        "compute in fp32 there), else bfloat16")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from verl_ext.chat_template import ChatTemplateError

    try:
        print(export(args.checkpoint, args.out, args.chat_template, args.dtype))
    except (ExportError, ChatTemplateError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
