"""Trainings shared by several e2e tests (session-wide: each runs once, tests read what it left).
One training per configuration, several focused tests per training: the e2e chain is the suite's
critical path (it runs one training at a time, see tests/conftest.py)."""
import pytest

from tests.e2e.helpers import FP32, base_args, losses, train, write_rows


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory, tiny_model_dir):
    """The reference training: 16 rows, global batch 8 (2 steps an epoch), fp32, verl's constant learning
    rate, 6 steps, checkpoints at 2, 4 and 6, tokenized cache off. A run on the same rows with the same
    settings must reproduce its losses step for step whatever its length (sp, resume, cache, Ray)."""
    d = tmp_path_factory.mktemp("plain")
    data = write_rows(d / "train.parquet", 16)
    log = d / "log.jsonl"
    train(base_args(tiny_model_dir, data, d / "ckpt", 6, FP32, "trainer.save_freq=2", "data.cache=off"), log)
    return {"dir": d, "data": data, "losses": losses(log)}


@pytest.fixture(scope="session")
def cached_run(tmp_path_factory, plain_run, tiny_model_dir):
    """plain_run's rows and settings with the tokenized cache on, in its own folder (rank 0 encodes on a
    fork pool of 2 inside the torchrun worker): 2 steps. Later runs with ``data.cache_dir`` = its folder map it."""
    d = tmp_path_factory.mktemp("cached")
    log = d / "log.jsonl"
    proc = train(base_args(tiny_model_dir, plain_run["data"], d / "ckpt", 2, FP32, "trainer.save_freq=-1",
                           f"data.cache_dir={d / 'cache'}", "data.cache_workers=2"), log)
    return {"cache_dir": d / "cache", "out": proc.stdout + proc.stderr, "losses": losses(log)}


@pytest.fixture(scope="session")
def planned_run(tmp_path_factory, tiny_model_dir):
    """20 rows over 2 epochs (4 steps, checkpoints at 3 and 4) with 8 validation rows every 2 steps and
    generation eval on: what preflight planned, what ran, and what generation eval logged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from verl_ext.launch.preflight import check

    d = tmp_path_factory.mktemp("planned")
    data = write_rows(d / "train.parquet", 15)
    rows = pq.read_table(data).to_pylist()
    pq.write_table(pa.Table.from_pylist(rows + rows[:5]), data)  # 20 rows
    val = write_rows(d / "val.parquet", 8)
    ckpt = d / "ckpt"
    args = [a for a in base_args(tiny_model_dir, data, ckpt, 0) if not a.startswith("trainer.total_training_steps")]
    args += ["trainer.total_epochs=2", "trainer.save_freq=3", f"data.val_files={val}", "trainer.test_freq=2",
             "gen_eval.enable=true", "gen_eval.num_samples=5", "gen_eval.max_new_tokens=8", "gen_eval.batch_size=2"]
    plan = check(args).plan
    log = d / "log.jsonl"
    proc = train(args, log)
    return {"plan": plan, "ckpt": ckpt, "log": log, "out": proc.stdout + proc.stderr}
