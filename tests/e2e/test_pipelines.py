"""Whole paths: raw data -> converter -> verl-ext SFT; expert trajectories -> SFT -> evaluation."""
import json
import math
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from tests.e2e.helpers import base_args, losses, train
from verl_ext.launch.preflight import check

pytestmark = [pytest.mark.slow, pytest.mark.serial]


def _ok(cmd):
    proc = subprocess.run([sys.executable, *cmd], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def test_raw_fast_math_jsonl_to_sft(tmp_path, tiny_model_dir):
    raw = tmp_path / "fast_math_r1.jsonl"
    rows = []
    for i in range(24):
        trace = f"< THINK >Add {i} and {i}.\n</Think>  The sum is \\boxed{{{2 * i}}}."
        rows.append({"problem": f"What is {i}+{i}?", "generation": trace, "answer": str(2 * i)})
    rows.append({"problem": "broken", "generation": "", "answer": "1"})  # an empty trace: rejected, not lost
    raw.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "converted"
    _ok(["-m", "data_converters.fast_math_r1", str(raw), "--out", str(out), "--split-validation", "--val-ratio", "0.34",
         "--max-tokens", "2000", "--no-progress"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows_in"] == 25 and summary["kept"] == 24
    assert (out / "rejects.jsonl").read_text().strip()
    train_file = out / "train.parquet"
    first = pq.read_table(train_file).to_pylist()[0]
    assert "<think>" in first["response"] and "</think>\n\n\n\nThe sum is" in first["response"]
    val = f"data.val_files={out / 'validation.parquet'}"
    log = tmp_path / "log.jsonl"
    train(base_args(tiny_model_dir, train_file, tmp_path / "ckpt", 2, "data.dataset=prompt_response",
                    "data.prompt_key=prompt", "data.response_key=response", val, "trainer.test_freq=2"), log)
    assert sorted(losses(log)) == [1, 2]
    assert _val_losses(log) and all(v is not None and math.isfinite(v) for v in _val_losses(log).values()), \
        _val_losses(log)  # 8 validation rows = one whole batch: a real val/loss, not NaN
    # the same files as chat rows (their messages column): preflight reads and encodes every row here
    report = check(base_args(tiny_model_dir, train_file, tmp_path / "ck_chat", 2, "data.dataset=chat", val,
                             "trainer.test_freq=2"))
    assert report.ok and report.plan.steps_per_epoch >= 1, report.render()


def _val_losses(log) -> dict:
    return {r["step"]: r["data"]["val/loss"] for r in map(json.loads, log.read_text().splitlines())
            if "val/loss" in r["data"]}


def test_textcraft_expert_data_sft_then_eval(tmp_path, tiny_model_dir):
    data = tmp_path / "tc"
    _ok(["-m", "verl_ext_eval.textcraft.data", "--out", str(data), "--format", "agentgym", "--test-ratio", "0.2", "--seed", "0"])
    train_rows = pq.read_table(data / "train.parquet")
    test_goals = set(pq.read_table(data / "test.parquet").column("goal").to_pylist())
    assert not test_goals & set(train_rows.column("goal").to_pylist())
    small = tmp_path / "train_small.parquet"
    pq.write_table(train_rows.slice(0, 16), small)
    log = tmp_path / "log.jsonl"
    ckpt = tmp_path / "ckpt"
    train(base_args(tiny_model_dir, small, ckpt, 2, "data.max_length=4096", "trainer.save_freq=2"), log)
    from verl_ext.launch.export import export

    model = export(ckpt)
    goals = sorted(test_goals)[:3]
    out = tmp_path / "eval"
    _ok(["-m", "verl_ext_eval.textcraft", "backend.name=hf", f"backend.model_path={model}", f"goals=[{','.join(goals)}]",
         "episodes=3", "max_rounds=2", "sampling.max_new_tokens=12", "concurrency=3", f"out_dir={out}", "progress=false"])
    records = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sorted(r["goal"] for r in records) == goals
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 3 and (out / "report.md").exists()
