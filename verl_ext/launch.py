"""Launch verl's SFT trainer (via ``verl_ext.trainer``) under torchrun, after preflight.

The command it runs is printed first, so a user can copy it; the overrides travel unchanged, so the
trainer composes the same config preflight checked.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

from verl_ext.preflight import PreflightError, Report, check


def torchrun_command(args: list[str], nproc: int, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "verl_ext.trainer", *args]


def run_env(nproc: int, cpu: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HYDRA_FULL_ERROR", "1")
    if cpu:  # share the cores instead of every rank spawning one thread per core
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def nproc_of(args: list[str], default: int | None = None) -> int:
    """``trainer.n_gpus_per_node`` is the process count (verl's key; on CPU: processes)."""
    for a in reversed(args):
        if a.lstrip("+").startswith("trainer.n_gpus_per_node="):
            return int(a.split("=", 1)[1])
    return default or 1


def train(args: list[str], dry_run: bool = False, skip_preflight: bool = False, echo=print) -> int:
    from verl_ext.devices import on_cpu

    nproc = nproc_of(args)
    if not skip_preflight:
        report: Report = check(args, nproc=nproc)
        echo(report.render())
        if not report.ok:
            raise PreflightError(report)
    cmd = torchrun_command(args, nproc)
    echo("launch: " + shlex.join(cmd))
    if dry_run:
        return 0
    proc = subprocess.run(cmd, env=run_env(nproc, on_cpu()))
    return proc.returncode
