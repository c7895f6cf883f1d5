"""Generation evaluation during SFT: at each validation step, generate with the current weights on
a fixed math subset, grade, and log ``val-gen/*`` next to verl's ``val/loss``.

verl's SFT trainer validates on loss only. Turned on with ``gen_eval.enable=true`` (needs
``data.val_files``: validation steps drive it). Every rank generates its share of the prompts with
the FSDP-wrapped model (``synced_gpus`` keeps the sharded forwards in lockstep); rank 0 grades with
``verl_ext_eval.math.grading`` and hands the metrics to verl's tracker (console, file, tensorboard, wandb,
mlflow), with a table of sample generations where the logger has one and a JSONL file per step.

An application module: the trainer loads it by the dotted path in ``gen_eval.evaluator`` and calls
``attach(trainer) -> bool`` and ``tracking_class(trainer, base)``; the core never imports it.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, fields

import torch
import torch.distributed as dist

from verl_ext.data.datasets import DataOptions
from verl_ext.data.prompt_format import prompt_ids
from verl_ext.io import atomic_write

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenEvalConfig:
    enable: bool = False
    data_path: str | None = None  # Parquet/JSONL of problems with answers; None = the bundled set
    num_samples: int = 16  # fixed subset: the first N problems
    max_new_tokens: int = 256
    prompt_template: str | None = None  # None = data.prompt_template, else the Qwen boxed suffix (chat) / raw (plain)
    prompt_format: str = DataOptions.prompt_format  # data.prompt_format: chat | plain (raw prompt, no template)
    system_prompt: str | None = None  # None = data.system_prompt
    enable_thinking: bool | None = None
    batch_size: int = 8  # hf backend: prompts per generate call
    # hf: generate with the FSDP-wrapped training model (math only) | server: an SGLang server
    # serves the current weights (verl_ext.apps.gen_eval_server)
    backend: str = "hf"
    tasks: tuple = ("math",)  # math, textcraft (server backend)
    base_url: str | None = None  # server: an external SGLang server to reload; None = launch one
    server_device: str | None = None  # cpu | cuda; None = the training device
    server_python: str | None = None  # None: the SGLang CPU venv on CPU, this Python on GPU
    server_gpus: str | None = None  # CUDA_VISIBLE_DEVICES of a managed GPU server, e.g. "7"
    server_args: tuple = ()  # more sglang.launch_server flags, e.g. [--mem-fraction-static,0.3]
    server_timeout_s: float = 600.0
    concurrency: int = 16  # requests / episodes in flight
    textcraft_goals: tuple = ()  # explicit held-out goals (names or ids); else goal_list[start:start+episodes]
    textcraft_goal_list: str = "adapt"
    textcraft_start: int = 0
    textcraft_episodes: int = 15
    textcraft_max_rounds: int = 10
    textcraft_format: str = "agentgym"
    textcraft_max_new_tokens: int = 64

    @classmethod
    def from_config(cls, config) -> "GenEvalConfig":
        node = config.get("gen_eval") or {}
        values = {f.name: node.get(f.name) for f in fields(cls) if node.get(f.name) is not None}
        data = config.get("data") or {}
        values.setdefault("prompt_template", data.get("prompt_template"))
        values.setdefault("system_prompt", data.get("system_prompt"))
        values.setdefault("prompt_format", data.get("prompt_format"))
        for key in ("tasks", "server_args", "textcraft_goals"):
            if key in values:
                values[key] = (values[key],) if isinstance(values[key], str) else tuple(values[key])
        if values.get("server_device") is None:
            device = str((config.get("trainer") or {}).get("device", "cpu"))
            values["server_device"] = "cpu" if device == "cpu" else "cuda"
        return cls(**{k: v for k, v in values.items() if v is not None})


def check(config) -> list[str]:
    """Preflight of the gen_eval keys (the core calls it through the ``gen_eval.evaluator`` path)."""
    cfg = GenEvalConfig.from_config(config)
    if not cfg.enable:
        return []
    from verl_ext.apps.gen_eval_server import TASKS

    problems = []
    if cfg.backend not in ("hf", "server"):
        problems.append(f"gen_eval.backend={cfg.backend!r}: choose hf or server")
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown or not cfg.tasks:
        problems.append(f"gen_eval.tasks={list(cfg.tasks)}: choose from {', '.join(TASKS)}")
    if cfg.prompt_format == "plain" and "textcraft" in cfg.tasks:
        problems.append("gen_eval.tasks=[textcraft] plays chat episodes; data.prompt_format=plain trains no chat "
                        "template: evaluate math only, or set model.custom_chat_template")
    if cfg.backend == "hf" and "textcraft" in cfg.tasks:
        problems.append("gen_eval.tasks=[textcraft] needs gen_eval.backend=server (episodes run through an SGLang "
                        "server; the hf backend generates with the FSDP-wrapped model, math only)")
    if cfg.backend == "server" and int((config.get("model") or {}).get("lora_rank", 0) or 0) > 0:
        problems.append("gen_eval.backend=server with LoRA (model.lora_rank > 0) is not supported yet: the served "
                        "weights would be the base model's; use gen_eval.backend=hf")
    if cfg.backend == "server" and not cfg.base_url and cfg.server_device == "cpu" and not cfg.server_python:
        from verl_ext_eval.backends.managed_server import default_sglang_python

        if not default_sglang_python().exists():
            problems.append(f"gen_eval.backend=server launches SGLang from its CPU venv, but {default_sglang_python()} "
                            "does not exist: run `bash scripts/sglang_cpu_venv.sh`, or set gen_eval.base_url / "
                            "gen_eval.server_python")
    return problems


def build_prompts(cfg: GenEvalConfig, tokenizer) -> tuple[list[str], list]:
    """Chat-templated prompts (with generation prompt), or the raw prompts of the plain format, and
    the problems they come from."""
    from verl_ext_eval.math.problems import load_problems
    from verl_ext_eval.math.prompts import DEFAULT_TEMPLATE, RAW_TEMPLATE, render_prompt

    problems = load_problems(cfg.data_path)[: cfg.num_samples]
    if cfg.prompt_format == "plain":  # as training rendered them: data.prompt_template, else the raw problem
        return [render_prompt(cfg.prompt_template or RAW_TEMPLATE, p.problem) for p in problems], problems
    template = cfg.prompt_template or DEFAULT_TEMPLATE
    kwargs = {} if cfg.enable_thinking is None else {"enable_thinking": cfg.enable_thinking}
    prompts = []
    for p in problems:
        messages = ([{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []) + [
            {"role": "user", "content": render_prompt(template, p.problem)}
        ]
        prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs))
    return prompts, problems


@torch.no_grad()
def generate_shard(module, tokenizer, prompts: list[str], cfg: GenEvalConfig, device) -> list[tuple[str, int]]:
    """Greedy generation of this rank's prompts; every rank runs the same number of batches."""
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    mine = list(range(rank, len(prompts), world))
    n_batches = -(-((len(prompts) + world - 1) // world) // cfg.batch_size)
    pad_side, tokenizer.padding_side = tokenizer.padding_side, "left"
    eos = [t for t in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")} if isinstance(t, int) and t >= 0]
    if cfg.prompt_format == "plain":  # the prompt ids training saw (BOS as the tokenizer adds it)
        def encode(text):
            return prompt_ids(tokenizer, text)
    else:  # the chat template's text holds its own special tokens
        def encode(text):
            return tokenizer(text, add_special_tokens=False)["input_ids"]
    outputs: list[tuple[str, int]] = []
    try:
        for b in range(n_batches):
            idx = mine[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            real = bool(idx)
            idx = idx or [0]  # a rank with no work left still steps, in lockstep with the others
            batch = tokenizer.pad({"input_ids": [encode(prompts[i]) for i in idx]}, padding=True, return_tensors="pt")
            out = module.generate(
                **{k: v.to(device) for k, v in batch.items()},
                max_new_tokens=cfg.max_new_tokens,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=tokenizer.pad_token_id,
                synced_gpus=world > 1,
            )
            new = out[:, batch["input_ids"].shape[1] :]
            for row in new if real else []:
                ids = [t for t in row.tolist() if t != tokenizer.pad_token_id]
                outputs.append((tokenizer.decode(ids, skip_special_tokens=True), len(ids)))
    finally:
        tokenizer.padding_side = pad_side
    return outputs


def _full_params(module):
    """FSDP1 (verl's default strategy): ``generate`` goes straight to the inner HF model, so the root
    unit's shards (embeddings, final norm, lm_head) would never be gathered on more than one rank;
    gather every unit's full parameters for the generation. FSDP2 gathers per module on its own."""
    import contextlib

    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    if isinstance(module, FSDP):
        return FSDP.summon_full_params(module, writeback=False, recurse=True)
    return contextlib.nullcontext()


def run_gen_eval(trainer) -> dict[str, float]:
    """Collective: all ranks call it; rank 0 returns the metrics (others an empty dict)."""
    if trainer._gen_eval_cfg.backend == "server":
        from verl_ext.apps import gen_eval_server

        return gen_eval_server.run(trainer, trainer._gen_eval_cfg)
    from verl.utils.ulysses import get_ulysses_sequence_parallel_group, set_ulysses_sequence_parallel_group

    cfg: GenEvalConfig = trainer._gen_eval_cfg
    module = trainer.engine.module
    tokenizer = trainer.model_config.tokenizer
    prompts, problems = trainer._gen_eval_prompts
    sp_group = get_ulysses_sequence_parallel_group()
    set_ulysses_sequence_parallel_group(None)  # generation is plain data parallel over all ranks
    was_training = module.training
    module.eval()
    try:
        device = next(module.parameters()).device
        with _full_params(module):
            local = generate_shard(module, tokenizer, prompts, cfg, device)
    finally:
        module.train(was_training)
        set_ulysses_sequence_parallel_group(sp_group)
    world = dist.get_world_size() if dist.is_initialized() else 1
    gathered = [None] * world
    if world > 1:
        dist.all_gather_object(gathered, local)
    else:
        gathered = [local]
    if (dist.get_rank() if dist.is_initialized() else 0) != 0:
        return {}
    outputs: list = [None] * len(prompts)
    for r, part in enumerate(gathered):
        for j, item in enumerate(part):
            outputs[r + j * world] = item
    return _grade(trainer, cfg, prompts, problems, outputs)


def _interval(key: str, successes: int, n: int) -> dict[str, float]:
    from verl_ext_eval.report import wilson_interval

    ci = wilson_interval(successes, n)
    return {} if ci is None else {f"{key}_ci95_low": float(ci[0]), f"{key}_ci95_high": float(ci[1])}


def _grade(trainer, cfg, prompts, problems, outputs) -> dict[str, float]:
    from verl_ext_eval.math.grading import grade_many
    from verl_ext_eval.math.metrics import format_ok

    texts = [o[0] for o in outputs]
    results = grade_many([(t, p.answer) for t, p in zip(texts, problems)], timeout_s=5.0)
    n = len(texts)
    metrics = {
        "val-gen/math/accuracy": sum(r.correct for r in results) / n,
        "val-gen/math/format_rate": sum(format_ok(t, expect_think=bool(cfg.enable_thinking)) for t in texts) / n,
        "val-gen/math/response_length": sum(o[1] for o in outputs) / n,
        "val-gen/math/n": n,
        **_interval("val-gen/math/accuracy", sum(r.correct for r in results), n),
    }
    step = trainer.global_step_seen
    samples = [(prompts[i], texts[i], float(results[i].correct)) for i in range(n)]
    trainer._gen_eval_samples = samples
    out_dir = os.path.join(os.path.expanduser(str(trainer.config.trainer.default_local_dir)), "gen_eval")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"step_{step}.jsonl")
    atomic_write(path, "".join(
        json.dumps({"id": p.id, "answer": p.answer, "response": text, "tokens": ntok,
                    "correct": r.correct, "extracted": r.extracted, "reason": r.reason}) + "\n"
        for p, (text, ntok), r in zip(problems, outputs, results)))
    logger.warning("[verl-ext] gen-eval step %d: %s (samples: %s)", step, metrics, path)
    return metrics


class _ValLoaderWithGenEval:
    """The validation loader verl iterates; when it is exhausted, run generation eval."""

    def __init__(self, inner, trainer):
        self.inner, self.trainer = inner, trainer

    def __len__(self):
        return len(self.inner)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __iter__(self):
        yield from self.inner
        self.trainer._gen_eval_pending = run_gen_eval(self.trainer)


def tracking_class(trainer, base):
    """verl's ``Tracking`` whose val-loss log also carries the pending ``val-gen/*`` metrics."""

    class GenEvalTracking(base):
        def log(self, data, step, *args, **kwargs):
            pending = getattr(trainer, "_gen_eval_pending", None)
            if pending and "val/loss" in data:
                data = {**data, **pending}
                trainer._gen_eval_pending = None
                self._log_samples(step)
            return super().log(data, step, *args, **kwargs)

        def _log_samples(self, step):
            samples = getattr(trainer, "_gen_eval_samples", None)
            if not samples:
                return
            try:
                from verl.utils.tracking import ValidationGenerationsLogger

                ValidationGenerationsLogger(trainer.config.trainer.project_name, trainer.config.trainer.experiment_name).log(
                    list(trainer.config.trainer.logger), samples[:8], step
                )
            except Exception as e:  # a table is a nicety; metrics are already logged
                logger.warning("[verl-ext] could not log the generation table: %s", e)

    return GenEvalTracking


def attach(trainer):
    """Wire generation eval into a built verl SFTTrainer and return the wrapper of verl's
    ``Tracking`` class that logs its metrics (the ``gen_eval.evaluator`` contract); None when disabled."""
    cfg = GenEvalConfig.from_config(trainer.config)
    if not cfg.enable:
        return None
    if trainer.val_dataloader is None:
        raise ValueError("gen_eval.enable=true needs data.val_files: generation eval runs at validation steps")
    problems = check(trainer.config)
    if problems:
        raise ValueError("; ".join(problems))
    trainer._gen_eval_cfg = cfg
    if cfg.backend == "hf":
        trainer._gen_eval_prompts = build_prompts(cfg, trainer.model_config.tokenizer)
    trainer._gen_eval_pending = None
    trainer.val_dataloader = _ValLoaderWithGenEval(trainer.val_dataloader, trainer)
    return lambda base: tracking_class(trainer, base)
