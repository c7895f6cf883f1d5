"""Converter throughput and peak memory: ours (streaming) vs a straightforward pandas version.

Two workloads, generated locally first (seeded):
- openmath: 1,000,000 OpenMathReasoning-like rows (Parquet, ~2 KB of text per row), pass-rate
  label filter at 0.1 with prompt/response/messages output.
- fast_math_r1: 20,000 Fast-Math-R1-like rows (R1-style traces, log-normal lengths), full
  preprocess: think tags, boxed answers, token filter (Qwen3 tokenizer, 24,000 tokens), split.
Each variant runs in its own subprocess; peak memory is that process's max RSS. Ratios come
from the same run on the same machine.

    python -m bench.converters                 # full size (~4-5 min on 2 cores)
    python -m bench.converters --scale 0.05    # quick look
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

THRESHOLD = 0.1
MAX_TOKENS = 24000
WORDS = ("the let we so thus hence equation integer prime divisible sum product modulo triangle circle "
         "angle area root polynomial coefficient factor square cube sequence limit derivative solve "
         "find compute consider case since therefore wait hmm check again 0 1 2 3 4 5 6 7 8 9 10 12 "
         "x y z n k m a b c = + - * / ^ \\frac{1}{2} \\sqrt{3} (x+1) f(x) \\cdot \\le \\ge").split()


_CORPUS: dict[int, bytes] = {}


def _corpus(seed: int, words: int = 8_000_000) -> bytes:
    """~45 MB of random words (ASCII, so any byte offset is a character boundary)."""
    if seed not in _CORPUS:
        rng = np.random.default_rng(seed)
        _CORPUS[seed] = " ".join(np.array(WORDS)[rng.integers(0, len(WORDS), size=words)]).encode()
    return _CORPUS[seed]


def _texts(rng: np.random.Generator, n: int, mean_chars: int, spread: float = 0.5) -> pa.Array:
    """``n`` different texts with log-normal lengths: consecutive slices of the corpus, rotated
    at a random point (built from buffers: fast for millions of rows)."""
    lengths = np.clip(rng.lognormal(np.log(mean_chars) - spread**2 / 2, spread, size=n), 16, 400_000).astype(np.int64)
    base = _corpus(0)
    need = int(lengths.sum())
    rot = int(rng.integers(0, len(base)))
    data = (base[rot:] + base[:rot]) * (need // len(base) + 1)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data[:need])).cast(pa.string())


def make_openmath(path: Path, n: int, seed: int = 0, group: int = 100_000) -> None:
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, n, group):
        m = min(group, n - start)
        ptype = rng.choice(["has_answer_extracted", "no_answer_extracted", "converted_proof"], size=m, p=[0.7, 0.2, 0.1])
        k = rng.integers(0, 33, size=m)
        rate = np.array([f"{x / 32:.5f}".rstrip("0").rstrip(".") if x % 32 else f"{x // 32}.0" for x in k], dtype=object)
        rate[ptype != "has_answer_extracted"] = "n/a"
        junk = rng.random(m) < 0.001
        rate[junk] = rng.choice(["", "abc", None], size=int(junk.sum()))
        ids = pa.array(np.arange(start, start + m)).cast(pa.string())
        table = pa.table({
            "expected_answer": pc.cast(pa.array(rng.integers(0, 1000, size=m)), pa.string()),
            "problem_type": pa.array(ptype), "problem_source": pa.array(rng.choice(["aops_c4", "aops_c6"], size=m)),
            "generation_model": pa.array(["DeepSeek-R1"] * m), "pass_rate_72b_tir": pa.array(list(rate), pa.string()),
            "problem": pc.binary_join_element_wise(pa.array(["Problem "] * m), ids, _texts(rng, m, 250), ""),
            "generated_solution": pc.binary_join_element_wise(pa.array(["<think>\n"] * m), _texts(rng, m, 2000),
                                                              pa.array(["\n</think>\n\nSo \\boxed{7}."] * m), ""),
            "inference_mode": pa.array(["cot"] * m), "used_in_kaggle": pa.array(rng.random(m) < 0.1),
        })
        if writer is None:
            writer = pq.ParquetWriter(str(path), table.schema, compression="snappy",
                                      use_dictionary=["problem_type", "problem_source", "generation_model", "inference_mode"])
        writer.write_table(table)
    writer.close()


def make_fast_math_r1(path: Path, n: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    tags = np.array(["<think>", "＜think＞", "<THINK>", "< think >", ""], dtype=object)[rng.integers(0, 5, size=n)]
    closes = np.array(["</think>", "＜/think＞", "</ think>"], dtype=object)[rng.integers(0, 3, size=n)]
    trace = _texts(rng, n, 5000, spread=0.8).to_pylist()
    rows = {"problem": [f"Problem {i}: " + t for i, t in enumerate(_texts(rng, n, 250).to_pylist())],
            "generation": [f"{o}\n{t}\n{c}\n\nThe answer is $\\boxed{{{i % 97}}}$."
                           for i, (o, t, c) in enumerate(zip(tags, trace, closes))],
            "answer": [str(i % 97) for i in range(n)]}
    pq.write_table(pa.table(rows), str(path), compression="snappy")


# ---- variants (each runs in a fresh subprocess) ----------------------------------------------

def ours_openmath(src: Path, out: Path) -> int:
    from data_converters import open_math_reasoning as omr
    from data_converters.openmath_rows import plan_files

    return omr.run(plan_files([src]), out, omr.Options(threshold=THRESHOLD)).kept_total


def _parse_rate(value):
    try:
        rate = float(value)
    except (TypeError, ValueError):
        return None
    return rate if 0.0 <= rate <= 1.0 else None


def pandas_openmath(src: Path, out: Path) -> int:
    import pandas as pd

    df = pd.read_parquet(src)
    rates = df["pass_rate_72b_tir"].apply(_parse_rate)
    keep = (df["problem_type"] == "has_answer_extracted") & rates.notna() & (rates <= THRESHOLD)
    df = df[keep].copy()
    df["pass_rate"] = rates[keep].astype(float)
    df["prompt"], df["response"], df["answer"] = df["problem"], df["generated_solution"], df["expected_answer"]
    df["messages"] = [[{"role": "user", "content": p}, {"role": "assistant", "content": s}]
                      for p, s in zip(df["problem"], df["generated_solution"])]
    df["data_source"] = "openmath"
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "train.parquet", index=False)
    return len(df)


def ours_fast_math_r1(src: Path, out: Path, byte_bound: bool = True) -> int:
    from data_converters import fast_math_r1 as fm
    from data_converters.token_count import TokenCounter

    counter = TokenCounter()
    counter.byte_bound = counter.byte_bound and byte_bound
    opts = fm.Options(unwrap_boxed=True, max_tokens=MAX_TOKENS, val_ratio=0.1)
    s = fm.convert_files("fast_math_r1", [src], fm.make_transform(opts, counter), out, fm.schema("inline"),
                         ("train", "validation"), 1024)
    return s.kept_total


def pandas_fast_math_r1(src: Path, out: Path) -> int:
    import pandas as pd
    from transformers import AutoTokenizer

    from data_converters import fast_math_r1 as fm
    from data_converters.pipeline import Kept
    from data_converters.token_count import default_tokenizer_dir

    tok = AutoTokenizer.from_pretrained(str(default_tokenizer_dir()))
    opts = fm.Options(unwrap_boxed=True, max_tokens=MAX_TOKENS, val_ratio=0.1)
    df = pd.read_parquet(src)
    converted = df.apply(lambda r: fm.convert_record(r.to_dict(), opts), axis=1)
    df = df[converted.apply(lambda o: isinstance(o, Kept))]
    rows = pd.DataFrame([o.row for o in converted if isinstance(o, Kept)])
    rows["split"] = [fm.split_of(p, opts.val_ratio, opts.seed) for p in rows["prompt"]]
    n_tokens = (rows["prompt"] + "\n" + rows["response"]).apply(lambda t: len(tok(t)["input_ids"]))
    rows = rows[n_tokens <= MAX_TOKENS]
    out.mkdir(parents=True, exist_ok=True)
    for split, part in rows.groupby("split"):
        part.drop(columns="split").to_parquet(out / f"{split}.parquet", index=False)
    return len(rows)


VARIANTS = {
    "openmath/ours": ("openmath", ours_openmath),
    "openmath/pandas": ("openmath", pandas_openmath),
    "fast_math_r1/ours": ("fast_math_r1", ours_fast_math_r1),
    "fast_math_r1/ours-no-byte-bound": ("fast_math_r1", lambda s, o: ours_fast_math_r1(s, o, byte_bound=False)),
    "fast_math_r1/pandas": ("fast_math_r1", pandas_fast_math_r1),
}


def _peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM belongs to the process image (ru_maxrss survives exec and
    would report the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _child(name: str, src: Path, out: Path) -> None:
    start = time.perf_counter()
    kept = VARIANTS[name][1](src, out)
    seconds = time.perf_counter() - start
    peak = _peak_rss_mib()
    print(json.dumps({"variant": name, "seconds": seconds, "kept": kept, "peak_rss_mib": peak}))


def _run_variant(name: str, src: Path, out: Path, rows: int) -> dict:
    proc = subprocess.run([sys.executable, "-m", "bench.converters", "--child", name, str(src), str(out)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["rows_per_s"] = rows / result["seconds"]
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n")[-1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the full row counts")
    p.add_argument("--variants", default=",".join(v for v in VARIANTS if "no-byte-bound" not in v),
                   help=f"comma-separated subset of {', '.join(VARIANTS)}")
    p.add_argument("--workdir", type=Path, default=None, help="where inputs/outputs go (default: a temp dir)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    p.add_argument("--child", nargs=3, metavar=("VARIANT", "SRC", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-converters-"))
    work.mkdir(parents=True, exist_ok=True)
    sizes = {"openmath": int(1_000_000 * args.scale), "fast_math_r1": int(20_000 * args.scale)}
    makers = {"openmath": make_openmath, "fast_math_r1": make_fast_math_r1}
    results = []
    try:
        for workload in ("openmath", "fast_math_r1"):
            names = [v for v in args.variants.split(",") if VARIANTS[v][0] == workload]
            if not names:
                continue
            src = work / f"{workload}.parquet"
            t0 = time.perf_counter()
            makers[workload](src, sizes[workload])
            print(f"{workload}: generated {sizes[workload]} rows, {src.stat().st_size / 2**20:.0f} MiB on disk, "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            for name in names:
                r = _run_variant(name, src, work / name.replace("/", "_"), sizes[workload])
                r["rows"] = sizes[workload]
                results.append(r)
                print(f"  {name:34s} {r['seconds']:8.1f} s {r['rows_per_s']:10.0f} rows/s "
                      f"peak {r['peak_rss_mib']:7.0f} MiB  kept {r['kept']}", flush=True)
                shutil.rmtree(work / name.replace("/", "_"), ignore_errors=True)
        by = {r["variant"]: r for r in results}
        for workload in ("openmath", "fast_math_r1"):
            ours, base = by.get(f"{workload}/ours"), by.get(f"{workload}/pandas")
            if ours and base:
                print(f"{workload}: ours/pandas throughput x{base['seconds'] / ours['seconds']:.2f}, "
                      f"peak memory {ours['peak_rss_mib']:.0f} vs {base['peak_rss_mib']:.0f} MiB")
        if args.json:
            args.json.write_text(json.dumps({"scale": args.scale, "cpus": os.cpu_count(), "results": results}, indent=2))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
