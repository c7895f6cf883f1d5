"""gen_eval.backend=server: SmolLM2 SFT on 2 CPU ranks, evaluated at each test step by the real SGLang
CPU server that verl-ext launches, reloads with the new weights, and stops."""
import json
import os

import psutil
import pytest

from tests.e2e.helpers import base_args, train, write_rows
from verl_ext_eval.backends.managed_server import default_sglang_python

pytestmark = [
    pytest.mark.slow,
    pytest.mark.serial(last=True),
    pytest.mark.sglang,
    # CI builds the venv in .ci/run: there a missing one fails instead of skipping
    pytest.mark.skipif(not default_sglang_python().exists() and not os.environ.get("CI"),
                       reason=f"no SGLang CPU venv at {default_sglang_python()}: run bash scripts/sglang_cpu_venv.sh"),
]


def _sglang_servers() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"]) if "sglang.launch_server" in " ".join(p.info["cmdline"] or [])]


def test_server_gen_eval_logs_math_and_textcraft_and_follows_the_weights(tmp_path):
    from verl_ext.assets import convert_smollm2

    model = convert_smollm2()
    before = set(_sglang_servers())
    data = write_rows(tmp_path / "train.parquet", 16)
    val = write_rows(tmp_path / "val.parquet", 8)  # one whole validation batch: val/loss is real
    ckpt = tmp_path / "ckpt"
    log = tmp_path / "log.jsonl"
    train(base_args(model, data, ckpt, 4, f"data.val_files={val}", "trainer.test_freq=2", "trainer.save_freq=-1",
                    "optim.lr=2e-4", "data.max_length=256", "gen_eval.enable=true", "gen_eval.backend=server",
                    "gen_eval.tasks=[math,textcraft]", "gen_eval.num_samples=4", "gen_eval.max_new_tokens=24",
                    "gen_eval.textcraft_episodes=2", "gen_eval.textcraft_max_rounds=2",
                    "gen_eval.textcraft_max_new_tokens=24", f"data.cache_dir={tmp_path / 'cache'}"),
          log, timeout=900)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    val_steps = {r["step"]: r["data"] for r in records if "val/loss" in r["data"]}
    assert sorted(val_steps) == [2, 4], val_steps
    for step, m in val_steps.items():
        for key in ("val-gen/math/accuracy", "val-gen/math/format_rate", "val-gen/math/accuracy_ci95_high",
                    "val-gen/textcraft/success", "val-gen/textcraft/mean_steps", "val-gen/textcraft/invalid_turn_rate"):
            assert key in m, (step, key, m)
        assert m["val-gen/math/n"] == 4 and m["val-gen/textcraft/episodes"] == 2
    responses = {}
    for step in (2, 4):
        lines = (ckpt / "gen_eval" / f"step_{step}" / "math" / "samples.jsonl").read_text().splitlines()
        responses[step] = [json.loads(s)["response"] for s in sorted(lines)]
        assert len(responses[step]) == 4
    assert responses[2] != responses[4], "the server must answer with the reloaded weights"
    assert (ckpt / "gen_eval" / "weights" / "config.json").exists()
    assert not set(_sglang_servers()) - before, "the managed server must be gone with the run"
