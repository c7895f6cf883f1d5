"""Every verl-ext patch rests on a fact about upstream code. These tests pin those facts, so an
upgrade that fixes (or moves) the upstream code fails here and says which patch to revisit."""
import inspect

import verl

from verl_ext.seam import patches, plugin


def test_versions_pinned():
    assert verl.__version__ in patches.VERL_VERSIONS


def test_plugin_loaded_through_verl_entry_point():
    from importlib.metadata import entry_points

    assert any(ep.value == "verl_ext.seam.plugin" for ep in entry_points(group="verl.plugins"))
    assert plugin.LOADED and "ulysses_sdpa" in plugin.APPLIED
    if plugin.CPU:
        assert {"cpu_process_group", "cpu_engines"} <= set(plugin.APPLIED)


def test_upstream_ulysses_still_flash_only():
    """patch_ulysses_sdpa: verl wires Ulysses into flash-attention only. If this fails, verl may
    handle sdpa itself now: check and delete verl_ext/seam/ulysses_sdpa.py + the patch."""
    from verl.models.transformers import monkey_patch

    src = inspect.getsource(monkey_patch.apply_monkey_patch)
    assert "_flash_attention_forward" in src
    assert "sdpa" not in src.replace("use_prefix_grouper", "")


def test_sdpa_registration_wraps_the_stock_function():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    assert ALL_ATTENTION_FUNCTIONS["sdpa"].stock is sdpa_attention_forward


def test_upstream_process_group_backend_string():
    """cpu_process_group: verl builds "cpu:gloo,<device>:<backend>" (duplicate on CPU)."""
    import verl.utils.distributed as vdist

    src = inspect.getsource(vdist)
    assert 'f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"' in src


def test_upstream_fsdp_engine_not_registered_for_cpu():
    """register_cpu_engines: verl registers its FSDP engine for cuda/npu only."""
    from verl.workers.engine.fsdp import transformer_impl

    src = inspect.getsource(transformer_impl)
    assert 'backend=["fsdp", "fsdp2"], device=["cuda", "npu"]' in src


def test_upstream_sft_fit_hooks_still_exist():
    """sft_tracking + the end-of-epoch resume fix (verl #7401) rely on fit()'s shape."""
    from verl.trainer import sft_trainer

    src = inspect.getsource(sft_trainer.SFTTrainer.fit)
    assert "tracking = Tracking(" in src
    assert 'metric = {"val/loss"' in src
    assert "start_epoch = global_step // self.steps_per_epoch" in src
    assert "for val_data in self.val_dataloader" in src


def test_sft_tracking_restores_the_class():
    from verl.trainer import sft_trainer

    original = sft_trainer.Tracking
    with patches.sft_tracking(lambda base: type("T", (base,), {})):
        assert sft_trainer.Tracking is not original
    assert sft_trainer.Tracking is original


def test_cpu_platform_selected_without_accelerator():
    from verl.utils.device import get_device_name, get_nccl_backend

    if plugin.CPU:
        assert get_device_name() == "cpu"
        assert get_nccl_backend() == "gloo"


def test_upstream_file_logger_truncates():
    """patch_file_logger_append: verl opens the metrics file with "wb" (a resume erases it)."""
    from verl.utils import tracking

    src = inspect.getsource(tracking)
    assert 'open(self.filepath, "wb", buffering=0)' in src
    assert tracking.FileLogger._verl_ext_append


def test_file_logger_appends(tmp_path, monkeypatch):
    from verl.utils.tracking import FileLogger

    monkeypatch.setenv("VERL_FILE_LOGGER_PATH", str(tmp_path / "m.jsonl"))
    for step in (1, 2):
        fl = FileLogger("p", "e")
        fl.log({"x": step}, step)
        fl.finish()
    assert (tmp_path / "m.jsonl").read_text().count("\n") == 2


def test_ray_process_group_backend_is_plain_gloo_on_cpu():
    """patch_cpu_process_group_ray: verl's Ray workers build the duplicate backend string by default."""
    import verl.utils.distributed as vdist
    from verl.workers import engine_workers

    src = inspect.getsource(vdist.initialize_global_process_group_ray)
    assert 'backend = backend or f"cpu:gloo,{get_device_name()}:{get_nccl_backend()}"' in src
    assert engine_workers.initialize_global_process_group_ray is vdist.initialize_global_process_group_ray
    if plugin.CPU:
        assert "cpu_process_group_ray" in plugin.APPLIED
        assert vdist.initialize_global_process_group_ray.__defaults__ == (None, "gloo")


def test_upstream_ray_dataloader_hard_codes_workers():
    """ray_dataloader_workers: if verl reads data.num_workers in its Ray trainer, delete the patch."""
    from verl.trainer import sft_trainer_ray

    src = inspect.getsource(sft_trainer_ray.SFTTrainer._build_dataloader)
    assert src.count("num_workers=8") == 2 and "data.num_workers" not in src


def test_ray_dataloader_workers_applies_and_restores():
    from verl.trainer import sft_trainer_ray

    original = sft_trainer_ray.StatefulDataLoader
    with patches.ray_dataloader_workers(0):
        loader = sft_trainer_ray.StatefulDataLoader(dataset=list(range(4)), batch_size=2, num_workers=8)
        assert loader.num_workers == 0
    assert sft_trainer_ray.StatefulDataLoader is original
