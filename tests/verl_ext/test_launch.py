"""The launch command for each launcher, built from overrides or Slurm's environment, and the
launch errors preflight reports."""
import pytest

from tests.e2e.helpers import with_overrides
from verl_ext.launch import launcher as launch
from verl_ext.launch.launcher import LaunchError, command_for, first_slurm_host, launch_problems, nproc_of
from verl_ext.launch.preflight import compose

SLURM = {"SLURM_NNODES": "2", "SLURM_NODEID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242"}


@pytest.fixture(autouse=True)
def no_scontrol(monkeypatch):
    monkeypatch.setattr(launch.shutil, "which", lambda name: None)


def tail(cmd):
    """The command after the python executable."""
    return cmd[1:]


def test_single_node_is_standalone():
    args = ["trainer.n_gpus_per_node=8"]
    assert tail(command_for(compose(args), args, {})) == [
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8", "-m", "verl_ext.training.trainer", *args]


def test_two_nodes_from_overrides():
    args = ["trainer.nnodes=2", "trainer.n_gpus_per_node=8", "trainer.node_rank=1", "trainer.master_addr=10.0.0.5",
            "trainer.master_port=29400", "trainer.rdzv_id=sft-7"]
    assert tail(command_for(compose(args), args, {})) == [
        "-m", "torch.distributed.run", "--nnodes=2", "--node-rank=1", "--rdzv-backend=c10d",
        "--rdzv-endpoint=10.0.0.5:29400", "--rdzv-id=sft-7", "--nproc_per_node=8", "-m", "verl_ext.training.trainer", *args]


def test_two_nodes_from_slurm():
    args = ["trainer.nnodes=2", "trainer.n_gpus_per_node=4"]
    assert tail(command_for(compose(args), args, SLURM)) == [
        "-m", "torch.distributed.run", "--nnodes=2", "--node-rank=1", "--rdzv-backend=c10d",
        "--rdzv-endpoint=gpu07:29500", "--rdzv-id=4242", "--nproc_per_node=4", "-m", "verl_ext.training.trainer", *args]


def test_overrides_beat_slurm():
    args = ["trainer.nnodes=2", "trainer.node_rank=0", "trainer.master_addr=head"]
    assert "--rdzv-endpoint=head:29500" in command_for(compose(args), args, SLURM)
    assert "--node-rank=0" in command_for(compose(args), args, SLURM)


def test_scontrol_expands_the_nodelist(monkeypatch, tmp_path):
    fake = tmp_path / "scontrol"
    fake.write_text("#!/bin/sh\n[ \"$1 $2 $3\" = 'show hostnames n[1-2]' ] && printf 'alpha\\nbeta\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(launch.shutil, "which", lambda name: str(fake))
    args = ["trainer.nnodes=2"]
    cmd = command_for(compose(args), args, {**SLURM, "SLURM_JOB_NODELIST": "n[1-2]"})
    assert "--rdzv-endpoint=alpha:29500" in cmd


@pytest.mark.parametrize("nodelist, first", [
    ("node01", "node01"), ("a,b,c", "a"), ("node[01-04,07],gpu5", "node01"), ("gpu[3,5]-ib,x", "gpu3-ib"),
    ("rack1-[10-11]", "rack1-10"),
])
def test_first_slurm_host_without_scontrol(nodelist, first):
    assert first_slurm_host(nodelist) == first


def test_ray_launcher_runs_the_ray_driver():
    args = ["trainer.launcher=ray", "trainer.nnodes=2"]
    assert tail(command_for(compose(args), args, {})) == ["-m", "verl_ext.training.trainer_ray", *args]


@pytest.mark.parametrize("args, environ, expect", [
    (["trainer.nnodes=2", "trainer.launcher=standalone"], {}, "torchrun --standalone runs on one node only"),
    (["trainer.nnodes=2", "trainer.master_addr=h"], {}, "pass trainer.node_rank=<0..1>"),
    (["trainer.nnodes=2", "trainer.node_rank=0"], {}, "pass trainer.master_addr=<node 0's"),
    (["trainer.nnodes=2", "trainer.node_rank=2", "trainer.master_addr=h"], {}, "trainer.node_rank=2 is outside 0..1"),
    (["trainer.nnodes=4"], SLURM, "trainer.nnodes=4 but this Slurm job has SLURM_NNODES=2"),
    (["trainer.launcher=mpi"], {}, "trainer.launcher='mpi'; choose one of auto, standalone, torchrun, ray"),
    (["trainer.nnodes=0"], {}, "trainer.nnodes=0; it must be at least 1"),
    (["trainer.launcher=ray"], {}, "trainer.launcher=ray needs a cluster: set ray.address"),
    (["trainer.launcher=ray"], {"RAY_ADDRESS": "http://head:8265"}, "is the dashboard (job submission) address"),
    (["trainer.launcher=ray", "ray.address=local", "gen_eval.enable=true"], {}, "gen_eval.enable=true is not supported"),
])
def test_launch_problems(args, environ, expect):
    problems = launch_problems(compose(args), environ)
    assert len(problems) == 1 and expect in problems[0], problems


def test_rendezvous_error_is_a_launch_error():
    args = ["trainer.nnodes=2"]
    with pytest.raises(LaunchError, match="trainer.node_rank"):
        command_for(compose(args), args, {})


def test_nproc_counts_every_node():
    assert nproc_of(["trainer.n_gpus_per_node=8", "trainer.nnodes=2"]) == 16
    assert nproc_of(["trainer.n_gpus_per_node=2"]) == 2


def test_two_nodes_with_standalone_fails_preflight(tiny_model_dir, tmp_path):
    from tests.e2e.helpers import write_rows
    from verl_ext.launch.preflight import check

    data = write_rows(tmp_path / "train.parquet", 16)
    base = [f"model.path={tiny_model_dir}", f"data.train_files={data}", "data.train_batch_size=8",
            "trainer.n_gpus_per_node=2", f"trainer.default_local_dir={tmp_path / 'ck'}"]
    assert check(base).ok
    report = check(with_overrides(base, ["trainer.nnodes=2", "trainer.launcher=standalone"]))
    assert [e for e in report.errors if "trainer.launcher=standalone" in e], report.errors


def test_dry_run_prints_the_ray_command(tiny_model_dir, tmp_path):
    from tests.e2e.helpers import write_rows

    data = write_rows(tmp_path / "train.parquet", 16)
    lines = []
    args = [f"model.path={tiny_model_dir}", f"data.train_files={data}", "data.train_batch_size=8",
            f"trainer.default_local_dir={tmp_path / 'ck'}", "trainer.launcher=ray", "ray.address=local"]
    assert launch.train(args, dry_run=True, echo=lines.append) == 0
    assert lines[0].startswith("preflight: ok")
    assert lines[-1].startswith("launch: ") and " -m verl_ext.training.trainer_ray model.path=" in lines[-1]


def _example(script, tmp_path, model, *args, **env):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.e2e.helpers import write_rows

    data = write_rows(tmp_path / "train.parquet", 16)
    repo = Path(__file__).resolve().parents[2]
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                "HF_HUB_OFFLINE": "1", "DRY_RUN": "1", "MODEL_PATH": str(model), "TRAIN_FILES": str(data),
                "CKPT_DIR": str(tmp_path / "ck"), **env}
    return subprocess.run(["bash", str(repo / "examples/multinode" / script), "data.train_batch_size=16",
                           "data.max_length=256", *args], env=full_env, capture_output=True, text=True, timeout=180)


def test_two_node_example_dry_run(tmp_path, tiny_model_dir):
    proc = _example("two_node_torchrun_sft.sh", tmp_path, tiny_model_dir, NODE_RANK="1", MASTER_ADDR="node0")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "preflight: ok" in proc.stdout
    assert ("--nnodes=2 --node-rank=1 --rdzv-backend=c10d --rdzv-endpoint=node0:29500 --rdzv-id=verl-ext "
            "--nproc_per_node=8") in proc.stdout
    missing = _example("two_node_torchrun_sft.sh", tmp_path, tiny_model_dir, MASTER_ADDR="node0")
    assert missing.returncode == 2 and "pass trainer.node_rank=<0..1>" in missing.stdout


def test_ray_example_dry_run(tmp_path, tiny_model_dir):
    proc = _example("ray_sft.sh", tmp_path, tiny_model_dir, "ray.address=local")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "preflight: ok" in proc.stdout and " -m verl_ext.training.trainer_ray " in proc.stdout
