"""Training data at scale: the tokenized cache vs verl 0.9.1's ``MultiTurnSFTDataset``, one run.

Seeded multi-turn conversations (``bench.dataset_build``: system prompts, tool calls, reasoning,
thinking on/off, up to ~2k tokens), real Qwen3 tokenizer. For each size, every phase runs in a fresh
process (as a rank would):

- first build, 1 process and all cores (rows/s; at large sizes the 1-process rate is measured on
  the first ``--single-rows`` rows, said so in the output);
- second start: constructing the dataset when the cache exists (wall s), then reading every item;
  peak RSS of that process and its private (anonymous) part;
- a DataLoader with 4 workers reading every item: RSS and PSS summed over the main process and
  the workers (PSS counts shared pages once);
- at the first size only, verl's ``MultiTurnSFTDataset`` on the same rows (nulls filled as verl
  needs them): construct + materialise every item once, as verl does in each epoch.

Targets (issue 10): second start < 5 s and 20k vs 200k within 2x; peak RSS not growing with rows
beyond the mapped pages; first build >= 1.8x one process on 2 cores; over two epochs >= 5x less
tokenization time than verl (which re-tokenizes every epoch).

    python -m bench.data_scale                    # 20k and 200k rows (~20 min on 2 cores)
    python -m bench.data_scale --sizes 2000 --single-rows 2000   # a quick look
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, os, sys, time
t_import = time.perf_counter()
import psutil, torch
from omegaconf import OmegaConf
from verl_ext.assets import load_qwen3_tokenizer
phase, path, cache_dir, workers, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

tok = load_qwen3_tokenizer()
out = {}
if phase == "verl":
    import contextlib, io
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
    from bench.dataset_build import data_config
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        ds = MultiTurnSFTDataset(parquet_files=[path], tokenizer=tok, config=data_config(), processor=None, max_samples=limit)
    errors = 0
    for i in range(len(ds)):
        try:
            ds[i]
        except Exception:
            errors += 1
    out = {"seconds": time.perf_counter() - t0, "rows": len(ds), "errors": errors}
else:
    from verl_ext.data.datasets import ChatSFTDataset
    cfg = OmegaConf.create({"max_length": 32768, "cache_dir": cache_dir, "cache_workers": workers,
                            "cache": "rebuild" if phase == "build" else "auto"})
    t0 = time.perf_counter()
    ds = ChatSFTDataset(path, tok, cfg, max_samples=limit)
    out["construct_s"] = time.perf_counter() - t0
    out["rows"] = ds.stats["rows"]
    out["samples"] = len(ds)
    if phase in ("read", "loader"):
        t1 = time.perf_counter()
        if phase == "read":
            for i in range(len(ds)):
                ds[i]
        else:
            from torch.utils.data import DataLoader
            loader = DataLoader(ds, batch_size=None, num_workers=4, persistent_workers=True, shuffle=False)
            for _ in loader:
                pass
            procs = [psutil.Process()] + psutil.Process().children(recursive=True)
            infos = [p.memory_full_info() for p in procs]
            out["rss_sum"] = sum(i.rss for i in infos)
            out["pss_sum"] = sum(i.pss for i in infos)
            out["workers_seen"] = len(procs) - 1
        out["read_s"] = time.perf_counter() - t1
out["peak_rss"] = status("VmHWM")
out["anon"] = status("RssAnon")
out["file_rss"] = status("RssFile")
print("RESULT " + json.dumps(out))
"""


def run_child(phase: str, path: str, cache_dir: str, workers: int = 0, limit: int = -1) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-c", CHILD, phase, path, cache_dir, str(workers), str(limit)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{phase} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def make_data(n: int, folder: str, seed: int) -> tuple[str, str]:
    from bench.dataset_build import make_conversations, verl_compatible, write_parquet

    rows = make_conversations(n, seed)
    ours = os.path.join(folder, f"rows-{n}.parquet")
    write_parquet(rows, ours)
    verl = os.path.join(folder, f"rows-{n}-verl.parquet")
    write_parquet([verl_compatible(r) for r in rows], verl)
    return ours, verl


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    p.add_argument("--sizes", default="20000,200000", help="comma-separated row counts")
    p.add_argument("--single-rows", type=int, default=20000, help="rows for the 1-process build rate at larger sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-verl", action="store_true", help="skip verl's MultiTurnSFTDataset")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    cores = len(os.sched_getaffinity(0))
    results = {}
    with tempfile.TemporaryDirectory(prefix="vx-scale-") as tmp:
        for k, n in enumerate(sizes):
            print(f"\n== {n:,} conversations ==", flush=True)
            ours, verl_file = make_data(n, tmp, args.seed)
            r: dict = {}
            single_rows = min(n, args.single_rows)
            one = run_child("build", ours, os.path.join(tmp, f"c1-{n}"), 1, single_rows if single_rows < n else -1)
            r["build_1"] = single_rows / one["construct_s"]
            all_cores = run_child("build", ours, os.path.join(tmp, f"c-{n}"), cores)
            r["build_all"] = n / all_cores["construct_s"]
            r["build_all_s"] = all_cores["construct_s"]
            read = run_child("read", ours, os.path.join(tmp, f"c-{n}"))
            loader = run_child("loader", ours, os.path.join(tmp, f"c-{n}"))
            r.update(second_start_s=read["construct_s"], read_s=read["read_s"], peak_rss=read["peak_rss"],
                     anon=read["anon"], loader_rss=loader["rss_sum"], loader_pss=loader["pss_sum"],
                     cache_bytes=_cache_bytes(os.path.join(tmp, f"c-{n}")))
            print(f"  first build, 1 process     {r['build_1']:8.0f} rows/s"
                  + (f"  (first {single_rows:,} rows)" if single_rows < n else ""))
            print(f"  first build, {cores} processes   {r['build_all']:8.0f} rows/s  ({r['build_all'] / r['build_1']:.2f}x one process; "
                  f"{r['build_all_s']:.1f} s)")
            print(f"  second start               {r['second_start_s']:8.2f} s   (reading every item after it: {r['read_s']:.1f} s)")
            print(f"  one rank, every item read  peak RSS {gib(r['peak_rss'])}, private {gib(r['anon'])} "
                  f"(cache file {gib(r['cache_bytes'])})")
            print(f"  DataLoader, 4 workers      RSS sum {gib(r['loader_rss'])}, PSS sum {gib(r['loader_pss'])}")
            if k == 0 and not args.no_verl:
                v = run_child("verl", verl_file, "", 0, -1)
                r["verl_s"], r["verl_rss"] = v["seconds"], v["peak_rss"]
                ours_two_epochs = r["build_all_s"] + 2 * r["read_s"]
                print(f"  verl MultiTurnSFTDataset   {n / v['seconds']:8.0f} rows/s per epoch ({v['seconds']:.1f} s, "
                      f"{v['errors']} rows raised), peak RSS {gib(v['peak_rss'])}")
                print(f"  two epochs of tokenization verl {2 * v['seconds']:.1f} s vs verl-ext {ours_two_epochs:.1f} s "
                      f"(build + 2 reads): {2 * v['seconds'] / ours_two_epochs:.1f}x less")
            results[n] = r
        if len(sizes) > 1:
            a, b = results[sizes[0]], results[sizes[-1]]
            print(f"\n{sizes[-1]:,} vs {sizes[0]:,} rows: second start {b['second_start_s'] / a['second_start_s']:.2f}x, "
                  f"private memory of a rank {b['anon'] / a['anon']:.2f}x, cache file {b['cache_bytes'] / a['cache_bytes']:.1f}x")
    return 0


def _cache_bytes(root: str) -> int:
    folders = [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
    return os.path.getsize(os.path.join(root, folders[0], "data.arrow"))


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"\n(bench wall time {time.time() - t0:.0f} s)")
    sys.exit(rc)
