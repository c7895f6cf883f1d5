"""``verl-ext prepare``: the cache it builds is the one training maps; ``--ray`` builds the same on Ray."""
import json
import os
import socket
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from tests.verl_ext.test_cache import items, rows
from verl_ext.data.datasets import ChatSFTDataset
from verl_ext.data.masks import ChatEncoder


def _prepare(args, env=None, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "verl_ext.launch.prepare", "--json", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows(1200)), path, row_group_size=300)
    val = tmp_path / "val.jsonl"
    val.write_text("".join(json.dumps(r) + "\n" for r in rows(30, offset=5000)))
    return path, val


def test_prepare_builds_the_cache_training_maps(tmp_path, data, tiny_model_dir, qwen3_tokenizer, monkeypatch):
    train, val = data
    cdir = tmp_path / "c"
    args = [f"model.path={tiny_model_dir}", f"data.train_files={train}", f"data.val_files={val}",
            "data.max_length=512", f"data.cache_dir={cdir}", "data.train_batch_size=16"]
    out = _prepare(args)
    assert out["train"]["stats"]["samples"] == 1200 and out["val"]["stats"]["samples"] == 30
    assert out["train"]["stats"]["workers"] == 2  # all cores of this machine
    # what the trainer constructs (verl passes data_cfg) maps it without rendering
    calls = []
    monkeypatch.setattr(ChatEncoder, "render", lambda *a, **k: calls.append(1))
    ds = ChatSFTDataset(str(train), qwen3_tokenizer, OmegaConf.create({"max_length": 512, "cache_dir": str(cdir)}))
    assert ds.cache_path == out["train"]["cache"] and not calls
    # preflight reads the cache: exact sample count in the plan
    from verl_ext.launch.preflight import check

    report = check(args + ["trainer.n_gpus_per_node=2"], nproc=2)
    assert report.plan.rows == 1200 and report.plan.exact
    assert any("tokenized cache" in n and "1,200 samples" in n for n in report.notes), report.notes


def test_preflight_counts_per_turn_samples_exactly_from_the_cache(tmp_path, data, tiny_model_dir):
    train, _ = data
    cdir = tmp_path / "c"
    args = [f"model.path={tiny_model_dir}", f"data.train_files={train}", "data.max_length=512",
            f"data.cache_dir={cdir}", "data.multiturn_mode=per_turn", "trainer.test_freq=-1"]
    from verl_ext.launch.preflight import check

    before = check(args, nproc=1)
    assert not before.plan.exact and before.plan.rows == 1200  # rows, not yet samples
    out = _prepare(args)
    after = check(args, nproc=1)
    assert after.plan.exact and after.plan.rows == out["train"]["stats"]["samples"] == 2400  # two trained turns a row


def test_prepare_reports_a_bad_row(tmp_path, tiny_model_dir):
    bad = rows(10)
    bad[7]["messages"] = [{"role": "user", "content": "only a question"}]
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(bad), path)
    proc = subprocess.run([sys.executable, "-m", "verl_ext.launch.prepare", f"model.path={tiny_model_dir}",
                           f"data.train_files={path}", f"data.cache_dir={tmp_path / 'c'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f"{path}, row 7: conversation has no trained assistant turn" in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A local Ray head on 127.0.0.1, started here and stopped by PID (never by name)."""
    import psutil

    port = _free_port()
    temp_dir = f"/tmp/vx-ray-{os.getpid()}-{port}"
    # loopback only; no token auth (Ray turns it on when ~/.ray/auth_token exists, and then clients
    # started without the token cannot connect)
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    proc = subprocess.Popen([ray_bin, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
                             "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                            env=env, stdout=open(tmp_path / "ray.log", "w"), stderr=subprocess.STDOUT, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            if subprocess.run([ray_bin, "status", f"--address={address}"], env=env, capture_output=True).returncode == 0:
                break
            assert proc.poll() is None, (tmp_path / "ray.log").read_text()[-2000:]
            time.sleep(1)
        else:
            raise AssertionError("ray head did not come up: " + (tmp_path / "ray.log").read_text()[-2000:])
        yield address, env
    finally:  # also when the head never came up: nothing of it may outlive the test
        procs = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)
        subprocess.run(["rm", "-rf", temp_dir])


@pytest.mark.slow
@pytest.mark.serial
def test_prepare_on_ray_equals_local_build(tmp_path, data, tiny_model_dir, qwen3_tokenizer, ray_head):
    address, env = ray_head
    train, val = data
    args = [f"model.path={tiny_model_dir}", f"data.train_files={train}", f"data.val_files={val}",
            "data.max_length=512", f"data.cache_dir={tmp_path / 'ray'}"]
    out = _prepare(["--ray", "--address", address, *args], env=env, timeout=400)
    assert str(out["train"]["stats"]["workers"]).startswith("ray:")
    cfg = OmegaConf.create({"max_length": 512, "cache_dir": str(tmp_path / "ray")})
    from_ray = ChatSFTDataset(str(train), qwen3_tokenizer, cfg)
    assert from_ray.cache_path == out["train"]["cache"]  # same fingerprint: training maps it
    local = ChatSFTDataset(str(train), qwen3_tokenizer, OmegaConf.create({"max_length": 512, "cache": "off"}))
    assert items(from_ray) == items(local)
    assert [from_ray.store.ref(i) for i in (0, 299, 300, 1199)] == [local.store.ref(i) for i in (0, 299, 300, 1199)]
    assert from_ray.stats["tokens"] == local.stats["tokens"]
    val_ds = ChatSFTDataset(str(val), qwen3_tokenizer, cfg)
    assert val_ds.cache_path == out["val"]["cache"] and len(val_ds) == 30
