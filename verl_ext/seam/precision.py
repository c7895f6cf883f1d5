"""The compute dtype of this machine: bf16 where the hardware multiplies bf16 natively, fp32 elsewhere.

On a GPU verl's defaults stay (FSDP mixed precision: bf16 compute, fp32 master weights). On a CPU,
bf16 is fast only with AMX or AVX512-BF16 (oneDNN's kernels; ``bf16`` on Arm); without them torch
runs bf16 matmuls through its scalar fallback (``cpublas_gemm_impl``): on a 2-core AVX2-only EPYC a
512x512 matmul ran 39x slower in bf16 than in fp32, a SmolLM2-135M forward+backward here with oneDNN
capped at AVX2 ~60x. So training (FSDP mixed precision + model dtype), generation eval, the ``hf``
eval backend, export and managed SGLang servers compute in fp32 on such CPUs.

The choice comes from CPU flags (plus oneDNN's ISA cap), so every process on a machine, every rank,
makes the same one; a matmul is timed only to report what a bf16 request would cost. One place
decides; everything else calls ``cpu_bf16()`` / ``compute_dtype()``.

``VERL_EXT_CPU_BF16=native|none`` overrides the detection: emulate a CPU without native bf16 on one
that has it (with ``ONEDNN_MAX_CPU_ISA=AVX2`` oneDNN itself stops using AMX/AVX512-BF16 too).
"""
from __future__ import annotations

import functools
import logging
import os
import platform
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

ENV = "VERL_EXT_CPU_BF16"
# FSDP mixed precision that computes in fp32 (verl reads engine.mixed_precision; None = bf16 compute)
FP32_MIXED_PRECISION = {"param_dtype": "fp32", "reduce_dtype": "fp32", "buffer_dtype": "fp32"}
_BF16_NAMES = {"bf16", "bfloat16"}
_FP32_NAMES = {"fp32", "float32"}


class PrecisionError(ValueError):
    """A dtype setting verl-ext cannot read; the message names the key and the accepted values."""


@dataclass(frozen=True)
class CpuBf16:
    """Whether this CPU multiplies bf16 natively, and the evidence in words."""

    native: bool
    why: str


def _probe(name: str) -> bool | None:
    """torch's private CPU feature probes (absent on some builds / architectures)."""
    import torch

    fn = getattr(torch.cpu, name, None)
    try:
        return bool(fn()) if fn is not None else None
    except Exception:  # noqa: BLE001 - a probe that fails says nothing
        return None


@functools.cache
def cpu_bf16() -> CpuBf16:
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("native", "1", "true"):
        return CpuBf16(True, f"{ENV}={forced}")
    if forced in ("none", "0", "false"):
        return CpuBf16(False, f"{ENV}={forced}")
    if forced and forced != "auto":
        raise PrecisionError(f"{ENV}={forced!r}; use native, none or auto")
    import torch

    # oneDNN's bf16 check; it honours ONEDNN_MAX_CPU_ISA (capped at AVX2 it is False on an AMX CPU)
    onednn = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
        amx, avx512 = _probe("_is_amx_tile_supported"), _probe("_is_avx512_bf16_supported")
        units = [n for n, ok in (("AMX", amx), ("AVX512-BF16", avx512)) if ok]
        if onednn and units:
            return CpuBf16(True, " + ".join(units))
        if units:  # the units exist but oneDNN was told not to use them
            return CpuBf16(False, f"{' + '.join(units)} present but oneDNN capped at ONEDNN_MAX_CPU_ISA={cap}")
        return CpuBf16(False, f"no AMX or AVX512-BF16 ({torch.backends.cpu.get_cpu_capability()} only)")
    if onednn:
        return CpuBf16(True, f"oneDNN bf16 on {platform.machine()}")
    return CpuBf16(False, f"no native bf16 on {platform.machine()}" + (f" (ONEDNN_MAX_CPU_ISA={cap})" if cap else ""))


@functools.cache
def bf16_slowdown(n: int = 256, budget_s: float = 0.1) -> float:
    """How many times slower a one-thread n x n matmul runs in bf16 than in fp32 on this CPU
    (< 1: bf16 is faster). Time-bounded: ~2 x budget_s, whatever the CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rates = {}
        for dtype in (torch.float32, torch.bfloat16):
            a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
            a @ b  # warm-up (oneDNN primitive creation)
            reps, t0 = 0, time.perf_counter()
            while reps == 0 or time.perf_counter() - t0 < budget_s:
                a @ b
                reps += 1
            rates[dtype] = reps / (time.perf_counter() - t0)
        return rates[torch.float32] / rates[torch.bfloat16]
    finally:
        torch.set_num_threads(threads)


def slowdown_words() -> str:
    """``a bf16 matmul measured 39x slower than fp32 here`` (or faster, where it is)."""
    ratio = bf16_slowdown()
    if ratio >= 1:
        return f"a bf16 matmul measured {ratio:.0f}x slower than fp32 here"
    return f"a bf16 matmul measured {1 / ratio:.1f}x faster than fp32 here"


def compute_dtype(device: str = "cpu"):
    """The dtype to compute in on ``device``: bf16 on accelerators and on CPUs with native bf16, else fp32."""
    import torch

    if device != "cpu":
        return torch.bfloat16
    return torch.bfloat16 if cpu_bf16().native else torch.float32


def dtype_name(value) -> str | None:
    """``bf16``/``fp32``/``fp16`` for a dtype or one of its spellings (verl's PrecisionType names too)."""
    if value is None:
        return None
    s = str(value).lower().replace("torch.", "")
    if s in _BF16_NAMES:
        return "bf16"
    if s in _FP32_NAMES:
        return "fp32"
    if s in ("fp16", "float16", "half"):
        return "fp16"
    raise PrecisionError(f"unknown dtype {value!r}; use bf16, fp32 or fp16")


@dataclass(frozen=True)
class TrainingPrecision:
    """What the FSDP engine will compute in, and why (for the plan, the stage log and preflight)."""

    compute: str  # bf16 | fp32 | fp16
    why: str
    mixed_precision: dict | None = None  # what to set engine.mixed_precision to; None = leave it
    warning: str | None = None

    @property
    def note(self) -> str:
        return f"compute dtype {self.compute}: {self.why}"


def training_precision(mixed_precision, model_dtype, on_cpu: bool) -> TrainingPrecision:
    """Decide from verl's ``engine.mixed_precision`` (None unless the user set it) and
    ``engine.model_dtype``. The user's explicit setting wins; on a CPU without native bf16 a bf16
    request is kept but warned about, with the measured cost."""
    requested = dtype_name((mixed_precision or {}).get("param_dtype", "bf16")) if mixed_precision else None
    weights = dtype_name(model_dtype) or "fp32"
    if not on_cpu:
        return TrainingPrecision(requested or "bf16", f"accelerator, FSDP mixed precision with {weights} weights"
                                 + (" (engine.mixed_precision, set by you)" if requested else ""))
    bf16 = cpu_bf16()
    slow = [k for k, v in (("engine.mixed_precision.param_dtype", requested), ("engine.model_dtype", weights)) if v == "bf16"]
    warning = None
    if slow and not bf16.native:
        warning = (f"{' and '.join(slow)}=bf16 on a CPU without native bf16 ({bf16.why}): {slowdown_words()}; "
                   "drop the setting and verl-ext trains in fp32")
    if requested is not None:
        return TrainingPrecision(requested, "engine.mixed_precision.param_dtype, set by you", warning=warning)
    if bf16.native:
        return TrainingPrecision("bf16", f"this CPU multiplies bf16 natively ({bf16.why}); FSDP mixed precision "
                                         f"with {weights} weights", warning=warning)
    return TrainingPrecision(
        "fp32", f"this CPU has no native bf16 ({bf16.why}), where bf16 matmuls run through torch's scalar "
                "fallback (+engine.mixed_precision.param_dtype=bf16 forces bf16)",
        dict(FP32_MIXED_PRECISION), warning)
