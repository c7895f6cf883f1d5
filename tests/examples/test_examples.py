"""The example scripts run as users run them: training ones pass preflight (``DRY_RUN=1``) on model
stubs (the real ``config.json`` + the offline Qwen3 tokenizer) and tiny data in our schema; eval ones
do a tiny real run; the Ray one submits its dry run to a local cluster.

On this CPU machine preflight turns GPU-only options (fused kernels, flash-attention) into notes.
``checkpoint.save_contents=[extra]`` keeps the disk check from asking for a real 32B checkpoint's
hundreds of GiB here (that check is preflight's, tested there).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.verl_ext.test_submit import ray_cluster  # noqa: F401  (fixture: a Ray head on 127.0.0.1)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
STUBS = EXAMPLES / "stubs"
SCRIPTS = sorted(EXAMPLES.glob("*/*.sh"))
NO_BIG_CHECKPOINTS = "checkpoint.save_contents=[extra]"


def run_script(script: str, cwd: Path, *args: str, timeout: int = 180, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    return subprocess.run(["bash", str(EXAMPLES / script), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def tokenizer_override() -> str:
    from verl_ext.assets import qwen3_tokenizer_dir

    return f"model.tokenizer_path={qwen3_tokenizer_dir()}"


def plan_value(out: str, name: str) -> str:
    for line in out.splitlines():
        if line.strip().startswith(name):
            return line.strip()[len(name):].strip()
    raise AssertionError(f"no {name!r} line in the plan:\n{out[-3000:]}")


def math_rows(n: int) -> list[dict]:
    """hendrycks_math converter columns (problem/solution/answer/level/subject)."""
    return [{"problem": f"What is ${i} + {i + 1}$?", "solution": f"Adding, ${i} + {i + 1} = {2 * i + 1}$, so the "
             f"answer is $\\boxed{{{2 * i + 1}}}$.", "answer": str(2 * i + 1), "level": 1 + i % 5,
             "subject": "Algebra"} for i in range(n)]


def fast_math_rows(n: int) -> list[dict]:
    """fast_math_r1 converter ``messages`` (trace inline, four newlines after </think>)."""
    return [{"messages": [{"role": "user", "content": f"Find ${i}^2$."},
                          {"role": "assistant", "content": f"<think>\n{i} times {i} is {i * i}. " + "Check: ok. " * (i % 7)
                           + f"\n</think>\n\n\n\nThe answer is $\\boxed{{{i * i}}}$."}],
             "answer": str(i * i)} for i in range(n)]


def textcraft_rows(n: int) -> list[dict]:
    """textcraft_traj converter rows: the opening ack is context (loss False), observations are user turns."""
    rows = []
    for i in range(n):
        rows.append({"messages": [
            {"role": "user", "content": "You are given a few useful crafting recipes to craft items in Minecraft. "
             "Crafting commands:\ncraft 4 oak planks using 1 oak logs\nGoal: craft oak planks.", "loss": None},
            {"role": "assistant", "content": "OK. I'll follow your instructions.", "loss": False},
            {"role": "user", "content": "Begin.", "loss": None},
            {"role": "assistant", "content": f"Thought: I need oak logs first.\nAction: get {1 + i % 3} oak logs", "loss": None},
            {"role": "user", "content": f"Observation: Got {1 + i % 3} oak logs", "loss": None},
            {"role": "assistant", "content": "Action: craft 4 oak planks using 1 oak logs", "loss": True},
        ], "item_id": f"textcraft_{i}", "data_source": "textcraft"})
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# ---------------------------------------------------------------- fast


@pytest.mark.parametrize("script", SCRIPTS + [EXAMPLES / "common.sh"], ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_scripts_parse(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_every_script_has_a_header_and_passes_user_args_last():
    assert len(SCRIPTS) == 8
    for script in SCRIPTS:
        text = script.read_text()
        assert text.startswith("#!/usr/bin/env bash\n#"), script
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        assert last.rstrip().endswith('"$@"'), f"{script}: the last command must end with \"$@\""


def test_drop_overridden_lets_the_caller_replace_any_default():
    snippet = (f'source {EXAMPLES / "common.sh"}; ARGS=(a.b=1 +c=2 ++d=3 "e=x y" f=4); '
               'drop_overridden a.b=9 c=8 +d=7 --dry-run "e=1"; printf "%s\\n" "${ARGS[@]}"')
    out = subprocess.run(["bash", "-c", snippet], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["f=4"]


def test_stub_configs_are_the_real_sizes():
    """Parameter counts from the stub configs: Qwen3-32B has 32.8B, Qwen3-1.7B 1.7B (model cards)."""
    from verl_ext.launch.plan import count_params

    big = json.loads((STUBS / "qwen3-32b" / "config.json").read_text())
    small = json.loads((STUBS / "qwen3-1.7b" / "config.json").read_text())
    assert (big["hidden_size"], big["num_hidden_layers"], big["num_attention_heads"], big["num_key_value_heads"],
            big["intermediate_size"], big["tie_word_embeddings"]) == (5120, 64, 64, 8, 25600, False)
    assert (small["hidden_size"], small["num_hidden_layers"], small["num_attention_heads"],
            small["num_key_value_heads"], small["intermediate_size"], small["tie_word_embeddings"]) == (2048, 28, 16, 8, 6144, True)
    assert 32.5e9 < count_params(str(STUBS / "qwen3-32b")) < 33.0e9
    assert 1.6e9 < count_params(str(STUBS / "qwen3-1.7b")) < 1.8e9


# ---------------------------------------------------------------- training examples: preflight (slow)


@pytest.mark.slow
def test_math_sft_dry_run(tmp_path):
    write(tmp_path / "train.parquet", math_rows(128))
    proc = run_script("math/qwen3_32b_sft.sh", tmp_path, tokenizer_override(), NO_BIG_CHECKPOINTS,
                      "data.max_length=2048", DRY_RUN="1", MODEL_PATH=str(STUBS / "qwen3-32b"),
                      TRAIN_FILES="train.parquet", NPROC="8")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "preflight: ok" in proc.stdout
    assert plan_value(proc.stdout, "processes").startswith("8 = dp 8 x sp 1")
    assert plan_value(proc.stdout, "rows") == "128 (train files)"
    assert plan_value(proc.stdout, "batch") == "64 global = 8 per dp rank"
    assert plan_value(proc.stdout, "total steps").startswith("6 ")  # 128 rows / 64 = 2 steps x 3 epochs
    launch = proc.stdout[proc.stdout.index("launch: "):]  # spans lines: the prompt template has a newline
    assert "data.max_length=2048" in launch and "data.max_length=4096" not in launch  # the caller's value won
    assert "--nproc_per_node=8" in launch


@pytest.mark.slow
def test_fast_math_sft_dry_run(tmp_path):
    write(tmp_path / "train.parquet", fast_math_rows(64))
    proc = run_script("math/qwen3_32b_sft_fast_math.sh", tmp_path, tokenizer_override(), NO_BIG_CHECKPOINTS,
                      DRY_RUN="1", MODEL_PATH=str(STUBS / "qwen3-32b"), TRAIN_FILES="train.parquet", NPROC="8")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "preflight: ok" in proc.stdout
    assert "model.use_fused_kernels=True needs Triton" in proc.stdout  # coerced on CPU, said so
    assert plan_value(proc.stdout, "grad accumulation").startswith("dynamic")
    launch = proc.stdout[proc.stdout.index("launch: "):]
    for key in ("model.lora_rank=64", "model.lora_alpha=128", "data.max_length=24000", "model.use_remove_padding=True",
                "model.use_fused_kernels=True", "engine.forward_prefetch=True", "data.use_dynamic_bsz=True"):
        assert key in launch, key


@pytest.mark.slow
def test_textcraft_sft_dry_run_and_a_bad_process_count(tmp_path):
    write(tmp_path / "train.parquet", textcraft_rows(32))
    env = dict(DRY_RUN="1", MODEL_PATH=str(STUBS / "qwen3-1.7b"), TRAIN_FILES="train.parquet")
    proc = run_script("textcraft/run_textcraft_qwen3_1.7b_sft.sh", tmp_path, tokenizer_override(), NO_BIG_CHECKPOINTS,
                      NPROC="2", **env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "preflight: ok" in proc.stdout
    assert plan_value(proc.stdout, "processes").startswith("2 = dp 1 x sp 2")
    assert plan_value(proc.stdout, "rows") == "32 (train files)"

    bad = run_script("textcraft/run_textcraft_qwen3_1.7b_sft.sh", tmp_path, tokenizer_override(), NO_BIG_CHECKPOINTS,
                     NPROC="3", **env)  # sp 2 cannot split 3 processes: the script must fail, not launch
    assert bad.returncode != 0
    assert "does not divide the 3 processes" in bad.stdout
    assert "launch: " not in bad.stdout


# ---------------------------------------------------------------- eval examples: tiny real runs (slow)


@pytest.mark.slow
def test_textcraft_eval_with_the_expert(tmp_path):
    proc = run_script("textcraft/run_textcraft_eval.sh", tmp_path, "progress=false", BACKEND="expert", EPISODES="2",
                      OUT_DIR=str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["success_rate"] == 1.0
    assert len((tmp_path / "out" / "episodes.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_math_eval_tiny_hf_run_uses_the_training_prompt(tmp_path, tiny_model_dir):
    from verl_ext_eval.math.prompts import DEFAULT_TEMPLATE, render_prompt

    proc = run_script("math/run_math_eval.sh", tmp_path, "grading.workers=1", "concurrency=2", "-q", BACKEND="hf",
                      MODEL_PATH=str(tiny_model_dir), LIMIT="2", MAX_NEW_TOKENS="4", OUT_DIR=str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len((tmp_path / "out" / "samples.jsonl").read_text().splitlines()) == 2
    used = json.loads((tmp_path / "out" / "run_config.json").read_text())["prompt"]
    problem = "What is $1+1$?"
    assert render_prompt(used["template"], problem) == render_prompt(DEFAULT_TEMPLATE, problem)
    assert "\n" in used["template"] and "\\boxed{}" in render_prompt(used["template"], problem)
    assert used["enable_thinking"] is False


# ---------------------------------------------------------------- Ray example (slow)


@pytest.mark.slow
@pytest.mark.serial
def test_ray_submit_example_dry_run(ray_cluster, tmp_path, tiny_model_dir):  # noqa: F811
    address = ray_cluster[0]
    wd = tmp_path / "wd"
    wd.mkdir()
    write(wd / "train.parquet", textcraft_rows(16))
    proc = run_script("ray/submit_sft.sh", wd, "data.train_batch_size=8", "data.max_length=512",
                      "trainer.default_local_dir=ckpt", DRY_RUN="1", RAY_ADDRESS=address, WORKING_DIR=str(wd),
                      MODEL_PATH=str(tiny_model_dir), TRAIN_FILES="train.parquet", NPROC="2")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "preflight: ok" in proc.stdout  # printed by the job on the cluster, streamed back
    assert plan_value(proc.stdout, "rows") == "16 (train files)"
    assert "SUCCEEDED" in proc.stderr
