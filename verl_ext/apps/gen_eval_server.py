"""``gen_eval.backend=server``: task accuracy during SFT through an SGLang server.

At each validation step every rank takes part in gathering the full weights (FSDP1 or FSDP2, one
collective); rank 0 writes them as a Hugging Face folder (``<default_local_dir>/gen_eval/weights``,
swapped in atomically) and has a server serve them: one verl-ext launches on the first evaluation
and keeps (``verl_ext_eval.backends.managed_server``: the SGLang CPU venv on CPU, the training env's
SGLang on GPU machines, on the GPUs named by ``gen_eval.server_gpus``), or an external one
(``gen_eval.base_url``). Either is told to reload through SGLang's ``/update_weights_from_disk``
and checked to serve that folder. Rank 0 then runs the tasks with the ordinary runners
(``verl_ext_eval.math.run``, ``verl_ext_eval.textcraft.run``: reports under
``gen_eval/step_<N>/<task>/``), while the other ranks wait at a barrier. SGLang's radix cache
serves every TextCraft turn's shared prefix (the runner resends the same conversation each turn).
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import torch.distributed as dist

from verl_ext import io

logger = logging.getLogger(__name__)

TASKS = ("math", "textcraft")


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def export_weights(trainer, folder: Path) -> None:
    """Collective: the full state dict of the training model, written by rank 0 as an HF folder."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    module = trainer.engine.module
    state = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if _rank() != 0:
        return
    import torch
    from huggingface_hub import save_torch_state_dict

    hf_config = trainer.model_config.hf_config
    dtype = getattr(hf_config, "torch_dtype", None) or getattr(hf_config, "dtype", None)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if trainer.config.trainer.device == "cpu":
        from verl_ext.seam.precision import compute_dtype

        if compute_dtype("cpu") == torch.float32:  # the server computes in fp32 here: keep the master weights
            dtype = torch.float32
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    tmp = io.temp_beside(folder, folder=True)
    try:
        save_torch_state_dict(state, str(tmp), max_shard_size="2GB")
        hf_config.save_pretrained(str(tmp))
        trainer.model_config.tokenizer.save_pretrained(str(tmp))
        generation = getattr(trainer.model_config, "generation_config", None)
        if generation is not None:
            generation.save_pretrained(str(tmp))
        old = folder.with_name(folder.name + f".old-{os.getpid()}")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        io.fsync(folder.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class ServerSession:
    """Rank 0's view of the evaluation server across validation steps."""

    def __init__(self, cfg, out_dir: Path):
        self.cfg, self.out_dir = cfg, out_dir
        self.server = None
        self.base_url = cfg.base_url.rstrip("/") if cfg.base_url else None
        atexit.register(self.close)

    def load(self, folder: Path) -> str:
        """Serve ``folder``: launch the managed server the first time, else reload; returns its URL."""
        if self.base_url is None:
            self.server = self._launch(folder)
            self.base_url = self.server.base_url
            return self.base_url
        import httpx

        t0 = time.monotonic()
        r = httpx.post(f"{self.base_url}/update_weights_from_disk", json={"model_path": str(folder)},
                       timeout=self.cfg.server_timeout_s)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code != 200 or body.get("success") is False:
            raise RuntimeError(f"gen_eval: {self.base_url}/update_weights_from_disk failed "
                               f"({r.status_code}): {body.get('message') or r.text[:500]}")
        self._check_serves(folder)
        logger.warning("[verl-ext] gen-eval: server %s reloaded %s in %.1fs", self.base_url, folder, time.monotonic() - t0)
        return self.base_url

    def _launch(self, folder: Path):
        from verl_ext_eval.backends.managed_server import LaunchSpec, ManagedServer

        on_gpu = self.cfg.server_device != "cpu"
        python = self.cfg.server_python or ("" if not on_gpu else sys.executable)
        env = {}
        if on_gpu and self.cfg.server_gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(self.cfg.server_gpus)
        spec = LaunchSpec(model_path=str(folder), python=python, device=self.cfg.server_device,
                          extra_args=tuple(self.cfg.server_args or ()), log_path=str(self.out_dir / "server.log"),
                          startup_timeout_s=self.cfg.server_timeout_s, env=env)
        t0 = time.monotonic()
        server = ManagedServer(spec)
        logger.warning("[verl-ext] gen-eval: SGLang server for %s up at %s in %.1fs (log %s)", folder,
                       server.base_url, time.monotonic() - t0, server.log_path)
        return server

    def _check_serves(self, folder: Path) -> None:
        import httpx

        try:
            info = httpx.get(f"{self.base_url}/get_model_info", timeout=30).json()
        except (httpx.HTTPError, ValueError):
            return  # not SGLang (another OpenAI-compatible server): trust the reload's answer
        served = info.get("model_path") if isinstance(info, dict) else None
        if served and Path(served).resolve() != folder.resolve():
            raise RuntimeError(f"gen_eval: after the reload {self.base_url} serves {served}, not {folder}")

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def run(trainer, cfg) -> dict:
    """Collective: export the weights, evaluate on rank 0, everyone waits; rank 0's metrics."""
    root = Path(os.path.expanduser(str(trainer.config.trainer.default_local_dir))) / "gen_eval"
    root.mkdir(parents=True, exist_ok=True)
    folder = root / "weights"
    t0 = time.monotonic()
    export_weights(trainer, folder)
    metrics: dict = {}
    if _rank() == 0:
        session = getattr(trainer, "_gen_eval_session", None)
        if session is None:
            session = trainer._gen_eval_session = ServerSession(cfg, root)
            if cfg.base_url and trainer.config.model.get("custom_chat_template"):
                logger.warning("[verl-ext] gen-eval: %s keeps the chat template it was started with; the run's "
                               "model.custom_chat_template reaches a server verl-ext launches (it serves the weights "
                               "folder, template included). Start yours with --chat-template FILE", cfg.base_url)
        export_s = time.monotonic() - t0
        url = session.load(folder)
        step_dir = root / f"step_{trainer.global_step_seen}"
        samples: list = []
        for task in cfg.tasks:
            metrics.update(_TASK_RUNNERS[task](cfg, url, step_dir / task, samples))
        metrics["val-gen/seconds"] = round(time.monotonic() - t0, 2)
        metrics["val-gen/export_seconds"] = round(export_s, 2)
        trainer._gen_eval_samples = samples
        logger.warning("[verl-ext] gen-eval step %d: %s (reports under %s)", trainer.global_step_seen, metrics, step_dir)
    if dist.is_initialized():
        dist.barrier()
    return metrics


def _ci(metrics: dict, key: str, interval) -> None:
    if interval and interval[0] is not None:
        metrics[f"{key}_ci95_low"], metrics[f"{key}_ci95_high"] = float(interval[0]), float(interval[1])


def run_math(cfg, url: str, out: Path, samples: list) -> dict:
    from verl_ext_eval.backends import make_backend
    from verl_ext_eval.math.config import BackendConfig, DataConfig, MathEvalConfig, PromptConfig, SamplingConfig
    from verl_ext_eval.math.prompts import DEFAULT_TEMPLATE, RAW_TEMPLATE
    from verl_ext_eval.math.run import run_eval

    plain = cfg.prompt_format == "plain"  # raw prompts, as training rendered them (no chat template)
    mcfg = MathEvalConfig(
        data=DataConfig(path=cfg.data_path), backend=BackendConfig(name="server", base_url=url),
        sampling=SamplingConfig(max_new_tokens=cfg.max_new_tokens),
        prompt=PromptConfig(template=cfg.prompt_template or (RAW_TEMPLATE if plain else DEFAULT_TEMPLATE),
                            system=cfg.system_prompt, mode="complete" if plain else "chat",
                            enable_thinking=cfg.enable_thinking),
        limit=cfg.num_samples, concurrency=cfg.concurrency, out_dir=str(out),
    )
    backend = make_backend("server", base_url=url, max_concurrency=cfg.concurrency)
    summary = run_eval(mcfg, backend)
    _close(backend)
    o = summary["overall"]
    metrics = {"val-gen/math/accuracy": o["accuracy"], "val-gen/math/format_rate": o["format_rate"],
               "val-gen/math/response_length": o["mean_tokens"], "val-gen/math/n": o["n_samples"]}
    _ci(metrics, "val-gen/math/accuracy", o.get("accuracy_ci95"))
    from verl_ext_eval.math.run import SAMPLES_FILE

    samples += [(f"{r['id']} (gold {r['gold']})", r["response"], float(bool(r["correct"])))
                for r in _records(out / SAMPLES_FILE)[:4]]
    return metrics


def run_textcraft(cfg, url: str, out: Path, samples: list) -> dict:
    from verl_ext_eval.backends import make_backend
    from verl_ext_eval.textcraft.run import BackendConfig, RunConfig, SamplingConfig, evaluate

    rcfg = RunConfig(
        backend=BackendConfig(name="server", base_url=url),
        sampling=SamplingConfig(max_new_tokens=cfg.textcraft_max_new_tokens),
        goal_list=cfg.textcraft_goal_list, episodes=cfg.textcraft_episodes, start=cfg.textcraft_start,
        goals=list(cfg.textcraft_goals or []), format=cfg.textcraft_format, max_rounds=cfg.textcraft_max_rounds,
        concurrency=cfg.concurrency, out_dir=str(out), progress=False,
    )
    backend = make_backend("server", base_url=url, max_concurrency=cfg.concurrency)
    summary = evaluate(rcfg, backend)
    _close(backend)
    metrics = {"val-gen/textcraft/success": summary["success_rate"], "val-gen/textcraft/episodes": summary["episodes"],
               "val-gen/textcraft/mean_steps": summary["mean_steps"],
               "val-gen/textcraft/invalid_turn_rate": summary["invalid_turn_rate"]}
    _ci(metrics, "val-gen/textcraft/success", summary.get("success_rate_ci95"))
    for depth, rate in (summary.get("success_by_depth") or {}).items():
        metrics[f"val-gen/textcraft/success_depth_{depth}"] = rate
    from verl_ext_eval.textcraft.run import RESULTS_FILE

    for r in _records(out / RESULTS_FILE)[:4]:
        text = " | ".join(str(a) for a in (r.get("actions") or [])[-5:])
        samples.append((f"TextCraft goal: {r.get('goal')}", text, float(bool(r.get("success")))))
    return metrics


_TASK_RUNNERS = {"math": run_math, "textcraft": run_textcraft}


def _records(path: Path) -> list[dict]:
    """The runner's result records (its own resumable JSONL reader)."""
    from verl_ext_eval.results import ResultsFile

    return ResultsFile(path, "key").records() if path.exists() else []


def _close(backend) -> None:
    import asyncio

    asyncio.run(backend.close())
