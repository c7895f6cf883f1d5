"""Every change verl-ext makes to verl / transformers behaviour at run time, in one place.

Each patch says why, which upstream issue it works around, and the versions it was written for;
``apply()`` refuses to patch other versions silently (it logs and skips), and
``tests/verl_ext/test_patches.py`` fails when upstream code the patches rely on moves.
Delete a patch when upstream fixes the bug it works around.
"""
from __future__ import annotations

import contextlib
import logging
import os
from datetime import timedelta

logger = logging.getLogger(__name__)

VERL_VERSIONS = ("0.9.1",)
TRANSFORMERS_MIN, TRANSFORMERS_MAX = (5, 5), (5, 11)
_applied: list[str] = []


def applied() -> tuple[str, ...]:
    return tuple(_applied)


def _versions_ok() -> bool:
    import transformers
    import verl

    tv = tuple(int(x) for x in transformers.__version__.split(".")[:2])
    ok = verl.__version__ in VERL_VERSIONS and TRANSFORMERS_MIN <= tv < TRANSFORMERS_MAX
    if not ok:
        logger.warning(
            "verl-ext patches were written for verl %s and transformers >=%s,<%s; found verl %s, transformers %s: "
            "patches NOT applied (sequence parallel under sdpa and CPU process groups may be wrong)",
            VERL_VERSIONS, TRANSFORMERS_MIN, TRANSFORMERS_MAX, verl.__version__, transformers.__version__,
        )
    return ok


def patch_ulysses_sdpa() -> None:
    """verl 0.9.1 applies Ulysses all-to-all only inside flash-attention's forward
    (``verl/models/transformers/monkey_patch.py``), so ``engine.ulysses_sequence_parallel_size>1`` with
    sdpa attends within each rank's slice: silently wrong. Register a Ulysses-aware "sdpa" through
    transformers' public ``AttentionInterface``; with sp off it calls the stock function."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from verl_ext.seam.ulysses_sdpa import make_ulysses_sdpa

    current = ALL_ATTENTION_FUNCTIONS["sdpa"]
    if getattr(current, "stock", None) is not None:
        return
    ALL_ATTENTION_FUNCTIONS["sdpa"] = make_ulysses_sdpa(sdpa_attention_forward)
    _applied.append("ulysses_sdpa")


def cpu_process_group(timeout_second: int = 36000):
    """``verl.utils.distributed.initialize_global_process_group`` builds the backend string
    ``f"cpu:gloo,{device}:{backend}"``, which is ``cpu:gloo,cpu:gloo`` on CPU and fails with
    "Duplicate device type cpu". Same function, plain gloo."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(
            backend="gloo",
            timeout=timedelta(seconds=timeout_second),
            init_method=os.environ.get("DIST_INIT_METHOD", None),
        )
    return int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def patch_cpu_process_group() -> None:
    import verl.utils.distributed as vdist

    if vdist.initialize_global_process_group is not cpu_process_group:
        vdist.initialize_global_process_group = cpu_process_group
        _applied.append("cpu_process_group")


def patch_cpu_process_group_ray() -> None:
    """The Ray twin of ``cpu_process_group``: ``TrainingWorker.__init__`` (verl 0.9.1
    ``workers/engine_workers.py``) calls ``initialize_global_process_group_ray()``, whose backend
    defaults to ``f"cpu:gloo,{device}:{backend}"`` = ``cpu:gloo,cpu:gloo`` on CPU ("Duplicate device
    type cpu"). engine_workers imported the function by name, so rebinding the module attribute would
    miss it: make its ``backend`` default plain gloo instead (same function object everywhere)."""
    import inspect

    from verl.utils.distributed import initialize_global_process_group_ray as init

    if list(inspect.signature(init).parameters) != ["timeout_second", "backend"]:
        logger.warning("verl's initialize_global_process_group_ray changed signature: CPU Ray patch NOT applied")
        return
    if init.__defaults__ != (None, "gloo"):
        init.__defaults__ = (None, "gloo")
        _applied.append("cpu_process_group_ray")


@contextlib.contextmanager
def ray_dataloader_workers(num_workers: int):
    """verl 0.9.1's Ray ``SFTTrainer._build_dataloader`` hard-codes ``num_workers=8`` (the torchrun
    trainer reads ``data.num_workers``): 8 forks of a Ray driver per loader on a small machine. Within
    that call only, build its ``StatefulDataLoader``s with ``data.num_workers``."""
    import functools

    import verl.trainer.sft_trainer_ray as sft_ray

    original = sft_ray.StatefulDataLoader

    @functools.wraps(original, updated=())
    def loader(*args, **kwargs):
        kwargs["num_workers"] = num_workers
        return original(*args, **kwargs)

    sft_ray.StatefulDataLoader = loader
    try:
        yield
    finally:
        sft_ray.StatefulDataLoader = original


def register_cpu_engines() -> None:
    """verl registers its FSDP engines for cuda/npu only (``EngineRegistry`` keyed by device): add
    the same classes for ``cpu`` through the registry, instead of ``VERL_ENGINE_DEVICE`` tricks."""
    import warnings

    with warnings.catch_warnings():  # verl warns about every optional engine it cannot import
        warnings.simplefilter("ignore", UserWarning)
        from verl.workers.engine.base import EngineRegistry
        from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead, FSDPEngineWithValueHead

    for model_type, cls in (("language_model", FSDPEngineWithLMHead), ("value_model", FSDPEngineWithValueHead)):
        for backend in ("fsdp", "fsdp2"):
            if "cpu" not in EngineRegistry._engines.get(model_type, {}).get(backend, {}):
                EngineRegistry.register(model_type=model_type, backend=backend, device="cpu")(cls)
    _applied.append("cpu_engines")


def patch_file_logger_append() -> None:
    """verl's ``FileLogger`` opens its JSONL with mode "wb": a resumed run erases the metrics of the
    run it resumes. Open for append instead (same path, same records)."""
    from verl.utils import tracking

    cls = tracking.FileLogger
    if getattr(cls, "_verl_ext_append", False):
        return
    original_init = cls.__init__

    def __init__(self, *args, **kwargs):
        import builtins

        real_open = builtins.open

        def append_open(file, mode="r", *a, **k):
            return real_open(file, "ab" if mode == "wb" else mode, *a, **k)

        builtins.open = append_open
        try:
            original_init(self, *args, **kwargs)
        finally:
            builtins.open = real_open

    cls.__init__ = __init__
    cls._verl_ext_append = True
    _applied.append("file_logger_append")


@contextlib.contextmanager
def sft_tracking(make_class):
    """verl's ``SFTTrainer.fit`` builds its ``Tracking`` inline and logs ``val/loss`` from a dict it
    builds inline: no hook for extra validation metrics. Within ``fit`` only, swap the class the
    trainer module looks up for ``make_class(Tracking)`` (a subclass that adds ``val-gen/*``)."""
    import verl.trainer.sft_trainer as sft

    original = sft.Tracking
    sft.Tracking = make_class(original)
    try:
        yield
    finally:
        sft.Tracking = original


def apply(cpu: bool) -> tuple[str, ...]:
    """Apply the patches this process needs; ``cpu`` adds the CPU-only ones."""
    if not _versions_ok():
        return applied()
    patch_ulysses_sdpa()
    patch_file_logger_append()
    if cpu:
        patch_cpu_process_group()
        patch_cpu_process_group_ray()
        register_cpu_engines()
    return applied()
