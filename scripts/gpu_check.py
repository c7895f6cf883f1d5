"""GPU proof for verl-ext (issue 14): run verl-ext's real training, export and eval paths on this
machine, one check at a time, and say for each: passed, failed (with the error's tail), not possible
here (and why), or skipped (and why).

Run through ``scripts/gpu_check.sh [--out DIR] [--only NAMES] [--steps N]``. Every training is
``verl-ext train`` (preflight, then torchrun, 1 process) on a random-initialised Qwen3-shaped model
built here on the real Qwen3 tokenizer (``verl_ext.assets``), saved in bf16. Results: one JSON
(``$OUT/gpu_check.json``, else ``--out``/gpu_check.json) and one printed line per check.

On a machine without CUDA the GPU-only checks (FSDP1, flash-attn, Liger) are reported "not possible
here: no CUDA device" and the rest run on verl-ext's CPU platform (FSDP2, sdpa, gloo).

Environment (all optional): GPU_CHECK_STEPS, GPU_CHECK_HIDDEN, GPU_CHECK_LAYERS, GPU_CHECK_HEADS,
GPU_CHECK_KV_HEADS, GPU_CHECK_HEAD_DIM, GPU_CHECK_INTERMEDIATE (model size), GPU_CHECK_MAX_LENGTH,
GPU_CHECK_BATCH, GPU_CHECK_JOBS (checks run at once), GPU_CHECK_TIMEOUT_S (per run),
GPU_CHECK_WALL_S (everything ends by then: runs are cut at it, no check starts in its last minute;
default 450 s on GPU), GPU_CHECK_LOSS_RTOL, GPU_CHECK_LOCK (a file:
each run holds flock(2) on it), GPU_CHECK_PYTHON (read by gpu_check.sh), GPU_CHECK_RAY_STUB=1
(shadow ray with the import-only stub even where ray imports).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PASSED, FAILED, NOT_POSSIBLE, SKIPPED = "passed", "failed", "not_possible", "skipped"
NO_CUDA = "no CUDA device"


# -- what this machine has ------------------------------------------------------------------------
@dataclass(frozen=True)
class Machine:
    """What decides which checks can run here (probed once; a fake one in the unit tests)."""

    cuda: bool
    cuda_why: str = ""  # why there is no CUDA device, or the device's name
    flash_attn: bool = False
    flash_attn_why: str = ""
    liger: bool = False
    liger_why: str = ""
    info: dict = field(default_factory=dict)


def _import_error(module: str, *names: str) -> str | None:
    """None when ``module`` (and ``names`` from it) import, else the error in one line."""
    if importlib.util.find_spec(module) is None:
        return f"{module} not installed"
    try:
        mod = importlib.import_module(module)
        for n in names:
            getattr(mod, n)
    except Exception as e:  # a wheel built for another torch/CUDA fails here, not at step 1
        return f"{module} not importable ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
    return None


def probe_machine() -> Machine:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "host_cpus": os.cpu_count()}
    for dist in ("verl", "transformers", "tokenizers", "peft", "accelerate", "tensordict", "datasets", "pyarrow",
                 "fsspec", "numpy", "triton", "liger-kernel", "flash-attn", "ray"):
        try:
            from importlib.metadata import version

            info[dist] = version(dist)
        except Exception:
            info[dist] = None
    with contextlib.suppress(Exception):
        import ray

        if getattr(ray, "STUB", False):
            info["ray"] = "import-only stub (scripts/gpu_check.py)"
    cuda = bool(torch.cuda.is_available())
    if cuda:
        cuda_why = torch.cuda.get_device_name(0)
        info.update(cuda_device=cuda_why, cuda_runtime=torch.version.cuda, cuda_devices=torch.cuda.device_count())
    else:
        cuda_why = NO_CUDA + (" (torch is a CPU build)" if torch.version.cuda is None else
                              " (torch.cuda.is_available() is False)")
    fa = _import_error("flash_attn", "flash_attn_varlen_func")
    lg = _import_error("liger_kernel")
    if lg is None:
        lg = _import_error("liger_kernel.transformers.monkey_patch", "_apply_liger_kernel_to_instance")
    return Machine(cuda=cuda, cuda_why=cuda_why, flash_attn=fa is None, flash_attn_why=fa or "ok",
                   liger=lg is None, liger_why=lg or "ok", info=info)


# -- the checks ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    name: str
    what: str
    needs: tuple[str, ...] = ()  # "cuda", "flash_attn", "liger"
    reference: str | None = None  # step-1 loss compared with this check's (None: no comparison)
    runs: str = "train"  # train | lora_export | textcraft


def default_strategy(m: Machine) -> str:
    """The FSDP version users get: verl's default (fsdp = FSDP1) on GPU; verl-ext forces fsdp2 on CPU."""
    return "fsdp" if m.cuda else "fsdp2"


def reference_for(m: Machine) -> str:
    return "fsdp1_sdpa" if m.cuda else "fsdp2_sdpa"


def checks_for(m: Machine) -> list[Check]:
    ref = reference_for(m)
    return [
        Check("fsdp1_sdpa", "engine.strategy=fsdp (FSDP1, verl's default), sdpa, padded", ("cuda",)),
        Check("fsdp2_sdpa", "engine.strategy=fsdp2, sdpa, padded" + ("; step-1 loss = FSDP1's" if m.cuda else ""),
              reference="fsdp1_sdpa" if m.cuda else None),
        Check("fsdp1_flash_attn", "FSDP1, flash_attention_2, remove padding; step-1 loss = sdpa's",
              ("cuda", "flash_attn"), reference="fsdp1_sdpa"),
        Check("fsdp2_flash_attn", "FSDP2, flash_attention_2, remove padding; step-1 loss = sdpa's",
              ("cuda", "flash_attn"), reference="fsdp2_sdpa"),
        Check("liger", "model.use_liger=True; step-1 loss = Liger off", ("cuda", "liger"), reference=ref),
        Check("remove_padding", "model.use_remove_padding=True, sdpa; step-1 loss = padded", reference=ref),
        Check("gen_eval", "gen_eval.enable=true: val-gen/* logged at the test step"),
        Check("lora_export", "model.lora_rank=8 run, verl-ext export: merged weights differ from base",
              runs="lora_export"),
        Check("textcraft_hf", "TextCraft episode, backend.name=hf on this device", runs="textcraft"),
    ]


CHECK_NAMES = [c.name for c in checks_for(Machine(cuda=True))]


def why_not_possible(check: Check, m: Machine) -> str | None:
    """None when ``check`` can run on ``m``, else the reason (one line)."""
    why = []
    if "cuda" in check.needs and not m.cuda:
        extra = {"fsdp1_sdpa": " (FSDP1 refuses CPU parameters: verl-ext runs CPU trainings with fsdp2)"}
        why.append(m.cuda_why + extra.get(check.name, ""))
    if "flash_attn" in check.needs and not m.flash_attn:
        why.append(m.flash_attn_why)
    if "liger" in check.needs and not m.liger:
        why.append(m.liger_why)
    return "; ".join(why) or None


def parse_only(value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHECK_NAMES]
    if unknown:
        raise SystemExit(f"gpu_check: unknown check(s) {', '.join(unknown)}; choose from {', '.join(CHECK_NAMES)}")
    return names


def plan(m: Machine, only: list[str] | None) -> tuple[list[Check], dict[str, dict]]:
    """Checks to run (references pulled in), and the records of those that will not run."""
    checks = checks_for(m)
    by_name = {c.name: c for c in checks}
    wanted = set(only if only is not None else by_name)
    preset: dict[str, dict] = {}
    for c in checks:
        why = why_not_possible(c, m)
        if why:
            preset[c.name] = record(c, NOT_POSSIBLE, f"not possible here: {why}")
    # a comparison needs its reference run (when the reference itself can run here)
    for name in list(wanted):
        ref = by_name[name].reference
        if name not in preset and ref and ref not in preset:
            wanted.add(ref)
    for c in checks:
        if c.name not in wanted and c.name not in preset:
            preset[c.name] = record(c, SKIPPED, "skipped: not selected (--only)")
    return [c for c in checks if c.name in wanted and c.name not in preset], preset


def record(check: Check, status: str, detail: str, **extra) -> dict:
    return {"name": check.name, "what": check.what, "status": status, "detail": detail, **extra}


def line_for(rec: dict) -> str:
    secs = f" [{rec['seconds']:.0f} s]" if rec.get("seconds") is not None else ""
    return f"gpu_check {rec['name']:<17} {rec['status'].upper():<12} {rec['detail']}{secs}"


def summarize(records: list[dict]) -> dict:
    out = {s: 0 for s in (PASSED, FAILED, NOT_POSSIBLE, SKIPPED)}
    for r in records:
        out[r["status"]] += 1
    return out


# -- settings ---------------------------------------------------------------------------------------
@dataclass
class Settings:
    steps: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    max_length: int
    batch: int
    jobs: int
    timeout_s: int
    wall_s: int
    loss_rtol: float
    lock: str | None

    @classmethod
    def from_env(cls, cuda: bool, steps: int | None, env=os.environ) -> "Settings":
        def num(key, gpu, cpu, kind=int):
            return kind(env.get(f"GPU_CHECK_{key}") or (gpu if cuda else cpu))

        return cls(
            steps=steps or num("STEPS", 10, 3),
            hidden=num("HIDDEN", 512, 64), layers=num("LAYERS", 4, 2), heads=num("HEADS", 8, 4),
            kv_heads=num("KV_HEADS", 4, 2), head_dim=num("HEAD_DIM", 64, 16),
            intermediate=num("INTERMEDIATE", 1536, 128), max_length=num("MAX_LENGTH", 256, 128),
            batch=num("BATCH", 8, 4), jobs=num("JOBS", 3, 1), timeout_s=num("TIMEOUT_S", 240, 400),
            wall_s=num("WALL_S", 450, 1800), loss_rtol=num("LOSS_RTOL", 1e-2, 1e-2, float),
            lock=env.get("GPU_CHECK_LOCK") or None,
        )


# -- assets: model, data ----------------------------------------------------------------------------
def build_model(target: Path, s: Settings) -> Path:
    """Random-initialised Qwen3 on the real Qwen3 tokenizer, saved in bf16 (seed 0)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen3Config

    from verl_ext.assets import load_qwen3_tokenizer

    if (target / "config.json").exists():
        return target
    tok = load_qwen3_tokenizer()
    config = Qwen3Config(
        vocab_size=((len(tok) + 63) // 64) * 64, hidden_size=s.hidden, intermediate_size=s.intermediate,
        num_hidden_layers=s.layers, num_attention_heads=s.heads, num_key_value_heads=s.kv_heads,
        head_dim=s.head_dim, max_position_embeddings=32768, tie_word_embeddings=True,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"), eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tok.pad_token_id, dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(target)
    return target


WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen"]


def write_rows(path: Path, n: int) -> Path:
    """Chat rows of different lengths (so padded and packed batches differ)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for i in range(n):
        w = WORDS[i % len(WORDS)]
        rows.append({"messages": [
            {"role": "user", "content": f"Say {i} in words." + " Please." * (i % 5)},
            {"role": "assistant", "content": f"{w} is the word you want." + f" Again: {w}." * (i % 7)},
        ]})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# -- running things ---------------------------------------------------------------------------------
class Runner:
    def __init__(self, work: Path, s: Settings, m: Machine, python: str, env: dict):
        self.work, self.s, self.m, self.python, self.env = work, s, m, python, env
        self.t0 = time.monotonic()
        self.results: dict[str, dict] = {}
        self.lock = threading.Lock()

    # one subprocess, logged to a file, killed with its children on timeout
    def sub(self, args: list[str], log: Path, extra_env: dict | None = None) -> tuple[int, str]:
        env = {**self.env, **(extra_env or {})}
        with contextlib.ExitStack() as stack:
            if self.s.lock:
                import fcntl

                fh = stack.enter_context(open(self.s.lock, "a"))
                fcntl.flock(fh, fcntl.LOCK_EX)
            with open(log, "w") as out:
                out.write("$ " + " ".join(args) + "\n")
                out.flush()
                proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(self.work),
                                        start_new_session=True)
                limit = max(5.0, min(self.s.timeout_s, self.t0 + self.s.wall_s - time.monotonic()))
                try:
                    rc = proc.wait(timeout=limit)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    rc = 124
        text = log.read_text(errors="replace")
        if rc == 124:
            text += (f"\n[gpu_check] killed at its time limit (GPU_CHECK_TIMEOUT_S={self.s.timeout_s} per run, "
                     f"GPU_CHECK_WALL_S={self.s.wall_s} in all)")
        return rc, text

    def train_args(self, name: str, ckpt: Path, *extra: str) -> list[str]:
        s = self.s
        base = [
            f"model.path={self.model}", f"data.train_files={self.train_file}", f"data.train_batch_size={s.batch}",
            f"data.max_length={s.max_length}", "data.num_workers=0", f"data.cache_dir={self.work / 'data-cache'}",
            f"trainer.total_training_steps={s.steps}", f"trainer.total_epochs={s.steps}",
            "trainer.logger=[console,file]", f"trainer.default_local_dir={ckpt}", "trainer.n_gpus_per_node=1",
            "trainer.project_name=gpu_check", f"trainer.experiment_name={name}", "trainer.resume_mode=disable",
            "trainer.save_freq=-1", "trainer.test_freq=-1", "model.use_remove_padding=False",
            "+model.override_config.attn_implementation=sdpa",
        ]
        given = {e.lstrip("+").split("=", 1)[0] for e in extra}
        return [a for a in base if a.lstrip("+").split("=", 1)[0] not in given] + list(extra)

    def train(self, name: str, *extra: str) -> dict:
        d = self.work / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        metrics = d / "metrics.jsonl"
        args = [self.python, "-m", "verl_ext.apps.cli", "train", *self.train_args(name, d / "ckpt", *extra)]
        rc, text = self.sub(args, d / "train.log", {"VERL_FILE_LOGGER_PATH": str(metrics)})
        recs = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()] if metrics.exists() else []
        losses = {r["step"]: r["data"]["train/loss"] for r in recs if "train/loss" in r.get("data", {})}
        return {"rc": rc, "log": text, "losses": losses, "records": recs, "dir": d}

    # a training is fine when it ran every step with finite losses and learned
    def judge_train(self, check: Check, run: dict, learn: bool = True) -> tuple[str, str]:
        if run["rc"] != 0:
            return FAILED, f"exit code {run['rc']}"
        ls = run["losses"]
        if sorted(ls) != list(range(1, self.s.steps + 1)):
            return FAILED, f"logged steps {sorted(ls)}, expected 1..{self.s.steps}"
        if not all(math.isfinite(v) for v in ls.values()):
            return FAILED, f"non-finite loss {ls}"
        if learn and not ls[self.s.steps] < ls[1]:
            return FAILED, f"loss did not fall: step 1 {ls[1]:.4f}, step {self.s.steps} {ls[self.s.steps]:.4f}"
        for marker in ("flash-attention unavailable", "model.use_liger=True but"):
            if marker in run["log"] and check.needs:
                return FAILED, "verl-ext fell back: " + next(x for x in run["log"].splitlines() if marker in x)[-200:]
        return PASSED, f"step-1 loss {ls[1]:.4f}, step {self.s.steps} {ls[self.s.steps]:.4f}"

    def run_check(self, check: Check) -> dict:
        start = time.monotonic()
        if start - self.t0 > self.s.wall_s - 60:
            return record(check, SKIPPED, f"skipped: under a minute of the wall-clock budget left "
                                          f"(GPU_CHECK_WALL_S={self.s.wall_s}) when its turn came")
        try:
            status, detail, data, log = getattr(self, f"_run_{check.runs}")(check)
        except Exception as e:  # the harness itself broke: say so, keep going
            import traceback

            status, detail, data, log = FAILED, f"gpu_check error: {type(e).__name__}: {e}", {}, traceback.format_exc()
        rec = record(check, status, detail, seconds=round(time.monotonic() - start, 1), **data)
        if status == FAILED:
            rec["error_tail"] = error_tail(log)
        return rec

    def _overrides(self, check: Check) -> list[str]:
        strategy = default_strategy(self.m)
        o = {
            "fsdp1_sdpa": ["engine.strategy=fsdp"],
            "fsdp2_sdpa": ["engine.strategy=fsdp2"],
            "fsdp1_flash_attn": ["engine.strategy=fsdp", "model.use_remove_padding=True",
                                 "+model.override_config.attn_implementation=flash_attention_2"],
            "fsdp2_flash_attn": ["engine.strategy=fsdp2", "model.use_remove_padding=True",
                                 "+model.override_config.attn_implementation=flash_attention_2"],
            "liger": [f"engine.strategy={strategy}", "model.use_liger=True"],
            "remove_padding": [f"engine.strategy={strategy}", "model.use_remove_padding=True"],
            "gen_eval": [f"engine.strategy={strategy}", f"data.val_files={self.val_file}",
                         f"trainer.test_freq={self.s.steps}", "gen_eval.enable=true", "gen_eval.num_samples=4",
                         "gen_eval.max_new_tokens=16", "gen_eval.batch_size=4"],
        }
        return o[check.name]

    def _run_train(self, check: Check):
        run = self.train(check.name, *self._overrides(check))
        status, detail = self.judge_train(check, run)
        data = {"losses": run["losses"], "strategy": default_strategy(self.m) if check.name in (
            "liger", "remove_padding", "gen_eval") else None}
        if status == PASSED and check.name == "gen_eval":
            status, detail = self._judge_gen_eval(run, detail)
        return status, detail, {k: v for k, v in data.items() if v is not None}, run["log"]

    def _judge_gen_eval(self, run: dict, detail: str) -> tuple[str, str]:
        """val-gen/* metrics (``val-gen/accuracy`` or ``val-gen/math/accuracy``: both namings) logged
        with a val/loss record, and the step's generations written under <ckpt>/gen_eval/."""
        vals = [r for r in run["records"] if "val/loss" in r.get("data", {})]

        def pick(data: dict, what: str) -> str | None:
            return next((k for k in sorted(data) if k.startswith("val-gen/") and k.endswith("/" + what)), None)

        with_gen = [r for r in vals if pick(r["data"], "accuracy")]
        if not with_gen:
            return FAILED, f"no val-gen/*accuracy metric at a validation step (validation records: {len(vals)})"
        r = with_gen[-1]
        m = r["data"]
        folder = run["dir"] / "ckpt" / "gen_eval"
        written = [f for f in folder.rglob("*") if f.is_file() and f"step_{r['step']}" in str(f.relative_to(folder))] \
            if folder.is_dir() else []
        if not written:
            return FAILED, f"no generations for step {r['step']} under {folder}"
        shown = ", ".join(f"{k.split('/', 1)[1]} {m[k]:.3g}" for k in (pick(m, x) for x in (
            "accuracy", "format_rate", "response_length")) if k)
        return PASSED, f"{detail}; step {r['step']}: val/loss {m['val/loss']:.4f}, {shown}; {len(written)} file(s) written"

    def _run_lora_export(self, check: Check):
        s = self.s
        run = self.train(check.name, f"engine.strategy={default_strategy(self.m)}", "model.lora_rank=8",
                         "model.lora_alpha=16", "optim.lr=1e-2", f"trainer.save_freq={s.steps}")
        status, detail = self.judge_train(check, run, learn=False)
        data = {"losses": run["losses"]}
        if status != PASSED:
            return status, detail, data, run["log"]
        out = run["dir"] / "merged"
        rc, text = self.sub([self.python, "-m", "verl_ext.apps.cli", "export", str(run["dir"] / "ckpt"), "--out",
                             str(out)], run["dir"] / "export.log")
        if rc != 0:
            return FAILED, f"verl-ext export: exit code {rc}", data, text
        lora, emb, finite = weight_deltas(self.model, out)
        data.update(lora_delta=lora, embed_delta=emb)
        if not finite:
            return FAILED, "merged weights hold NaN/inf", data, text
        if not lora > 10 * max(emb, 1e-6):
            return FAILED, f"merged LoRA target weight barely differs from base ({lora:.3g}; embeddings {emb:.3g})", \
                data, text
        return PASSED, (f"{detail}; merged up_proj differs from base by {lora:.3g} (embeddings {emb:.3g}), "
                        "loads with from_pretrained"), data, text

    def _run_textcraft(self, check: Check):
        d = self.work / check.name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        device = "cuda" if self.m.cuda else "cpu"
        args = [self.python, "-m", "verl_ext.apps.cli", "eval", "textcraft", "backend.name=hf",
                f"backend.model_path={self.model}", f"+backend.options.device={device}", "episodes=1",
                "max_rounds=3", "sampling.max_new_tokens=24", "concurrency=1", "progress=false", f"out_dir={d / 'out'}"]
        rc, text = self.sub(args, d / "textcraft.log")
        if rc != 0:
            return FAILED, f"exit code {rc}", {}, text
        summary_file = d / "out" / "summary.json"
        episodes = d / "out" / "episodes.jsonl"
        if not summary_file.exists() or not episodes.exists():
            return FAILED, "no summary.json / episodes.jsonl written", {}, text
        summary = json.loads(summary_file.read_text())
        recs = [json.loads(x) for x in episodes.read_text().splitlines() if x.strip()]
        if summary.get("episodes") != 1 or len(recs) != 1:
            return FAILED, f"expected 1 episode, summary says {summary.get('episodes')}, file holds {len(recs)}", {}, text
        where = next((x.split("hf backend: ", 1)[1] for x in text.splitlines() if "hf backend: " in x and " on " in x),
                     "")
        if f" on {device}" not in where:
            return FAILED, f"the hf backend did not report running on {device} (log: {where[:120]!r})", {}, text
        rounds = len([mm for mm in recs[0].get("messages", []) if mm.get("role") == "assistant"])
        return PASSED, (f"1 episode, model on {where.split(' on ', 1)[1].split(', eos')[0]}: success "
                        f"{bool(recs[0].get('success'))}, {rounds} model turns"), {"success": recs[0].get("success")}, text

    # comparisons run after every run is done (references may finish later when jobs > 1)
    def compare(self, check: Check, rec: dict) -> dict:
        ref = self.results.get(check.reference or "")
        if rec["status"] != PASSED or not check.reference:
            return rec
        if not ref or ref["status"] != PASSED:
            rec["status"] = FAILED
            rec["detail"] += f"; reference {check.reference} did not pass, so the step-1 loss could not be compared"
            return rec
        a, b = rec["losses"][1], ref["losses"][1]
        tol = self.s.loss_rtol * max(1.0, abs(b))
        rec["loss_step1_vs"] = {"reference": check.reference, "loss": a, "reference_loss": b, "tolerance": tol}
        if abs(a - b) > tol:
            rec["status"] = FAILED
            rec["detail"] += f"; step-1 loss differs from {check.reference}'s: {a:.5f} vs {b:.5f} (tolerance {tol:.3g})"
        else:
            rec["detail"] += f"; = {check.reference}'s {b:.4f} (|diff| {abs(a - b):.2g} <= {tol:.2g})"
        return rec


def weight_deltas(base_dir: Path, merged_dir: Path) -> tuple[float, float, bool]:
    """Largest |merged - base| on a LoRA-targeted weight and on the embeddings; all merged finite."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).state_dict()
    base: dict = {}
    for f in sorted(base_dir.glob("*.safetensors")):
        base.update(load_file(str(f)))
    key = "model.layers.0.mlp.up_proj.weight"
    lora = (merged[key].float() - base[key].float()).abs().max().item()
    emb = (merged["model.embed_tokens.weight"].float() - base["model.embed_tokens.weight"].float()).abs().max().item()
    return lora, emb, all(bool(torch.isfinite(v).all()) for v in merged.values() if v.is_floating_point())


def error_tail(log: str, lines: int = 25) -> str:
    """The end of a log, starting at the last traceback when there is one."""
    rows = log.splitlines()
    for i in range(len(rows) - 1, -1, -1):
        if rows[i].startswith("Traceback"):
            rows = rows[i:]
            break
    return "\n".join(rows[-lines:])[-4000:]


# the import environment (verl-ext from this checkout, a ray stand-in, wheels to carry): its own module
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check_env import RAY_STUB, WHEELS, download_wheels, import_env  # noqa: E402,F401


# -- main -----------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="folder for gpu_check.json (default: $OUT, else outputs/gpu_check)")
    p.add_argument("--only", help=f"comma-separated checks: {','.join(CHECK_NAMES)}")
    p.add_argument("--steps", type=int, help="training steps per check (default 10 on GPU, 3 on CPU)")
    p.add_argument("--work", help="scratch folder for models, checkpoints, logs (default: a gpu_check-work folder "
                                  "in the temp dir, so that --out/$OUT holds only gpu_check.json)")
    p.add_argument("--list", action="store_true", help="print the checks and whether each can run here, then stop")
    p.add_argument("--download-wheels", metavar="DIR", help="download the wheels a bare Python 3.12 CUDA image "
                   "lacks into DIR (for GPU_CHECK_WHEELS=DIR there), then stop")
    args = p.parse_args(argv)
    if args.download_wheels:
        return download_wheels(Path(args.download_wheels))
    only = parse_only(args.only)
    out = Path(args.out or os.environ.get("OUT") or ROOT / "outputs" / "gpu_check").resolve()
    out.mkdir(parents=True, exist_ok=True)
    import tempfile

    work = Path(args.work).resolve() if args.work else Path(tempfile.mkdtemp(prefix="gpu_check-work-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    env, notes = import_env(work, os.environ.get("GPU_CHECK_RAY_STUB") == "1")
    m = probe_machine()
    s = Settings.from_env(m.cuda, args.steps)
    todo, preset = plan(m, only)
    if args.list:
        for c in checks_for(m):
            print(f"{c.name:<17} {'runs' if c in todo else preset[c.name]['detail']}  ({c.what})")
        return 0
    print(f"gpu_check: {m.cuda_why if m.cuda else 'CPU only'}; torch {m.info['torch']}, verl {m.info['verl']}, "
          f"transformers {m.info['transformers']}; {s.steps} steps, {len(todo)} checks to run, jobs {s.jobs}", flush=True)
    for n in notes:
        print(f"gpu_check: note: {n}", flush=True)
    runner = Runner(work, s, m, sys.executable, env)
    runner.t0 = t0  # the wall-clock budget counts from the script's start
    runner.model = build_model(work / f"qwen3-h{s.hidden}-l{s.layers}-bf16", s)
    runner.train_file = write_rows(work / "train.parquet", 2 * s.batch)
    runner.val_file = write_rows(work / "val.parquet", s.batch)

    def one(c: Check) -> dict:
        rec = runner.run_check(c)
        with runner.lock:
            runner.results[c.name] = rec
        return rec

    with ThreadPoolExecutor(max_workers=max(1, s.jobs)) as pool:
        list(pool.map(one, todo))
    records = []
    for c in checks_for(m):
        if c.name in runner.results:
            rec = runner.compare(c, runner.results[c.name])
            if c.name not in (only or CHECK_NAMES):
                rec["detail"] += " (run as the reference of a selected check)"
        else:
            rec = preset[c.name]
        records.append(rec)
    result = {
        "schema": 1, "machine": m.info, "cuda": m.cuda, "flash_attn": m.flash_attn_why, "liger": m.liger_why,
        "settings": dataclasses.asdict(s), "notes": notes, "selected": only or CHECK_NAMES,
        "seconds": round(time.monotonic() - t0, 1), "checks": records, "summary": summarize(records),
    }
    path = out / "gpu_check.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.rename(path)
    for rec in records:
        print(line_for(rec), flush=True)
    summ = result["summary"]
    if not args.work and not summ[FAILED] and not os.environ.get("GPU_CHECK_KEEP"):
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"gpu_check: logs, models, checkpoints kept in {work}", flush=True)
    print(f"gpu_check: {summ[PASSED]} passed, {summ[FAILED]} failed, {summ[NOT_POSSIBLE]} not possible here, "
          f"{summ[SKIPPED]} skipped in {result['seconds']:.0f} s; results: {path}", flush=True)
    return 1 if summ[FAILED] else 0


if __name__ == "__main__":
    sys.exit(main())
