"""Math evaluation runner: generate with any backend, grade, write per-sample JSONL and a summary.

    python -m verl_ext_eval.math backend.name=hf backend.model_path=/path/to/model limit=20 out_dir=outputs/math

Problems come from ``data.path`` (JSONL/JSON/Parquet, MATH- or GSM8K-style) or the bundled
offline set. Many requests are in flight at once (``concurrency``); each graded sample is appended
to ``out_dir/samples.jsonl`` (fsynced) as it finishes, keyed ``<problem id>#<sample index>``, so a
killed run resumes where it stopped without duplicates. At the end: ``summary.json``,
``report.md`` and charts via ``verl_ext_eval.report`` (accuracy by subject/level, pass@k).
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
import zlib
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from verl_ext_eval.backends.base import Backend, Generation, SamplingParams
from verl_ext_eval.math.config import MathEvalConfig, RunConfigError
from verl_ext_eval.math.grading import MathGrader, default_workers
from verl_ext_eval.math.metrics import SampleScore, answer_reward, format_ok, summarize
from verl_ext_eval.math.problems import Problem, load_problems
from verl_ext_eval.math.prompts import PromptSpec, build_messages, render_prompt, resolve_prompt

logger = logging.getLogger(__name__)

SAMPLES_FILE = "samples.jsonl"
RUN_CONFIG_FILE = "run_config.json"


@dataclass(frozen=True)
class WorkItem:
    key: str
    problem: Problem
    sample: int


def sample_key(problem_id: str, sample: int) -> str:
    return f"{problem_id}#{sample}"


def sample_seed(base: int | None, problem_id: str, sample: int) -> int | None:
    """A seed per (problem, sample), stable across runs and resumes."""
    if base is None:
        return None
    return (base * 1_000_003 + zlib.crc32(problem_id.encode("utf-8")) * 131 + sample) % (2**31 - 1)


def plan(problems: list[Problem], n_samples: int, done: set) -> list[WorkItem]:
    return [WorkItem(sample_key(p.id, s), p, s) for p in problems for s in range(n_samples)
            if sample_key(p.id, s) not in done]


def pass_ks(cfg: MathEvalConfig) -> list[int]:
    ks = sorted(set(cfg.pass_k or [1, cfg.n_samples]))
    bad = [k for k in ks if not 1 <= k <= cfg.n_samples]
    if bad:
        raise RunConfigError(f"pass_k={ks}: each k must be between 1 and n_samples={cfg.n_samples}")
    return ks


def _fingerprint(cfg: MathEvalConfig, spec: PromptSpec) -> dict:
    """What must not change between a run and its resume (limit, n_samples, concurrency may)."""
    return {"data": asdict(cfg.data), "backend": {"name": cfg.backend.name, "model_path": cfg.backend.model_path,
            "base_url": cfg.backend.base_url, "chat_template": cfg.backend.chat_template}, "sampling": asdict(cfg.sampling),
            "prompt": {"template": spec.template, "system": spec.system, "mode": cfg.prompt.mode,
                       "enable_thinking": cfg.prompt.enable_thinking}}


def check_resume(out_dir: Path, fingerprint: dict, has_samples: bool, resume: bool) -> None:
    from verl_ext.io import atomic_write

    path = out_dir / RUN_CONFIG_FILE
    if has_samples and not resume:
        raise RunConfigError(f"{out_dir / SAMPLES_FILE} already has samples and resume=false; "
                             "choose another out_dir or delete it")
    if has_samples and path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = sorted(f"{k}.{kk}" for k in fingerprint for kk in fingerprint[k]
                      if old.get(k, {}).get(kk) != fingerprint[k][kk])
        if diff:
            raise RunConfigError(f"{out_dir} holds samples of a different run (changed: {', '.join(diff)}); "
                                 "use another out_dir to keep both, or delete it to start over")
    atomic_write(path, json.dumps(fingerprint, indent=2, ensure_ascii=False) + "\n")


def make_backend_from_config(cfg: MathEvalConfig) -> Backend:
    import inspect

    from verl_ext_eval.backends import backend_class, make_backend

    b = cfg.backend
    if b.model_path is None and b.base_url is None:
        raise RunConfigError(f"backend.name={b.name} needs backend.model_path=DIR (or backend.base_url=URL "
                             "for a running server)")
    params = inspect.signature(backend_class(b.name).__init__).parameters
    kwargs: dict[str, Any] = dict(b.options)
    if b.model_path is not None:
        kwargs["path" if "path" in params and "model_path" not in params else "model_path"] = b.model_path
    if b.base_url is not None:
        kwargs["base_url"] = b.base_url
    if b.chat_template is not None:
        kwargs["chat_template"] = b.chat_template
    if cfg.prompt.enable_thinking is not None and "chat_template_kwargs" in params:
        kwargs.setdefault("chat_template_kwargs", {})["enable_thinking"] = cfg.prompt.enable_thinking
    return make_backend(b.name, **kwargs)


def _record(item: WorkItem, gen: Generation, grade, cfg: MathEvalConfig) -> dict:
    p = item.problem
    formatted = format_ok(gen.text, cfg.grading.expect_think)
    return {
        "key": item.key, "id": p.id, "sample": item.sample, "subject": p.subject, "level": p.level,
        "source": p.source, "gold": p.answer, "response": gen.text, "extracted": grade.extracted,
        "extract_method": grade.extract_method, "correct": grade.correct, "reason": grade.reason,
        "timed_out": grade.timed_out, "grade_seconds": round(grade.seconds, 6), "formatted": formatted,
        "reward": answer_reward(grade.correct, formatted, cfg.grading.format_penalty),
        "num_tokens": gen.num_tokens, "finish_reason": gen.finish_reason, "entropy": gen.entropy,
    }


async def _generate_all(cfg: MathEvalConfig, spec: PromptSpec, backend: Backend, grader: MathGrader,
                        todo: list[WorkItem], results, progress: bool) -> None:
    """Generation coroutines feed a queue; one consumer grades what has arrived in one batch (in a
    thread: grading must not block the event loop) and appends the records."""
    from concurrent.futures import ThreadPoolExecutor

    queue: asyncio.Queue = asyncio.Queue()
    gate = asyncio.Semaphore(max(1, cfg.concurrency))
    loop = asyncio.get_running_loop()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="math eval", unit="sample")

    async def one(item: WorkItem) -> None:
        s = cfg.sampling
        params = SamplingParams(max_new_tokens=s.max_new_tokens, temperature=s.temperature, top_p=s.top_p,
                                stop=tuple(s.stop), seed=sample_seed(s.seed, item.problem.id, item.sample),
                                logprobs=s.logprobs)
        try:
            async with gate:
                if cfg.prompt.mode == "complete":
                    gen = await backend.complete(render_prompt(spec.template, item.problem.problem), params)
                else:
                    gen = await backend.chat(build_messages(spec, item.problem.problem), params)
            await queue.put((item, gen))
        except BaseException as e:
            await queue.put((item, e))
            raise

    async def consume(total: int) -> None:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="math-grade") as pool:
            seen = 0
            while seen < total:
                batch = [await queue.get()]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                seen += len(batch)
                failed = [x for x in batch if isinstance(x[1], BaseException)]
                ok = [x for x in batch if not isinstance(x[1], BaseException)]
                if ok:
                    pairs = [(gen.text, item.problem.answer) for item, gen in ok]
                    grades = await loop.run_in_executor(pool, grader.grade_many, pairs)
                    for (item, gen), grade in zip(ok, grades):
                        results.append(_record(item, gen, grade, cfg))
                if bar is not None:
                    bar.update(len(batch))
                if failed:
                    return  # the generation error is raised by gather below

    consumer = asyncio.ensure_future(consume(len(todo)))
    try:
        await asyncio.gather(*(one(item) for item in todo))
        await consumer
    finally:
        if not consumer.done():
            consumer.cancel()
        if bar is not None:
            bar.close()


def _group_section(title: str, field: str, groups: dict[str, dict], ks: list[int]):
    from verl_ext_eval.report import Section

    cols = ("n_samples", "n_problems", "accuracy", "accuracy_ci95", "format_rate", "format_rate_ci95", "mean_tokens",
            *(f"pass@{k}" for k in ks))
    rows = tuple((g, *(m.get(c) for c in cols)) for g, m in groups.items())
    return Section(title, (field, *cols), rows, chart=(field, "accuracy"))


def summarize_records(records: list[dict], ks: list[int], format_penalty: float) -> tuple[dict, list]:
    """Summary dict + report sections for ``verl_ext_eval.report.write_summary``. Breakdowns are lists of
    rows in the JSON (the markdown shows them as tables, not as flattened keys)."""
    from verl_ext_eval.report import rate_table

    samples = [SampleScore(r["id"], bool(r["correct"]), bool(r["formatted"]), r.get("num_tokens"),
                           r.get("entropy"), r.get("subject"), r.get("level")) for r in records]
    full = summarize(samples, ks, format_penalty)
    summary: dict[str, Any] = {
        "overall": full["overall"],
        "by_subject": [{"subject": g, **m} for g, m in full["by_subject"].items()],
        "by_level": [{"level": g, **m} for g, m in full["by_level"].items()],
        "extract_methods": dict(Counter(r["extract_method"] for r in records)),
        "grade_reasons": dict(Counter(r["reason"] for r in records)),
        "grading_timeouts": sum(bool(r["timed_out"]) for r in records),
        "truncated": sum(r.get("finish_reason") == "length" for r in records),
    }
    sections = [
        _group_section("By subject", "subject", full["by_subject"], ks),
        _group_section("By level", "level", full["by_level"], ks),
        rate_table(records, "extract_method", "correct", title="Accuracy by extraction method", chart=False),
    ]
    return summary, sections


def run_eval(cfg: MathEvalConfig, backend: Backend | None = None, progress: bool = False) -> dict:
    """Run (or resume) one evaluation; returns the summary. ``backend`` overrides ``cfg.backend``."""
    from verl_ext_eval.report import write_summary
    from verl_ext_eval.results import ResultsFile

    if cfg.n_samples < 1:
        raise RunConfigError(f"n_samples must be >= 1, got {cfg.n_samples}")
    if cfg.prompt.mode not in ("chat", "complete"):
        raise RunConfigError(f"prompt.mode={cfg.prompt.mode!r}: choose chat or complete")
    ks = pass_ks(cfg)
    spec = resolve_prompt(cfg.prompt.template, cfg.prompt.from_config, cfg.prompt.system, cfg.prompt.mode)
    problems = load_problems(cfg.data.path, cfg.data.format)
    if cfg.limit is not None:
        problems = problems[: max(0, cfg.limit)]
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = ResultsFile(out / SAMPLES_FILE, "key")
    done = results.done()
    check_resume(out, _fingerprint(cfg, spec), bool(done), cfg.resume)
    todo = plan(problems, cfg.n_samples, done)
    logger.info("math eval: %d problems x %d samples, %d already done, %d to run (prompt: %s)",
                len(problems), cfg.n_samples, len(problems) * cfg.n_samples - len(todo), len(todo), spec.origin)
    start = time.perf_counter()
    if todo:
        own_backend = backend is None
        backend = make_backend_from_config(cfg) if own_backend else backend

        async def go() -> None:
            try:
                await _generate_all(cfg, spec, backend, grader, todo, results, progress)
            finally:
                if own_backend:
                    await backend.close()

        with MathGrader(cfg.grading.workers or default_workers(), cfg.grading.timeout_s,
                        percent=cfg.grading.percent) as grader:
            asyncio.run(go())
    wanted = {sample_key(p.id, s) for p in problems for s in range(cfg.n_samples)}
    records = [r for r in ResultsFile(out / SAMPLES_FILE, "key").records() if r["key"] in wanted]
    summary, sections = summarize_records(records, ks, cfg.grading.format_penalty)
    summary["run"] = {"model_path": cfg.backend.model_path, "backend": getattr(backend, "name", cfg.backend.name),
                      "data": cfg.data.path or "bundled", "problems": len(problems), "n_samples": cfg.n_samples,
                      "prompt_origin": spec.origin, "generated_now": len(todo),
                      "seconds": round(time.perf_counter() - start, 3)}
    write_summary(out, summary, "Math evaluation", sections)
    return summary


EXAMPLE = """examples:
  python -m verl_ext_eval.math backend.name=hf backend.model_path=/models/qwen3-1.7b-sft limit=20 \\
      sampling.max_new_tokens=2048 out_dir=outputs/math_bundled
  python -m verl_ext_eval.math data.path=math500.parquet backend.name=server backend.base_url=http://127.0.0.1:30000 \\
      n_samples=4 sampling.temperature=0.6 prompt.from_config=verl_ext/training/config/sft.yaml concurrency=64

keys (defaults):
"""


def _keys(obj, prefix: str = "") -> list[str]:
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out += _keys(value, f"{prefix}{f.name}.")
        else:
            out.append(f"  {prefix}{f.name}={json.dumps(value)}")
    return out


def make_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="python -m verl_ext_eval.math",
        description="Evaluate a model on math problems (bundled offline set, MATH- or GSM8K-style files): "
                    "generate, grade (boxed/Answer:/#### extraction, math-verify with a hard time bound), "
                    "write per-sample JSONL (resumable) and a summary by subject/level with pass@k.",
        epilog=EXAMPLE + "\n".join(_keys(MathEvalConfig())),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    parser.add_argument("overrides", nargs="*", help="key=value settings (Hydra style; a key given twice is an error)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from verl_ext.overrides import OverrideError, build_config

    try:
        cfg = build_config(MathEvalConfig, args.overrides)
        summary = run_eval(cfg, progress=not args.quiet)
    except (OverrideError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # backend start-up failures (model folder, server, CUDA)
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    overall = summary["overall"]
    if not overall["n_samples"]:
        print(f"no samples to evaluate (check data.path / limit); results in {cfg.out_dir}")
        return 0
    ks = [k for k in overall if k.startswith("pass@")]
    print(f"accuracy {overall['accuracy']:.4f} over {overall['n_samples']} samples / {overall['n_problems']} problems; "
          + ", ".join(f"{k} {overall[k]:.4f}" for k in ks if overall[k] is not None)
          + f"; format rate {overall['format_rate']:.4f}; results in {cfg.out_dir}")
    lo, hi = overall["accuracy_ci95"]
    print(f"accuracy 95% interval (Wilson, n={overall['n_samples']}): [{lo:.4f}, {hi:.4f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
