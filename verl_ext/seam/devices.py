"""What this machine can run, decided once at start and said in one line each.

GPU-only features (flash-attn, Liger kernels, verl's fused kernels) stay real code paths chosen by
config; where they cannot run here they fall back to the portable path and say so.
"""
from __future__ import annotations

import importlib.util
import logging

from omegaconf import DictConfig, open_dict

logger = logging.getLogger(__name__)


def flash_attn_usable() -> tuple[bool, str]:
    """flash-attn must import (a wheel built for another CUDA/torch fails here, not at step 1)."""
    if importlib.util.find_spec("flash_attn") is None:
        return False, "flash-attn is not installed"
    try:
        import flash_attn  # noqa: F401
        from flash_attn import flash_attn_varlen_func  # noqa: F401
    except Exception as e:  # undefined symbols from a mismatched build
        return False, f"flash-attn is installed but does not import ({type(e).__name__}: {str(e)[:120]})"
    import torch

    if not torch.cuda.is_available():
        return False, "flash-attn needs a CUDA device"
    return True, "ok"


def liger_usable() -> tuple[bool, str]:
    if importlib.util.find_spec("liger_kernel") is None:
        return False, "liger-kernel is not installed"
    import torch

    if not torch.cuda.is_available():
        return False, "Liger kernels need a CUDA device (Triton)"
    try:  # what verl calls; fails when liger does not match the installed triton / transformers
        from liger_kernel.transformers.monkey_patch import _apply_liger_kernel_to_instance  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means: fall back, and say why
        return False, f"liger-kernel does not import here ({type(e).__name__}: {str(e)[:120]})"
    return True, "ok"


def on_cpu() -> bool:
    from verl_ext.seam.cpu_platform import accelerator_present

    return not accelerator_present()


def apply_device_defaults(config: DictConfig) -> list[str]:
    """Make the composed config runnable on this machine; return one line per change made."""
    lines: list[str] = []
    model, engine, trainer = config.model, config.engine, config.trainer
    with open_dict(config):
        attn = model.override_config.get("attn_implementation", "flash_attention_2")
        if on_cpu():
            changed = []
            if trainer.device != "cpu":
                trainer.device = "cpu"
                changed.append("trainer.device=cpu")
            if engine.strategy != "fsdp2":  # FSDP1 refuses CPU parameters with sync_module_states
                engine.strategy = "fsdp2"
                changed.append("engine.strategy=fsdp2")
            lines.append(
                "no accelerator found: verl-ext CPU platform (gloo process groups, fsdp2, sdpa attention, "
                f"trainer.device=cpu){'; set ' + ', '.join(changed) if changed else ''}"
            )
        if attn == "flash_attention_2":
            ok, why = flash_attn_usable()
            if not ok:
                model.override_config.attn_implementation = "sdpa"
                lines.append(f"flash-attention unavailable ({why}): using sdpa attention")
        if model.get("use_liger"):
            ok, why = liger_usable()
            if not ok:
                model.use_liger = False
                lines.append(f"model.use_liger=True but {why}: using the plain HF forward")
        if model.get("use_fused_kernels") and on_cpu():
            model.use_fused_kernels = False
            lines.append("model.use_fused_kernels=True needs Triton on a GPU: using the plain HF forward")
    return lines
