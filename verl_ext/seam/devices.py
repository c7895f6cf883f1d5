"""What this machine can run, decided once at start and said in one line each.

GPU-only features (flash-attn, Liger kernels, verl's fused kernels) stay real code paths chosen by
config; where they cannot run here they fall back to the portable path and say so.
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field

from omegaconf import DictConfig, OmegaConf, open_dict

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


@dataclass
class DeviceReport:
    """What ``apply_device_defaults`` changed (``notes``), what the user asked for that will be slow
    here (``warnings``), and the training precision it settled on."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    precision: object | None = None  # verl_ext.seam.precision.TrainingPrecision

    def lines(self) -> list[str]:
        return [f"WARNING: {w}" for w in self.warnings] + self.notes


def apply_device_defaults(config: DictConfig) -> DeviceReport:
    """Make the composed config runnable (and fast) on this machine; say what changed and why."""
    from verl_ext.seam.precision import training_precision

    report = DeviceReport()
    lines = report.notes
    model, engine, trainer = config.model, config.engine, config.trainer
    cpu = on_cpu()
    with open_dict(config):
        attn = model.override_config.get("attn_implementation", "flash_attention_2")
        if cpu:
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
        mp = engine.get("mixed_precision")
        mp = OmegaConf.to_container(mp) if isinstance(mp, DictConfig) else mp
        precision = training_precision(mp, engine.get("model_dtype"), on_cpu=cpu)
        if precision.mixed_precision is not None:
            engine.mixed_precision = precision.mixed_precision
        report.precision = precision
        lines.append(precision.note)
        if precision.warning:
            report.warnings.append(precision.warning)
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
        if model.get("use_fused_kernels") and cpu:
            model.use_fused_kernels = False
            lines.append("model.use_fused_kernels=True needs Triton on a GPU: using the plain HF forward")
    return report
