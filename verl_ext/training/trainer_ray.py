"""verl's Ray SFT trainer (``verl.trainer.sft_trainer_ray``) on a connected cluster, the verl-ext way.

``verl-ext train trainer.launcher=ray ...`` runs this module as the driver (``python -m
verl_ext.training.trainer_ray <overrides>``, same config as the torchrun trainer). The driver reads the data
(our ``data.custom_cls`` datasets), holds the dataloader, logs metrics and writes the dataloader part
of each checkpoint; verl's ``RayWorkerGroup`` places ``trainer.nnodes`` x ``trainer.n_gpus_per_node``
``TrainingWorker``s (one placement group per node) that hold the FSDP model. Every worker gets
``VERL_USE_EXTERNAL_MODULES=verl_ext.seam.plugin`` through the job's runtime env, so ``import verl`` there
registers the CPU platform and applies ``verl_ext.seam.patches`` as in a torchrun rank, even where entry
points are off. The cluster's resources are checked before any model loads.
"""
from __future__ import annotations

import json
import logging
import math
import os

import hydra
from omegaconf import DictConfig, OmegaConf

from verl_ext.training import trainer as core_trainer  # first: its import time is the "imports" stage

logger = logging.getLogger(__name__)

# passed on to the workers when set here (Ray workers inherit their node's environment, not the driver's)
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "HF_ENDPOINT", "TOKENIZERS_PARALLELISM")
PLUGIN_MODULE = "verl_ext.seam.plugin"


class ClusterError(RuntimeError):
    """The Ray cluster cannot run this config; the message says what is missing."""


def ray_address(config: DictConfig, environ: dict[str, str]) -> str | None:
    return config.get("ray", {}).get("address") or environ.get("RAY_ADDRESS") or None


def worker_env(cpu: bool, environ: dict[str, str]) -> dict[str, str]:
    """Env vars every Ray worker needs to run as a verl-ext rank."""
    modules = [m for m in environ.get("VERL_USE_EXTERNAL_MODULES", "").split(",") if m]
    env = {"VERL_USE_EXTERNAL_MODULES": ",".join(dict.fromkeys([*modules, PLUGIN_MODULE]))}
    if cpu:  # the driver chose the CPU platform; the workers must agree (bundle and device names)
        env["VERL_PLATFORM"] = "cpu"
    env.update({k: environ[k] for k in FORWARDED_ENV if k in environ})
    return env


def runtime_env(config: DictConfig, cpu: bool, environ: dict[str, str]) -> dict:
    """``ray.runtime_env`` plus ``worker_env``; keys the user or a submitted job already set win
    (Ray refuses to merge a job's runtime env with a driver's that repeats an env var)."""
    env = OmegaConf.to_container(config.get("ray", {}).get("runtime_env") or OmegaConf.create({}), resolve=True)
    env_vars = {str(k): str(v) for k, v in (env.get("env_vars") or {}).items()}
    job = json.loads(environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}") or "{}")
    taken = set(env_vars) | set(((job.get("runtime_env") or {}).get("env_vars") or {}))
    env_vars.update({k: v for k, v in worker_env(cpu, environ).items() if k not in taken})
    env["env_vars"] = env_vars
    return env


def worker_bundle() -> dict[str, float]:
    """One worker's placement-group bundle, as verl builds it (``RayResourcePool.get_placement_groups``:
    ``{"CPU": max_colocate_count, <platform resource>: 1}``; on the CPU platform that is ``{"CPU": 1}``)."""
    from verl.plugin.platform.platform_manager import get_platform
    from verl.single_controller.ray import RayResourcePool

    pool = RayResourcePool(process_on_nodes=[1])
    bundle = {"CPU": float(pool.max_colocate_count)}
    if pool.use_gpu:
        bundle[get_platform().ray_resource_name()] = 1.0
    return bundle


def _text(resources: dict[str, float]) -> str:
    return " + ".join(f"{v:g} {k}" for k, v in sorted(resources.items(), key=lambda kv: kv[0] != "GPU")) or "nothing"


def cluster_problems(nodes: list[tuple[str, dict[str, float]]], nnodes: int, per_node: int,
                     bundle: dict[str, float]) -> list[str]:
    """Can ``nnodes`` placement groups of ``per_node`` bundles (STRICT_PACK: each on one node) be
    placed on these alive ``(name, resources)`` nodes? One message naming what is missing, or none."""
    def fits(res: dict[str, float]) -> int:
        return min(math.floor(res.get(k, 0.0) / v + 1e-9) for k, v in bundle.items())

    groups = sum(fits(res) // per_node for _, res in nodes)
    if groups >= nnodes:
        return []
    need = {k: v * nnodes * per_node for k, v in bundle.items()}
    have = {k: sum(res.get(k, 0.0) for _, res in nodes) for k in bundle}
    short = {k: need[k] - have[k] for k in bundle if have[k] < need[k]}
    head = (f"trainer.nnodes={nnodes} x trainer.n_gpus_per_node={per_node} needs {nnodes} node(s) that each fit "
            f"{per_node} worker(s) of {_text(bundle)} (verl's Ray resource pool)")
    per = ", ".join(f"{name}: {_text({k: res.get(k, 0.0) for k in bundle})}" for name, res in nodes) or "no alive nodes"
    if short:
        why = f"the Ray cluster is short of {_text(short)} ({per})"
    else:
        why = f"the Ray cluster has enough in total, but only {groups} node(s) fit {per_node} worker(s) ({per})"
    return [f"{head}; {why}: add nodes, or lower trainer.nnodes / trainer.n_gpus_per_node"]


def alive_nodes() -> list[tuple[str, dict[str, float]]]:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    return [(f"{n['NodeManagerAddress']}/{n['NodeID'][:6]}", dict(n.get("Resources", {}))) for n in nodes]


def check_cluster(config: DictConfig, nodes: list[tuple[str, dict[str, float]]] | None = None) -> list[str]:
    """Resource problems of the cluster (``nodes``, else the connected one's) for this config."""
    cpu = str(config.trainer.device) == "cpu"
    nodes = alive_nodes() if nodes is None else nodes
    gpus = sum(res.get("GPU", 0.0) for _, res in nodes)
    if cpu and gpus:
        return [f"this driver has no accelerator, so verl-ext chose the CPU platform (trainer.device=cpu), but the "
                f"Ray cluster has {gpus:g} GPU: run the driver on a GPU node (verl-ext submit "
                "--entrypoint-num-gpus 1 -- verl-ext train ...)"]
    return cluster_problems(nodes, int(config.trainer.nnodes), int(config.trainer.n_gpus_per_node), worker_bundle())


def unsupported(config: DictConfig) -> list[str]:
    """What verl's Ray trainer cannot do that the torchrun one can."""
    if config.get("gen_eval", {}).get("enable"):
        return ["gen_eval.enable=true is not supported with trainer.launcher=ray: generation eval runs on the "
                "trainer's in-process engine, which verl's Ray trainer keeps in remote workers; use "
                "trainer.launcher=standalone/torchrun, or gen_eval.enable=false"]
    return []


def ray_problems(config: DictConfig, environ: dict[str, str]) -> list[str]:
    """Preflight for ``trainer.launcher=ray``: unsupported features, the address, the cluster's resources."""
    problems = unsupported(config)
    address = ray_address(config, environ)
    if not address:
        problems.append("trainer.launcher=ray needs a cluster: set ray.address=<head>:6379 (what `ray start --head` "
                        "prints) or RAY_ADDRESS, ray.address=local to start Ray here, or run it as a job (verl-ext submit)")
    elif address.startswith(("http://", "https://")):
        problems.append(f"ray.address/RAY_ADDRESS={address} is the dashboard (job submission) address; the driver "
                        "needs the cluster's GCS address <head>:6379, or submit the run: verl-ext submit --address "
                        f"{address} -- verl-ext train ...")
    if problems or address == "local":  # a local Ray is started (and checked) by the driver
        return problems
    try:
        nodes = probe_nodes(address)
    except ClusterError as e:
        return [str(e)]
    return check_cluster(config, nodes)


def probe_nodes(address: str, timeout_s: float = 90.0) -> list[tuple[str, dict[str, float]]]:
    """The cluster's alive nodes, read by a short-lived driver in a subprocess: ``ray.init`` to a wrong
    or unreachable address retries for many minutes and leaves Ray state in the process; here it
    is bounded and the caller stays clean."""
    import subprocess
    import sys

    code = ("import json, sys, ray; ray.init(address=sys.argv[1], log_to_driver=False, logging_level='ERROR'); "
            "from verl_ext.training.trainer_ray import alive_nodes; print('NODES=' + json.dumps(alive_nodes()))")
    fix = "start it (ray start --head) or fix ray.address / RAY_ADDRESS"
    try:
        out = subprocess.run([sys.executable, "-c", code, address], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"cannot reach the Ray cluster at {address} within {timeout_s:.0f}s; {fix}") from None
    for line in out.stdout.splitlines():
        if line.startswith("NODES="):
            return [(name, res) for name, res in json.loads(line[len("NODES="):])]
    why = (out.stderr.strip().splitlines() or ["no output"])[-1]
    raise ClusterError(f"cannot connect to the Ray cluster at {address} ({why}); {fix}")


def connect(config: DictConfig) -> None:
    import ray

    address = ray_address(config, dict(os.environ))
    if not address:
        raise ClusterError("trainer.launcher=ray needs a cluster: set ray.address=<head>:6379 or RAY_ADDRESS")
    env = runtime_env(config, str(config.trainer.device) == "cpu", dict(os.environ))
    kwargs = {"include_dashboard": False} if address == "local" else {}
    ray.init(address=address, runtime_env=env, **kwargs)


def _trainer_class():
    from verl.trainer.sft_trainer_ray import SFTTrainer as RaySFTTrainer

    from verl_ext.seam import patches

    class VerlExtRaySFTTrainer(core_trainer._trainer_class(RaySFTTrainer)):
        """verl-ext's trainer (stages, verl #7401 fix) over verl's Ray trainer."""

        def _build_engine(self):  # the Ray trainer builds and initialises the engine in one call
            with self.stages.stage("Ray workers: model load + FSDP wrap + optimizer"):
                RaySFTTrainer._build_engine(self)

        def _build_dataloader(self):
            with patches.ray_dataloader_workers(int(self.config.data.num_workers)):
                super()._build_dataloader()

    return VerlExtRaySFTTrainer


def run(config: DictConfig) -> None:
    import ray

    stages = core_trainer.prepare(config)
    try:
        with stages.stage("Ray connect + resource check"):
            problems = unsupported(config)
            if not problems:
                connect(config)
                problems = check_cluster(config)
            if problems:
                raise ClusterError("\n".join(problems))
        core_trainer.fit_unless_done(_trainer_class()(config=config, stages=stages))
    finally:
        stages.close()
        if ray.is_initialized():
            ray.shutdown()


@hydra.main(config_path="config", config_name="sft", version_base=None)
def main(config: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(config)


if __name__ == "__main__":
    main()
