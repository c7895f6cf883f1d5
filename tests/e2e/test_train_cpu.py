"""Real verl trainings on CPU through verl-ext (torchrun, 2 processes, the tiny Qwen3)."""
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.e2e.helpers import FP32, base_args, losses, train, write_rows

pytestmark = [pytest.mark.slow, pytest.mark.serial]


def test_plain_loss_decreases(plain_run):
    ls = plain_run["losses"]
    assert sorted(ls) == [1, 2, 3, 4, 5, 6]
    assert ls[6] < ls[1] - 0.5


def test_sp2_first_step_loss_equals_sp1(plain_run, cached_run, tmp_path, tiny_model_dir):
    """Ulysses sp=2 over both processes, on the tokenized cache cached_run built (mapped, not rebuilt)."""
    log = tmp_path / "log.jsonl"
    proc = train(base_args(tiny_model_dir, plain_run["data"], tmp_path / "ckpt", 1, FP32,
                           "engine.ulysses_sequence_parallel_size=2", "trainer.save_freq=-1",
                           f"data.cache_dir={cached_run['cache_dir']}", "data.cache_workers=2"), log)
    assert "tokenized cache built in" not in proc.stdout + proc.stderr, "a second start maps the cache"
    assert abs(losses(log)[1] - plain_run["losses"][1]) < 1e-4


def test_resume_after_kill_reproduces_losses(plain_run, tmp_path, tiny_model_dir):
    """The state a run killed right after its step-4 checkpoint leaves (plain_run's checkpoint of step 4,
    the end of epoch 2: verl #7401's case), resumed: steps 5 and 6 reproduce plain_run's losses."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(plain_run["dir"] / "ckpt" / "global_step_4", ckpt / "global_step_4")
    (ckpt / "latest_checkpointed_iteration.txt").write_text("4")
    args = base_args(tiny_model_dir, plain_run["data"], ckpt, 6, FP32, "trainer.save_freq=2", "data.cache=off")
    log = tmp_path / "resumed.jsonl"
    train(args + ["trainer.resume_mode=auto"], log)
    resumed = losses(log)
    assert sorted(resumed) == [5, 6]
    for step in (5, 6):
        assert abs(resumed[step] - plain_run["losses"][step]) < 1e-5, (step, resumed, plain_run["losses"])


def test_export_loads_and_differs_from_base(plain_run, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from verl_ext.launch.export import export

    out = export(plain_run["dir"] / "ckpt")
    model = AutoModelForCausalLM.from_pretrained(str(out))
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    w = model.state_dict()["model.layers.0.self_attn.q_proj.weight"]
    assert (w.float() - base["model.layers.0.self_attn.q_proj.weight"].float()).abs().max() > 1e-3


def test_lora_trains_and_merges_for_real(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from verl_ext.launch.export import export

    data = write_rows(tmp_path / "train.parquet", 8)
    log = tmp_path / "log.jsonl"
    train(base_args(tiny_model_dir, data, tmp_path / "ckpt", 3, "model.lora_rank=8", "model.lora_alpha=16",
                    "optim.lr=1e-2", "trainer.save_freq=3"), log)
    ls = losses(log)
    assert ls[3] < ls[1]
    out = export(tmp_path / "ckpt")
    merged = AutoModelForCausalLM.from_pretrained(str(out)).state_dict()
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    key = "model.layers.0.mlp.up_proj.weight"
    lora_delta = (merged[key].float() - base[key].float()).abs().max().item()
    emb_delta = (merged["model.embed_tokens.weight"].float() - base["model.embed_tokens.weight"].float()).abs().max().item()
    assert lora_delta > 10 * max(emb_delta, 1e-6), (lora_delta, emb_delta)  # not just dtype rounding
    assert torch.isfinite(merged[key]).all()


def test_plan_matches_a_real_run_and_stages_are_logged(planned_run):
    """20 rows, global batch 8 over 2 dp ranks: verl drops the remainder per rank -> 2 steps/epoch."""
    plan, ckpt, out = planned_run["plan"], planned_run["ckpt"], planned_run["out"]
    assert (plan.steps_per_epoch, plan.total_steps, plan.checkpoint_steps) == (2, 4, (3, 4))
    assert sorted(losses(planned_run["log"])) == list(range(1, plan.total_steps + 1))
    written = sorted(int(p.name.split("_")[-1]) for p in ckpt.glob("global_step_*"))
    assert tuple(written) == plan.checkpoint_steps
    for stage in ("imports", "process group", "tokenizer + model config", "dataset (read, validate, tokenize)",
                  "model load + FSDP wrap + optimizer", "dataloader", "first step"):
        assert f"[verl-ext] stage {stage} done in" in out, stage
    assert "preflight: ok" in out and "steps per epoch   2" in out
    # what the first forward computed in is what this machine's decision says (bf16 only with native bf16)
    from verl_ext.seam.precision import compute_dtype

    assert f"output {compute_dtype('cpu')}" in _forward_dtypes(out)


def _forward_dtypes(out: str) -> str:
    lines = [line for line in out.splitlines() if "[verl-ext] forward dtypes (first step" in line]
    assert len(lines) == 1, out[-3000:]  # said once, by rank 0
    return lines[0]


def test_forward_computes_in_the_dtype_forced_against_this_cpu(tmp_path, tiny_model_dir):
    """One step with this CPU's bf16 support forced the other way (the plan test above covers the kind
    detected here): the plan, the stage log and the forward (FSDP2's mixed-precision cast, recorded by a
    hook on the first Linear) agree. Two short rows: on a CPU without native bf16 this step runs bf16."""
    from verl_ext.seam.precision import cpu_bf16

    forced, compute, dtype = ("none", "fp32", "torch.float32") if cpu_bf16().native else ("native", "bf16", "torch.bfloat16")
    data = write_rows(tmp_path / "train.parquet", 2)
    log = tmp_path / "log.jsonl"
    proc = train(base_args(tiny_model_dir, data, tmp_path / "ckpt", 1, "data.train_batch_size=2", "data.max_length=32",
                           "trainer.save_freq=-1"), log, env={"VERL_EXT_CPU_BF16": forced})
    out = proc.stdout + proc.stderr
    assert f"precision         {compute} (" in out and f"[verl-ext] compute dtype {compute}:" in out
    assert f"weight {dtype}, input {dtype}, output {dtype}" in _forward_dtypes(out)
    assert sorted(losses(log)) == [1]


def test_time_budget_ends_the_run_early_at_a_checkpoint(tmp_path, tiny_model_dir):
    """trainer.time_budget_s=2 on 40 planned steps of ~1 s: both ranks stop at the same step, which
    verl treats as its last (checkpoint written, the loop ends cleanly)."""
    data = write_rows(tmp_path / "train.parquet", 8)
    ckpt = tmp_path / "ckpt"
    log = tmp_path / "log.jsonl"
    proc = train(base_args(tiny_model_dir, data, ckpt, 40, "trainer.time_budget_s=2", "trainer.save_freq=-1"), log)
    ls = losses(log)
    last = max(ls)
    assert sorted(ls) == list(range(1, last + 1)) and last < 40, ls
    assert (ckpt / "latest_checkpointed_iteration.txt").read_text().strip() == str(last)
    out = proc.stdout + proc.stderr
    assert "trainer.time_budget_s=2: training ends at the last step that fits" in out  # preflight's note
    assert f"[verl-ext] time budget 2s (trainer.time_budget_s): " in out and f"step {last} is the last (of 40 planned)" in out
