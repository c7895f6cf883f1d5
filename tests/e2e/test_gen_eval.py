"""Generation eval during SFT logs val-gen/* at the test steps through verl's file logger (the tiny
model, in-process hf generation; the SGLang server backend is test_gen_eval_server.py)."""
import json

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.serial]


def test_val_gen_metrics_logged_at_test_step(planned_run):
    records = [json.loads(line) for line in planned_run["log"].read_text().splitlines()]
    val_rec = {r["step"]: r["data"] for r in records if "val/loss" in r["data"]}
    assert sorted(val_rec) == [2, 4], val_rec
    for step, metrics in val_rec.items():
        for key in ("val-gen/math/accuracy", "val-gen/math/format_rate", "val-gen/math/response_length"):
            assert key in metrics, (step, key)
        assert 0 < metrics["val-gen/math/response_length"] <= 8
        assert metrics["val/loss"] is not None  # 8 validation rows: one whole batch, a real loss
        samples = (planned_run["ckpt"] / "gen_eval" / f"step_{step}.jsonl").read_text().splitlines()
        assert len(samples) == 5  # every problem generated exactly once across the 2 ranks
        assert len({json.loads(s)["id"] for s in samples}) == 5
