"""Real verl trainings on CPU through verl-ext (torchrun, 2 processes, the tiny Qwen3)."""
import pytest
import torch
from safetensors.torch import load_file

from tests.e2e.helpers import FP32, base_args, losses, train, train_until_checkpoint, write_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, tiny_model_dir):
    """6 steps, fp32, on a repeated 8-row batch; checkpoint at the end. The reference for the others."""
    d = tmp_path_factory.mktemp("plain")
    data = write_rows(d / "train.parquet", 16)
    log = d / "log.jsonl"
    train(base_args(tiny_model_dir, data, d / "ckpt", 6, FP32, "trainer.save_freq=6"), log)
    return {"dir": d, "data": data, "losses": losses(log)}


def test_plain_loss_decreases(plain_run):
    ls = plain_run["losses"]
    assert sorted(ls) == [1, 2, 3, 4, 5, 6]
    assert ls[6] < ls[1] - 0.5


def test_sp2_first_step_loss_equals_sp1(plain_run, tmp_path, tiny_model_dir):
    log = tmp_path / "log.jsonl"
    train(base_args(tiny_model_dir, plain_run["data"], tmp_path / "ckpt", 1, FP32,
                    "engine.ulysses_sequence_parallel_size=2", "trainer.save_freq=-1"), log)
    assert abs(losses(log)[1] - plain_run["losses"][1]) < 1e-4


def test_resume_after_kill_reproduces_losses(plain_run, tmp_path, tiny_model_dir):
    """Killed right after the checkpoint at step 4 (the end of epoch 2: verl #7401's case)."""
    ckpt = tmp_path / "ckpt"
    args = base_args(tiny_model_dir, plain_run["data"], ckpt, 6, FP32, "trainer.save_freq=2")
    train_until_checkpoint(args, tmp_path / "first.jsonl", ckpt, step=4)
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


def test_plan_matches_a_real_run_and_stages_are_logged(tmp_path, tiny_model_dir):
    """20 rows, global batch 8 over 2 dp ranks: verl drops the remainder per rank -> 2 steps/epoch."""
    from verl_ext.launch.preflight import check

    data = write_rows(tmp_path / "train.parquet", 15)
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = pq.read_table(data).to_pylist()
    pq.write_table(pa.Table.from_pylist(rows + rows[:5]), data)  # 20 rows
    ckpt = tmp_path / "ckpt"
    args = [a for a in base_args(tiny_model_dir, data, ckpt, 0) if not a.startswith("trainer.total_training_steps")]
    args += ["trainer.total_epochs=2", "trainer.save_freq=3"]
    plan = check(args).plan
    assert (plan.steps_per_epoch, plan.total_steps, plan.checkpoint_steps) == (2, 4, (3, 4))
    log = tmp_path / "log.jsonl"
    proc = train(args, log)
    assert sorted(losses(log)) == list(range(1, plan.total_steps + 1))
    written = sorted(int(p.name.split("_")[-1]) for p in ckpt.glob("global_step_*"))
    assert tuple(written) == plan.checkpoint_steps
    out = proc.stdout + proc.stderr
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


@pytest.mark.parametrize("cpu_bf16, weight, output", [("none", "torch.float32", "torch.float32"),
                                                      ("native", "torch.bfloat16", "torch.bfloat16")])
def test_forward_computes_in_the_dtype_chosen_for_the_cpu(tmp_path, tiny_model_dir, cpu_bf16, weight, output):
    """2 steps with the CPU's bf16 support forced each way: the plan, the stage log and the forward
    (FSDP2's mixed-precision cast, recorded by a hook on the first Linear) agree."""
    data = write_rows(tmp_path / "train.parquet", 8)
    log = tmp_path / "log.jsonl"
    proc = train(base_args(tiny_model_dir, data, tmp_path / "ckpt", 2, "trainer.save_freq=-1"), log,
                 env={"VERL_EXT_CPU_BF16": cpu_bf16})
    out = proc.stdout + proc.stderr
    compute = "fp32" if cpu_bf16 == "none" else "bf16"
    assert f"precision         {compute} (" in out and f"[verl-ext] compute dtype {compute}:" in out
    assert f"weight {weight}, input {output}, output {output}" in _forward_dtypes(out)
    assert sorted(losses(log)) == [1, 2]
