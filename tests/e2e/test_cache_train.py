"""The tokenized cache under torchrun (the session's ``cached_run``): one build for both ranks, the same
losses as the run without it (``plain_run``: same rows and settings, cache off)."""
import json
import re

import pytest


pytestmark = [pytest.mark.slow, pytest.mark.serial]


def test_two_ranks_one_build_same_loss_as_cache_off(plain_run, cached_run):
    out, cdir = cached_run["out"], cached_run["cache_dir"]
    assert len(re.findall(r"tokenized cache built in", out)) == 1, "exactly one rank builds"
    built = [p for p in cdir.iterdir() if p.is_dir()]
    assert len(built) == 1 and (built[0] / "meta.json").exists()
    assert json.loads((built[0] / "meta.json").read_text())["stats"]["workers"] == 2
    # both ranks mapped the same folder (each dataset logs its cache path)
    assert out.count(f"(cache {built[0]})") >= 2, out[-3000:]
    on, off = cached_run["losses"], plain_run["losses"]
    assert sorted(on) == [1, 2]
    assert abs(on[1] - off[1]) < 1e-6 and abs(on[2] - off[2]) < 1e-6, (on, off)
    # a second start maps it without building: test_train_cpu.py::test_sp2_first_step_loss_equals_sp1
