"""Generation eval during SFT logs val-gen/* at the test step through verl's file logger."""
import json

import pytest

from tests.e2e.helpers import base_args, train, write_rows

pytestmark = pytest.mark.slow


def test_val_gen_metrics_logged_at_test_step(tmp_path, tiny_model_dir):
    data = write_rows(tmp_path / "train.parquet", 16)
    val = write_rows(tmp_path / "val.parquet", 8)
    log = tmp_path / "log.jsonl"
    train(base_args(tiny_model_dir, data, tmp_path / "ckpt", 2, f"data.val_files={val}", "trainer.test_freq=2",
                    "gen_eval.enable=true", "gen_eval.num_samples=5", "gen_eval.max_new_tokens=8",
                    "gen_eval.batch_size=2"), log)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    val_rec = [r for r in records if "val/loss" in r["data"]]
    assert val_rec and val_rec[0]["step"] == 2
    metrics = val_rec[0]["data"]
    for key in ("val-gen/math/accuracy", "val-gen/math/format_rate", "val-gen/math/response_length"):
        assert key in metrics
    assert 0 < metrics["val-gen/math/response_length"] <= 8
    samples = (tmp_path / "ckpt" / "gen_eval" / "step_2.jsonl").read_text().splitlines()
    assert len(samples) == 5  # every problem generated exactly once across the 2 ranks
    assert len({json.loads(s)["id"] for s in samples}) == 5
