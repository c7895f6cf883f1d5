"""The tokenized cache under torchrun: one build for both ranks, same first-step loss as without it."""
import json
import re

import pytest

from tests.e2e.helpers import FP32, base_args, losses, train, write_rows

pytestmark = pytest.mark.slow


def test_two_ranks_one_build_same_loss_as_cache_off(tmp_path, tiny_model_dir):
    data = write_rows(tmp_path / "train.parquet", 16)
    cdir = tmp_path / "cache"
    # cache_workers=2: rank 0 encodes on a fork pool inside the torchrun worker
    common = (FP32, "trainer.save_freq=-1", f"data.cache_dir={cdir}", "data.cache_workers=2")
    log_on = tmp_path / "on.jsonl"
    proc = train(base_args(tiny_model_dir, data, tmp_path / "ck1", 2, *common), log_on)
    out = proc.stdout + proc.stderr
    assert len(re.findall(r"tokenized cache built in", out)) == 1, "exactly one rank builds"
    built = [p for p in cdir.iterdir() if p.is_dir()]
    assert len(built) == 1 and (built[0] / "meta.json").exists()
    assert json.loads((built[0] / "meta.json").read_text())["stats"]["workers"] == 2
    # both ranks mapped the same folder (each dataset logs its cache path)
    assert out.count(f"(cache {built[0]})") >= 2, out[-3000:]

    log_off = tmp_path / "off.jsonl"
    train(base_args(tiny_model_dir, data, tmp_path / "ck2", 2, *common, "data.cache=off"), log_off)
    on, off = losses(log_on), losses(log_off)
    assert sorted(on) == sorted(off) == [1, 2]
    assert abs(on[1] - off[1]) < 1e-6 and abs(on[2] - off[2]) < 1e-6, (on, off)

    # a second start maps the cache: no build
    log_again = tmp_path / "again.jsonl"
    again = train(base_args(tiny_model_dir, data, tmp_path / "ck3", 1, *common), log_again)
    assert "tokenized cache built in" not in again.stdout + again.stderr
    assert abs(losses(log_again)[1] - on[1]) < 1e-6
