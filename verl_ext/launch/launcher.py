"""Launch verl's SFT trainer after preflight: torchrun on one node, torchrun across nodes, or Ray.

``trainer.launcher`` picks how: ``standalone`` (``torchrun --standalone``, one node), ``torchrun``
(c10d rendezvous at ``trainer.master_addr:master_port``, this node's ``trainer.node_rank``; under
Slurm both come from its environment), ``ray`` (``verl_ext.training.trainer_ray``: verl's Ray trainer on a
connected cluster), or ``auto``: standalone for one node, torchrun for ``trainer.nnodes>1``. The
command it runs is printed first, so a user can copy it; the overrides travel unchanged, so the
trainer composes the same config preflight checked.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass

from omegaconf import DictConfig

from verl_ext.launch.preflight import PreflightError, Report, check, compose

LAUNCHERS = ("auto", "standalone", "torchrun", "ray")


class LaunchError(ValueError):
    """A launch setting is missing or contradictory; the message names the key and the fix."""


@dataclass(frozen=True)
class Rendezvous:
    """What every node's torchrun must agree on (c10d rendezvous), plus this node's rank."""

    nnodes: int
    node_rank: int
    endpoint: str
    rdzv_id: str


def launcher_of(config: DictConfig) -> str:
    name = str(config.trainer.get("launcher", "auto"))
    if name not in LAUNCHERS:
        raise LaunchError(f"trainer.launcher={name!r}; choose one of {', '.join(LAUNCHERS)}")
    if name == "auto":
        return "standalone" if int(config.trainer.nnodes) == 1 else "torchrun"
    return name


def first_slurm_host(nodelist: str, scontrol: str | None = None) -> str:
    """First host of a Slurm node list: ``scontrol show hostnames`` when there, else the simple forms
    (``a,b``, ``node[01-04,07]``, ``gpu[3,5]-ib``) parsed here."""
    if scontrol:
        out = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()[0]
    first = re.match(r"[^,\[]*(\[[^\]]*\])?[^,]*", nodelist.strip()).group(0)
    m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", first)
    if not m:
        return first
    prefix, ranges, suffix = m.groups()
    return prefix + ranges.split(",")[0].split("-")[0] + suffix


def rendezvous(trainer: DictConfig, environ: dict[str, str]) -> Rendezvous:
    """``trainer.nnodes/node_rank/master_addr/master_port/rdzv_id``, each unset one from Slurm."""
    nnodes = int(trainer.nnodes)
    problems = []
    slurm_nnodes = environ.get("SLURM_NNODES")
    if slurm_nnodes and int(slurm_nnodes) != nnodes:
        problems.append(f"trainer.nnodes={nnodes} but this Slurm job has SLURM_NNODES={slurm_nnodes}: "
                        f"set trainer.nnodes={slurm_nnodes} (or run srun -N{nnodes})")
    node_rank = trainer.get("node_rank")
    if node_rank is None:
        node_rank = environ.get("SLURM_NODEID")
    if node_rank is None:
        problems.append(f"trainer.nnodes={nnodes} needs this node's rank: pass trainer.node_rank=<0..{nnodes - 1}> "
                        "on each node (node 0 hosts the rendezvous), or run under Slurm (SLURM_NODEID)")
    elif not 0 <= int(node_rank) < nnodes:
        problems.append(f"trainer.node_rank={node_rank} is outside 0..{nnodes - 1} (trainer.nnodes={nnodes})")
    addr = trainer.get("master_addr")
    if not addr and environ.get("SLURM_JOB_NODELIST"):
        addr = first_slurm_host(environ["SLURM_JOB_NODELIST"], shutil.which("scontrol"))
    if not addr:
        problems.append(f"trainer.nnodes={nnodes} needs the rendezvous host: pass trainer.master_addr=<node 0's "
                        "hostname or IP> (the same on every node), or run under Slurm (SLURM_JOB_NODELIST)")
    if problems:
        raise LaunchError("; ".join(problems))
    rdzv_id = trainer.get("rdzv_id") or environ.get("SLURM_JOB_ID") or "verl-ext"
    return Rendezvous(nnodes, int(node_rank), f"{addr}:{int(trainer.master_port)}", str(rdzv_id))


def torchrun_command(args: list[str], nproc: int, rdzv: Rendezvous | None = None,
                     python: str | None = None) -> list[str]:
    """``nproc`` is per node; without ``rdzv`` the run is ``--standalone`` (one node)."""
    if rdzv is None:
        where = ["--standalone"]
    else:
        where = [f"--nnodes={rdzv.nnodes}", f"--node-rank={rdzv.node_rank}", "--rdzv-backend=c10d",
                 f"--rdzv-endpoint={rdzv.endpoint}", f"--rdzv-id={rdzv.rdzv_id}"]
    return [python or sys.executable, "-m", "torch.distributed.run", *where, f"--nproc_per_node={nproc}",
            "-m", "verl_ext.training.trainer", *args]


def ray_command(args: list[str], python: str | None = None) -> list[str]:
    """The Ray driver runs here; verl's RayWorkerGroup places the training workers on the cluster."""
    return [python or sys.executable, "-m", "verl_ext.training.trainer_ray", *args]


def launch_problems(config: DictConfig, environ: dict[str, str]) -> list[str]:
    """Everything wrong with how this config would be launched (preflight calls this)."""
    try:
        launcher = launcher_of(config)
    except LaunchError as e:
        return [str(e)]
    nnodes = int(config.trainer.nnodes)
    if nnodes < 1:
        return [f"trainer.nnodes={nnodes}; it must be at least 1"]
    if launcher == "standalone" and nnodes > 1:
        return [f"trainer.nnodes={nnodes} with trainer.launcher=standalone: torchrun --standalone runs on one node "
                "only; use trainer.launcher=torchrun (trainer.master_addr + trainer.node_rank, or Slurm's "
                "environment) or trainer.launcher=ray"]
    if launcher == "torchrun":
        try:
            rendezvous(config.trainer, environ)
        except LaunchError as e:
            return [str(e)]
    if launcher == "ray":
        from verl_ext.training.trainer_ray import ray_problems

        return ray_problems(config, environ)
    return []


def nproc_of(args: list[str], default: int | None = None) -> int:
    """Processes in the whole run: ``trainer.n_gpus_per_node`` (on CPU: processes) x ``trainer.nnodes``."""
    values = {"trainer.n_gpus_per_node": default or 1, "trainer.nnodes": 1}
    for a in args:
        key, _, value = a.lstrip("+").partition("=")
        if key in values:
            values[key] = int(value)
    return values["trainer.n_gpus_per_node"] * values["trainer.nnodes"]


def run_env(nproc: int, cpu: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HYDRA_FULL_ERROR", "1")
    if cpu:  # share the cores instead of every rank spawning one thread per core
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return env


def command_for(config: DictConfig, args: list[str], environ: dict[str, str]) -> list[str]:
    launcher = launcher_of(config)
    if launcher == "ray":
        return ray_command(args)
    nproc = int(config.trainer.n_gpus_per_node)
    return torchrun_command(args, nproc, rendezvous(config.trainer, environ) if launcher == "torchrun" else None)


@dataclass(frozen=True)
class Launch:
    """What ``train`` runs once preflight passed: the command (printed first) and its environment."""

    cmd: list[str]
    env: dict[str, str]


def launch_for(args: list[str], skip_preflight: bool = False, echo=print) -> Launch:
    """Preflight (its report echoed; a failing one raises ``PreflightError``), then the launch."""
    from verl_ext.seam.devices import on_cpu

    if skip_preflight:
        config = compose(args)
    else:
        report: Report = check(args)
        echo(report.render())
        if not report.ok:
            raise PreflightError(report)
        config = report.config
    cmd = command_for(config, args, dict(os.environ))
    echo("launch: " + shlex.join(cmd))
    return Launch(cmd, run_env(int(config.trainer.n_gpus_per_node), on_cpu()))


def train(args: list[str], dry_run: bool = False, skip_preflight: bool = False, echo=print) -> int:
    launch = launch_for(args, skip_preflight, echo)
    if dry_run:
        return 0
    return subprocess.run(launch.cmd, env=launch.env).returncode
