"""Size ``verl-ext demo`` to a time budget from this machine's measured speed.

A probe (~10-40 s) measures what the demo's stages are made of, on this machine, in the compute
dtype chosen for it (``seam.precision``):

* training: forward+backward tokens/s of one training process while all of them run at once
  (``cores // processes`` threads each);
* generation, on each evaluation backend present (``hf``; the SGLang server where its CPU venv
  exists): prefill tokens/s and the decode step time at two batch sizes, on real TextCraft prompts;
* start-up: importing torch + transformers and loading the model (every stage is a fresh process).

``plan()`` turns that into a ``Size`` (SFT steps, TextCraft episodes x rounds, math problems) and a
per-stage ETA: the largest evaluation on the ladder that leaves at least ``MIN_STEPS`` SFT steps and
takes at most half the budget. After the "before" evaluation, ``replan_steps()`` sizes SFT again
from what that evaluation really took (the "after" one costs about the same), so errors in the
probe's estimate of generation end up in the number of steps, not in the finishing time.

The cost model is plain arithmetic over the probe's numbers and a few constants measured on 2-core
machines (see ``_SFT_FIXED`` etc.); everything in here but ``probe_*`` is pure and unit-tested.
"""
from __future__ import annotations

import asyncio
import math
import os
import queue
import time
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class Size:
    tc_episodes: int
    tc_rounds: int
    tc_tokens: int
    math_problems: int
    math_tokens: int
    math_train: int
    tc_train: int
    steps: int
    batch: int
    max_length: int


SMALL = Size(tc_episodes=2, tc_rounds=2, tc_tokens=16, math_problems=4, math_tokens=16,
             math_train=8, tc_train=8, steps=2, batch=4, max_length=2048)
# (TextCraft episodes, rounds per episode, math problems), smallest first; 64 new tokens per turn /
# answer (the expert's turns are ~43 tokens, at most 64; a trained model answers math in ~20)
LADDER = ((4, 4, 8), (6, 5, 12), (8, 6, 16), (10, 6, 24), (12, 8, 32), (15, 10, 32))
TURN_TOKENS = 64
MATH_TOKENS = 64
BATCH = 8
PROCS = 2
MIN_STEPS = 16  # below ~12 steps (lr 1e-4, batch 8) SmolLM2 neither follows TextCraft's format nor boxes answers
FLOOR_STEPS = 8  # what a budget too small still gets (the plan says it will run over)
MAX_STEPS = 60
TC_ROW_TOKENS = 490  # mean tokens of the shallowest TextCraft trajectories the demo trains on
MATH_ROW_TOKENS = 100
TC_PROMPT_TOKENS = 300  # system + first observation
TC_TURN_TOKENS = 80  # one action + its observation: what each later round prefills
MATH_PROMPT_TOKENS = 110
# fixed costs in units of the probe's start-up time (a process importing torch + transformers and
# loading the model; ~6 s on the 2-core machines measured), plus seconds
_EVAL_FIXED = (1.3, 2.0)  # an evaluation process: start-up, data, report
_SFT_FIXED = (4.0, 10.0)  # torchrun, 2 ranks importing verl, FSDP init, the first step's warm-up, the checkpoint
_EXPORT_FIXED = (2.5, 5.0)  # load the checkpoint shards, merge, save
_DATA_S = (1.0, 4.0)  # TextCraft conversion + the training parquet
# what a verl step costs per token beyond the probe's forward+backward, in seconds per token per rank:
# the loss and metrics over the vocabulary in fp32, FSDP's casts and gloo collectives, AdamW. Measured
# (2 ranks, SmolLM2, the demo's rows): 41 s/step at 36 tok/s probed (fp32, no native bf16) and 22-24 s
# at 103 tok/s (bf16, AMX) -> 0.0074 and 0.0106; it hardly depends on the matmul speed.
_TOKEN_OVERHEAD_S = 0.009
_SERVER_START = 40.0  # an SGLang CPU server's start when the probe did not time one


@dataclass(frozen=True)
class GenSpeed:
    """Generation on one backend: ``prefill_tok_s`` and a decode step of ``d0 + d1 * batch`` seconds."""

    backend: str
    prefill_tok_s: float
    d0: float
    d1: float
    start_s: float = 0.0  # launching it (an SGLang server), per evaluation

    def step_s(self, batch: int) -> float:
        return self.d0 + self.d1 * batch


@dataclass(frozen=True)
class Speed:
    dtype: str
    train_tok_s: float  # one training process, forward + backward
    startup_s: float
    gen: GenSpeed
    others: tuple[GenSpeed, ...] = ()  # backends measured and not chosen
    cores: int = 2


def _fixed(c: tuple[float, float], speed: Speed) -> float:
    return c[0] * speed.startup_s + c[1]


def tc_eval_s(episodes: int, rounds: int, speed: Speed) -> float:
    """Every episode playing every round (the untrained model rarely finishes early), prefix reuse on."""
    g = speed.gen
    t = 0.0
    for r in range(rounds):
        t += episodes * (TC_PROMPT_TOKENS if r == 0 else TC_TURN_TOKENS) / g.prefill_tok_s
        t += TURN_TOKENS * g.step_s(episodes) * (1 + 0.1 * r)  # decode slows as the context grows
    return t + _fixed(_EVAL_FIXED, speed) + g.start_s


def math_eval_s(problems: int, speed: Speed) -> float:
    g = speed.gen
    return (problems * MATH_PROMPT_TOKENS / g.prefill_tok_s + MATH_TOKENS * g.step_s(problems)
            + _fixed(_EVAL_FIXED, speed))


def step_s(speed: Speed, batch: int = BATCH) -> float:
    tokens_per_rank = batch * (TC_ROW_TOKENS + MATH_ROW_TOKENS) / 2 / PROCS
    return tokens_per_rank * (1 / speed.train_tok_s + _TOKEN_OVERHEAD_S)


def export_s(speed: Speed) -> float:
    return _fixed(_EXPORT_FIXED, speed)


def sft_s(steps: int, speed: Speed) -> float:
    """SFT (start-up, steps, checkpoint) and the export after it."""
    return _fixed(_SFT_FIXED, speed) + steps * step_s(speed) + export_s(speed)


def train_rows(steps: int, batch: int = BATCH) -> int:
    """Rows per source (TextCraft, math): at least one epoch's worth for ``steps``, at least 32."""
    return max(32, math.ceil(steps * batch / 2))


def size_for(level: tuple[int, int, int], steps: int) -> Size:
    e, r, p = level
    n = train_rows(steps)
    return Size(tc_episodes=e, tc_rounds=r, tc_tokens=TURN_TOKENS, math_problems=p, math_tokens=MATH_TOKENS,
                math_train=n, tc_train=n, steps=steps, batch=BATCH, max_length=2048)


@dataclass(frozen=True)
class Plan:
    size: Size
    eta: dict[str, float]  # stage -> seconds, in order
    budget_s: float
    fits: bool

    @property
    def total_s(self) -> float:
        return sum(self.eta.values())

    def lines(self, speed: Speed) -> list[str]:
        s = self.size
        g = speed.gen
        out = [
            f"budget {fmt_s(self.budget_s)}; this machine: {speed.cores} cores, compute {speed.dtype}, "
            f"training {speed.train_tok_s:.0f} tok/s per process ({step_s(speed):.0f}s per step), "
            f"{g.backend} generation: prefill {g.prefill_tok_s:.0f} tok/s, decode step "
            f"{g.step_s(1) * 1e3:.0f} ms at batch 1, {g.step_s(16) * 1e3:.0f} ms at 16",
        ]
        for o in speed.others:
            out.append(f"  (also measured {o.backend}: prefill {o.prefill_tok_s:.0f} tok/s, decode step "
                       f"{o.step_s(16) * 1e3:.0f} ms at 16; slower for this demo)")
        out.append(f"plan: TextCraft {s.tc_episodes} episodes x {s.tc_rounds} rounds, math {s.math_problems} "
                   f"problems, SFT {s.steps} steps x {s.batch} rows ({s.tc_train} TextCraft + {s.math_train} math rows)")
        out += [f"  {name:<22} ~{fmt_s(t)}" for name, t in self.eta.items()]
        verdict = "fits" if self.fits else "does NOT fit: the smallest meaningful demo runs over it"
        out.append(f"  {'total':<22} ~{fmt_s(self.total_s)} ({verdict})")
        return out


def fmt_s(t: float) -> str:
    t = max(0, int(round(t)))
    return f"{t // 60}m{t % 60:02d}s" if t >= 60 else f"{t}s"


def _eta(level: tuple[int, int, int], steps: int, speed: Speed, spent_s: float) -> dict[str, float]:
    e, r, p = level
    ev = tc_eval_s(e, r, speed) + math_eval_s(p, speed)
    eta = {"probe + data": spent_s + _fixed(_DATA_S, speed), "eval before": ev,
           "SFT + export": sft_s(steps, speed), "eval after": ev}
    return eta


def plan(budget_s: float, speed: Speed, spent_s: float = 0.0) -> Plan:
    """The largest evaluation on the ladder with >= MIN_STEPS steps, evaluations <= half the budget;
    steps fill what is left (<= MAX_STEPS). If nothing fits, the smallest level at FLOOR_STEPS+."""
    per_step = step_s(speed)
    for level in reversed(LADDER):
        eta = _eta(level, 0, speed, spent_s)
        evals = eta["eval before"] + eta["eval after"]
        steps = int((budget_s - sum(eta.values())) // per_step)
        if steps >= MIN_STEPS and evals <= budget_s / 2:
            steps = min(steps, MAX_STEPS)
            return Plan(size_for(level, steps), _eta(level, steps, speed, spent_s), budget_s, True)
    level = LADDER[0]
    steps = max(FLOOR_STEPS, int((budget_s - sum(_eta(level, 0, speed, spent_s).values())) // per_step))
    eta = _eta(level, steps, speed, spent_s)
    return Plan(size_for(level, steps), eta, budget_s, sum(eta.values()) <= budget_s)


def replan_steps(p: Plan, speed: Speed, elapsed_s: float, eval_s: float) -> Plan:
    """After the "before" evaluation took ``eval_s`` (elapsed ``elapsed_s`` in all): the steps that
    leave room for an "after" evaluation as long, within FLOOR_STEPS..MAX_STEPS."""
    steps = max(FLOOR_STEPS, min(MAX_STEPS, int(_left_for_steps(p.budget_s, speed, elapsed_s, eval_s) // step_s(speed))))
    eta = {"so far": elapsed_s, "SFT + export": sft_s(steps, speed), "eval after": eval_s}
    n = train_rows(steps)
    return Plan(replace(p.size, steps=steps, tc_train=n, math_train=n), eta, p.budget_s,
                sum(eta.values()) <= p.budget_s)


def steps_budget_s(budget_s: float, speed: Speed, elapsed_s: float, eval_s: float) -> float:
    """The seconds SFT's steps may take (``trainer.time_budget_s``) so that SFT's start-up, export and an
    "after" evaluation as long as the "before" one still fit; at least FLOOR_STEPS estimated steps."""
    return max(_left_for_steps(budget_s, speed, elapsed_s, eval_s), FLOOR_STEPS * step_s(speed))


def _left_for_steps(budget_s: float, speed: Speed, elapsed_s: float, eval_s: float) -> float:
    return budget_s - elapsed_s - eval_s - sft_s(0, speed)


# ---- the probe (I/O and time: not unit-tested beyond a smoke run) ----

def _train_rate(model_path: str, dtype_name: str, threads: int, tokens: int, barrier, out) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=getattr(torch, dtype_name), attn_implementation="sdpa")
    model.train()
    ids = torch.randint(0, model.config.vocab_size, (1, tokens // 4))
    model(input_ids=ids, labels=ids).loss.backward()  # warm-up: the kernels' first-call set-up
    model.zero_grad(set_to_none=True)
    ids = torch.randint(0, model.config.vocab_size, (1, tokens))
    barrier.wait()  # every process times at once, as the training ranks run
    t0 = time.perf_counter()
    model(input_ids=ids, labels=ids).loss.backward()
    out.put(tokens / (time.perf_counter() - t0))


def probe_training(model_path: Path, dtype, threads: int, procs: int = PROCS, tokens: int = 256) -> float:
    """Forward+backward tokens/s of one training process while ``procs`` of them run at once on
    ``threads`` threads each (the slowest one's): processes on one machine share memory bandwidth
    and, with two hyper-threads on a core, its matrix units. ~10 s where training runs at 40 tok/s."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    name = str(dtype).replace("torch.", "")
    workers = [ctx.Process(target=_train_rate, args=(str(model_path), name, threads, tokens, barrier, out))
               for _ in range(procs)]
    for w in workers:
        w.start()
    rates: list[float] = []
    try:
        deadline = time.monotonic() + 600
        while len(rates) < procs:
            try:
                rates.append(out.get(timeout=1))
            except queue.Empty:
                failed = [w.exitcode for w in workers if w.exitcode not in (None, 0)]
                if failed or time.monotonic() > deadline:
                    raise RuntimeError(f"the training probe failed (exit codes {failed or 'none: timed out'})")
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
    return min(rates)


async def _timed(backend, convs: list[list[dict]], new_tokens: int) -> tuple[float, int]:
    from verl_ext_eval.backends.base import SamplingParams

    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
    t0 = time.perf_counter()
    gens = await asyncio.gather(*(backend.chat(c, params) for c in convs))
    return time.perf_counter() - t0, max(g.num_tokens for g in gens)


def probe_generation(backend, convs: list[list[dict]], prompt_tokens: int, new_tokens: int = 17,
                     batches: tuple[int, int] = (2, 8), start_s: float = 0.0) -> GenSpeed:
    """Prefill and decode speed of ``backend`` on real prompts (``prompt_tokens`` each, about): at each
    batch size, the prompts once with 1 new token (prefill), then again with ``new_tokens`` (the
    prefix is reused: decode). Prompts are distinct per batch size, so nothing is cached across."""
    async def run():
        out = []
        at = 0
        for b in batches:
            group = convs[at:at + b]
            at += b
            prefill, _ = await _timed(backend, group, 1)
            decode, steps = await _timed(backend, group, new_tokens)
            out.append((b, prefill, decode / max(1, steps)))
        return out

    (b1, p1, s1), (b2, p2, s2) = asyncio.run(run())
    prefill_tok_s = (b2 - b1) * prompt_tokens / max(p2 - p1, 1e-3) if p2 > p1 else b2 * prompt_tokens / p2
    d1 = max(0.0, (s2 - s1) / (b2 - b1))
    return GenSpeed(backend.name, prefill_tok_s, max(1e-3, s1 - d1 * b1), d1, start_s)


def probe_startup(model_path: Path) -> float:
    """Seconds to import torch + transformers and load the model here (imports counted once: the
    caller times the import; this adds a cold model load)."""
    import torch  # noqa: F401
    from transformers import AutoModelForCausalLM

    t0 = time.perf_counter()
    AutoModelForCausalLM.from_pretrained(str(model_path))
    return time.perf_counter() - t0


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
