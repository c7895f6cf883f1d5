"""verl's Ray SFT trainer through ``trainer.launcher=ray`` on a local two-node Ray cluster (1 CPU per
node, so the two workers land on different nodes), checked against the 2-process torchrun run."""
import os
import subprocess
import sys

import pytest

from tests.e2e.helpers import FP32, base_args, kill_tree, losses, train, train_until_checkpoint, write_rows
from verl_ext.launch.preflight import check

pytestmark = [pytest.mark.slow, pytest.mark.serial]


@pytest.fixture(scope="module")
def cluster_address():
    """Two Ray nodes on 127.0.0.1, 1 CPU each, in a child process this test starts and stops by PID."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.e2e.ray_cluster", "2"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    saved = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # drivers started from here bind 127.0.0.1 too
    try:
        line = proc.stdout.readline()
        assert line.startswith("ADDRESS="), f"cluster did not start: {line!r}"
        yield line.strip().split("=", 1)[1]
    finally:
        proc.stdin.close()  # the helper shuts its cluster down
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            kill_tree(proc.pid)
        if saved is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = saved


def ray_args(model, data, ckpt, address, *extra):
    return base_args(model, data, ckpt, 4, FP32, "trainer.launcher=ray", "trainer.nnodes=2",
                     "trainer.n_gpus_per_node=1", f"ray.address={address}", *extra)


def test_preflight_names_missing_resources(cluster_address, tmp_path, tiny_model_dir):
    data = write_rows(tmp_path / "train.parquet", 16)
    three = check(ray_args(tiny_model_dir, data, tmp_path / "ck", cluster_address, "trainer.nnodes=3",
                           "data.train_batch_size=6"))
    assert any("short of 1 CPU" in e for e in three.errors), three.errors
    packed = check(ray_args(tiny_model_dir, data, tmp_path / "ck", cluster_address, "trainer.nnodes=1",
                            "trainer.n_gpus_per_node=2"))
    assert any("only 0 node(s) fit 2 worker(s)" in e for e in packed.errors), packed.errors


def test_two_nodes_match_torchrun_and_resume_after_driver_kill(cluster_address, plain_run, tmp_path, tiny_model_dir):
    """The reference is the session's 2-process torchrun run on the same rows (``plain_run``)."""
    data, ref = plain_run["data"], plain_run["losses"]

    ckpt = tmp_path / "ckpt"
    args = ray_args(tiny_model_dir, data, ckpt, cluster_address, "trainer.save_freq=2")
    train_until_checkpoint(args, tmp_path / "first.jsonl", ckpt, step=2)  # SIGKILLs the driver
    first = losses(tmp_path / "first.jsonl")
    assert abs(first[1] - ref[1]) < 1e-5, (first, ref)

    proc = train(args, tmp_path / "resumed.jsonl")
    resumed = losses(tmp_path / "resumed.jsonl")
    assert sorted(resumed) == [3, 4], resumed
    for step in (3, 4):  # continues from the step-2 weights, optimizer and data position
        assert abs(resumed[step] - ref[step]) < 1e-5, (step, resumed, ref)
    out = proc.stdout + proc.stderr
    assert "-m verl_ext.training.trainer_ray" in out
    assert "[verl-ext] stage Ray workers: model load + FSDP wrap + optimizer done in" in out
