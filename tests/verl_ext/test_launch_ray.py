"""The Ray launcher's pure parts: resource fit against verl's placement-group bundles, worker env."""
import json

from verl_ext.launch.preflight import compose
from verl_ext.training.trainer_ray import cluster_problems, runtime_env, worker_bundle, worker_env

CPU_BUNDLE = {"CPU": 1.0}
GPU_BUNDLE = {"CPU": 10.0, "GPU": 1.0}


def nodes(*resources):
    return [(f"10.0.0.{i}", r) for i, r in enumerate(resources)]


def test_enough_nodes_pass():
    assert cluster_problems(nodes({"CPU": 1}, {"CPU": 1}), 2, 1, CPU_BUNDLE) == []
    assert cluster_problems(nodes({"CPU": 96, "GPU": 8}, {"CPU": 96, "GPU": 8}), 2, 8, GPU_BUNDLE) == []
    assert cluster_problems(nodes({"CPU": 4}), 2, 2, CPU_BUNDLE) == []  # two groups fit one node


def test_missing_gpus_are_named():
    (msg,) = cluster_problems(nodes({"CPU": 96, "GPU": 8}, {"CPU": 96, "GPU": 4}), 2, 8, GPU_BUNDLE)
    assert "short of 4 GPU" in msg and "trainer.nnodes=2 x trainer.n_gpus_per_node=8" in msg
    assert "10.0.0.1: 4 GPU + 96 CPU" in msg


def test_cpus_for_verls_bundles_are_named():
    """verl reserves 10 CPUs per GPU worker: 8 GPUs on a 64-CPU node do not fit."""
    (msg,) = cluster_problems(nodes({"CPU": 64, "GPU": 8}), 1, 8, GPU_BUNDLE)
    assert "short of 16 CPU" in msg


def test_enough_in_total_but_not_on_one_node():
    (msg,) = cluster_problems(nodes({"CPU": 1}, {"CPU": 1}), 1, 2, CPU_BUNDLE)
    assert "enough in total, but only 0 node(s) fit 2 worker(s)" in msg


def test_cpu_platform_bundle_is_one_cpu():
    from verl_ext.seam import plugin

    if plugin.CPU:
        assert worker_bundle() == CPU_BUNDLE


def test_worker_env_loads_the_plugin_and_platform():
    env = worker_env(True, {"VERL_USE_EXTERNAL_MODULES": "my_ext", "HF_HUB_OFFLINE": "1", "SECRET": "x"})
    assert env == {"VERL_USE_EXTERNAL_MODULES": "my_ext,verl_ext.seam.plugin", "VERL_PLATFORM": "cpu", "HF_HUB_OFFLINE": "1"}
    assert "VERL_PLATFORM" not in worker_env(False, {})


def test_runtime_env_keeps_user_and_job_keys():
    config = compose(['+ray.runtime_env.env_vars={VERL_PLATFORM:npu}', "+ray.runtime_env.pip=[x]"])
    job = {"runtime_env": {"env_vars": {"HF_HUB_OFFLINE": "0"}}}
    env = runtime_env(config, True, {"HF_HUB_OFFLINE": "1", "RAY_JOB_CONFIG_JSON_ENV_VAR": json.dumps(job)})
    assert env["pip"] == ["x"]
    assert env["env_vars"] == {"VERL_PLATFORM": "npu", "VERL_USE_EXTERNAL_MODULES": "verl_ext.seam.plugin"}
