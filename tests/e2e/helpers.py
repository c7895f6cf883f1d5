"""Running real verl-ext trainings (torchrun, 2 CPU processes) from tests."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FP32 = "+engine.mixed_precision={param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen"]


def write_rows(path: Path, n: int = 8) -> Path:
    rows = [{"messages": [{"role": "user", "content": f"Say {i} in words."},
                          {"role": "assistant", "content": f"{WORDS[i]} is the word you want."}]} for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def base_args(model_dir, train_file, ckpt_dir, steps: int, *extra: str) -> list[str]:
    """Defaults for a tiny run; an extra with the same key replaces the default."""
    return with_overrides(_defaults(model_dir, train_file, ckpt_dir, steps), extra)


def with_overrides(defaults: list[str], extra) -> list[str]:
    """``defaults`` minus the keys ``extra`` sets, then ``extra`` (which may repeat keys on purpose)."""
    given = {e.lstrip("+").split("=", 1)[0] for e in extra}
    return [a for a in defaults if a.split("=", 1)[0] not in given] + list(extra)


def _defaults(model_dir, train_file, ckpt_dir, steps: int) -> list[str]:
    return [
        f"model.path={model_dir}", f"data.train_files={train_file}", "data.train_batch_size=8",
        "data.max_length=128", "data.num_workers=0", f"trainer.total_training_steps={steps}",
        "trainer.logger=[console,file]", f"trainer.default_local_dir={ckpt_dir}", "trainer.n_gpus_per_node=2",
        "trainer.project_name=test", "trainer.experiment_name=run",
    ]


def _env(log_file: Path) -> dict:
    return {"VERL_FILE_LOGGER_PATH": str(log_file), "PYTHONUNBUFFERED": "1"}


def _launch(args: list[str], log_file: Path, env: dict | None) -> tuple[list[str], dict, str]:
    """(command, environment, what the launcher printed). Without ``env`` the preflight runs here, in the
    test process that already imported verl (``verl_ext.launch.launcher.launch_for``, the function
    ``verl-ext train`` calls: ~8 s less per run than a fresh interpreter); with ``env`` (it changes what
    preflight decides, e.g. the compute dtype) through the CLI in a fresh process."""
    if env:
        return [sys.executable, "-m", "verl_ext.launch.train", *args], {**os.environ, **_env(log_file), **env}, ""
    from verl_ext.launch.launcher import launch_for

    printed: list[str] = []
    launch = launch_for(args, echo=printed.append)
    return launch.cmd, {**launch.env, **_env(log_file)}, "\n".join(printed) + "\n"


def train(args: list[str], log_file: Path, timeout: int = 400, env: dict | None = None) -> subprocess.CompletedProcess:
    """A real training: preflight, then torchrun's 2 processes; the launcher's report leads stdout."""
    cmd, run_env, printed = _launch(args, log_file, env)
    proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=timeout)
    proc.stdout = printed + proc.stdout
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train_until_checkpoint(args: list[str], log_file: Path, ckpt_dir: Path, step: int, timeout: int = 400) -> None:
    """Start a training and SIGKILL the whole process group once checkpoint ``step`` is complete."""
    cmd, run_env, _ = _launch(args, log_file, None)
    proc = subprocess.Popen(cmd, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    tracker = ckpt_dir / "latest_checkpointed_iteration.txt"
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            if tracker.exists() and tracker.read_text().strip() == str(step):
                kill_tree(proc.pid)
                proc.wait()
                return
            if proc.poll() is not None:
                raise AssertionError(f"training exited (rc {proc.returncode}) before checkpoint {step}")
            time.sleep(0.2)
        raise AssertionError("timed out waiting for the checkpoint")
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (torchrun's workers run in their own groups)."""
    import psutil

    try:
        parent = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    procs = parent.children(recursive=True) + [parent]
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def losses(log_file: Path) -> dict[int, float]:
    out = {}
    for line in log_file.read_text().splitlines():
        rec = json.loads(line)
        if "train/loss" in rec["data"]:
            out[rec["step"]] = rec["data"]["train/loss"]
    return out
