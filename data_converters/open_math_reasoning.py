"""OpenMathReasoning (``nvidia/OpenMathReasoning`` shards) → filtered, verl-ready Parquet chunks.

Streams any number of Parquet/JSONL shards as one global row index, cut into chunks of
``--save-per-iteration`` input rows (default: one chunk per input file; the last partial chunk is
saved too). ``--filter-by-pass-rate T`` keeps ``has_answer_extracted`` rows whose parsed
``pass_rate_72b_tir`` is <= T (lower is harder); unusable pass rates are rejected by kind, and rows of
another problem type are counted as filtered and listed in ``rejects/`` with their type. Each
finished chunk is recorded in a manifest, so a rerun after a crash skips finished chunks and
yields identical outputs. Optional LLM stages (``--generate``, ``--llm-filter``) run through
``verl_ext_eval.backends``.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from data_converters.chunk_manifest import Manifest
from data_converters.openmath_rows import (
    OUTPUT_SCHEMA, FileSpan, is_filtered, listed_mask, output_table, plan_files, read_range, row_reasons,
)
from data_converters.parquet_io import ConversionError, Reject, RejectSink, Summary
from data_converters.pipeline import Kept, Outcome, expand_inputs, make_parser, run_main
from verl_ext.io import ParquetChunkWriter

logger = logging.getLogger(__name__)

Stage = Callable[[Sequence[dict]], Sequence[Outcome]]
FILTERED_DETAIL = "filtered by --filter-by-pass-rate (counted under 'filtered' in the summary)"


@dataclass(frozen=True)
class Options:
    threshold: float | None = None  # --filter-by-pass-rate
    save_per_iteration: int = 0  # input rows per chunk; 0: one chunk per input file
    start_pct: float = 0.0
    end_pct: float = 100.0
    data_source: str = "openmath"
    batch_size: int = 8192


@dataclass(frozen=True)
class ChunkPlan:
    lo: int  # global input rows [lo, hi)
    hi: int

    @property
    def name(self) -> str:
        return f"rows-{self.lo:010d}-{self.hi:010d}"


def row_window(total: int, start_pct: float, end_pct: float) -> tuple[int, int]:
    """Global rows ``[lo, hi)`` for a percentage window (exact, so adjacent windows tile)."""
    if not 0 <= start_pct < end_pct <= 100:
        raise ConversionError(f"--start-from-percentage {start_pct} / --end-at-percentage {end_pct}: "
                              "need 0 <= start < end <= 100")
    return (int(total * Fraction(str(start_pct)) / 100), int(total * Fraction(str(end_pct)) / 100))


def plan_chunks(spans: Sequence[FileSpan], opts: Options) -> list[ChunkPlan]:
    total = sum(s.rows for s in spans)
    lo, hi = row_window(total, opts.start_pct, opts.end_pct)
    if opts.save_per_iteration > 0:  # a global grid, so windows of parallel runs share chunk names
        step = opts.save_per_iteration
        cuts = sorted({lo, hi, *range((lo // step + 1) * step, hi, step)})
    else:
        cuts = sorted({lo, hi, *(s.start for s in spans if lo < s.start < hi)})
    return [ChunkPlan(a, b) for a, b in zip(cuts, cuts[1:])]


def run_chunk(plan: ChunkPlan, spans: Sequence[FileSpan], opts: Options, out_dir: Path,
              stage: Stage | None = None, progress: Callable[[int], None] | None = None) -> dict:
    """Convert one chunk into ``<name>.parquet`` + ``rejects/<name>.jsonl``; returns its entry."""
    rejects = RejectSink(out_dir / "rejects" / f"{plan.name}.jsonl")
    writer = ParquetChunkWriter(out_dir / f"{plan.name}.parquet", OUTPUT_SCHEMA)
    rows_in, stage_rejects, filtered, notes = 0, 0, Counter(), Counter()
    try:
        for batch in read_range(spans, plan.lo, plan.hi, opts.batch_size, rejects):
            reason, rate = row_reasons(batch.table, opts.threshold)
            for item in pc.value_counts(reason).to_pylist():
                if item["values"] is not None and is_filtered(item["values"]):
                    filtered[item["values"]] += item["counts"]
            listed = pc.indices_nonzero(listed_mask(reason)).to_pylist()
            if listed:  # previews without the solution: encoding whole traces would cost more than converting
                rows = batch.table.drop_columns(["generated_solution"]).take(listed).to_pylist()
                for i, rec, r in zip(listed, rows, reason.take(listed).to_pylist()):
                    counted = not is_filtered(r)
                    detail = "" if counted else FILTERED_DETAIL
                    rejects.add(batch.file, batch.unit, batch.positions[i], Reject(r, detail), rec, counted=counted)
                    stage_rejects += counted
            keep = pc.is_null(reason)
            kept = output_table(batch.table.filter(keep), rate.filter(keep), opts.data_source)
            if stage is not None and kept.num_rows:
                kept_pos = [p for p, k in zip(batch.positions, keep.to_pylist()) if k]
                kept, n = _apply_stage(stage, kept, kept_pos, batch.file, batch.unit, rejects, filtered, notes)
                stage_rejects += n
            writer.write_table(kept)
            rows_in += batch.table.num_rows
            if progress is not None:
                progress(batch.table.num_rows)
        output = None
        if writer.total_rows:
            writer.commit()
            output = writer.path.name
        else:
            writer.abort()
        rejects.commit()
    except BaseException:
        writer.abort()
        rejects.abort()
        raise
    reader_rejects = sum(rejects.counts.values()) - stage_rejects
    return {"lo": plan.lo, "hi": plan.hi, "rows_in": rows_in + reader_rejects, "kept": writer.rows,
            "dropped": dict(rejects.counts), "filtered": dict(filtered), "notes": dict(notes),
            "output": output, "rejects": f"rejects/{plan.name}.jsonl"}


def _apply_stage(stage: Stage, kept: pa.Table, positions: list[int], file: str, unit: str,
                 rejects: RejectSink, filtered: Counter, notes: Counter) -> tuple[pa.Table, int]:
    rows = kept.to_pylist()
    outcomes = stage(rows)
    out, written = [], 0
    for pos, row, outcome in zip(positions, rows, outcomes):
        if isinstance(outcome, Kept):
            out.append(outcome.row)
            notes.update(outcome.notes)
        elif is_filtered(outcome.reason):
            filtered[outcome.reason] += 1
        else:
            rejects.add(file, unit, pos, outcome, {"problem": row["prompt"]})
            written += 1
    return pa.Table.from_pylist(out, schema=OUTPUT_SCHEMA), written


def run(spans: Sequence[FileSpan], out_dir: Path, opts: Options, stage: Stage | None = None,
        fingerprint_extra: dict | None = None, restart: bool = False, progress=None,
        config: dict | None = None) -> Summary:
    """Plan, skip finished chunks, convert the rest, and write ``summary.json`` (``spans`` from
    ``openmath_rows.plan_files``)."""
    plans = plan_chunks(spans, opts)
    window = "" if (opts.start_pct, opts.end_pct) == (0, 100) else f"-rows-{plans[0].lo}-{plans[-1].hi}" if plans else ""
    fingerprint = {"inputs": [[str(s.path), s.path.stat().st_size, s.rows] for s in spans],
                   "threshold": opts.threshold, "save_per_iteration": opts.save_per_iteration,
                   "start_pct": opts.start_pct, "end_pct": opts.end_pct, "data_source": opts.data_source,
                   **(fingerprint_extra or {})}
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / f"manifest{window}.json"
    if restart:
        manifest_path.unlink(missing_ok=True)
    manifest = Manifest(manifest_path, fingerprint)
    summary = Summary("openmath", inputs=[str(s.path) for s in spans], config=dict(config or {}))
    resumed, summary.timed_rows = 0, 0
    for plan in plans:
        entry = manifest.done(plan.name)
        if entry is None:
            _remove_stale_temps(out_dir, plan.name)
            entry = run_chunk(plan, spans, opts, out_dir, stage, progress)
            manifest.record(plan.name, entry)
            summary.timed_rows += entry["rows_in"]
        else:
            resumed += 1
            if progress is not None:
                progress(plan.hi - plan.lo)
        summary.rows_in += entry["rows_in"]
        summary.kept["train"] += entry["kept"]
        for key in ("dropped", "filtered", "notes"):
            getattr(summary, key).update(entry[key])
        if entry["output"]:
            summary.outputs.append(str(out_dir / entry["output"]))
    summary.rejects_file = str(out_dir / "rejects")
    summary.extra = {"chunks": len(plans), "chunks_resumed": resumed, "manifest": str(manifest_path)}
    summary.save(out_dir / f"summary{window}.json")
    return summary


def _remove_stale_temps(out_dir: Path, name: str) -> None:
    """Temp files a killed run left for this chunk (only this chunk's: parallel windows may be
    writing theirs into the same folder)."""
    for tmp in [*out_dir.glob(f".{name}.parquet.*.tmp"), *(out_dir / "rejects").glob(f".{name}.jsonl.*.tmp")]:
        logger.info("removing %s left by an interrupted run", tmp)
        tmp.unlink(missing_ok=True)


def _prompt_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


EXAMPLE = """  python -m data_converters.open_math_reasoning data/cot-000*-of-00144.parquet --out data/omr \\
      --filter-by-pass-rate 0.1 --save-per-iteration 100000
  # rerun the same command after a crash: finished chunks are skipped
  # with an LLM filter on the survivors (an inference model solves each problem 4 times):
  python -m data_converters.open_math_reasoning seeds.jsonl --out data/hard --llm-filter \\
      --backend server --backend-opt base_url=http://127.0.0.1:30000 --k 4 --max-solve-rate 0.25"""


def build_parser():
    p = make_parser("data_converters.open_math_reasoning", __doc__.split("\n\n")[0], EXAMPLE)
    p.set_defaults(batch_size=8192)
    p.add_argument("inputs", nargs="+", type=Path, help="Parquet/JSONL shards or folders (global order as given)")
    p.add_argument("--filter-by-pass-rate", type=float, default=None, metavar="T",
                   help="keep has_answer_extracted rows with pass_rate_72b_tir <= T")
    p.add_argument("--save-per-iteration", type=int, default=0, metavar="N",
                   help="input rows per output chunk (default: one chunk per input file)")
    p.add_argument("--start-from-percentage", type=float, default=0.0, help="window start, %% of all rows")
    p.add_argument("--end-at-percentage", type=float, default=100.0, help="window end, %% of all rows")
    p.add_argument("--data-source", default="openmath", help="value of the data_source column")
    p.add_argument("--restart", action="store_true", help="ignore the manifest of an earlier run")
    g = p.add_argument_group("LLM stages (through verl_ext_eval.backends)")
    g.add_argument("--generate", action="store_true", help="new problem + solution per seed row")
    g.add_argument("--llm-filter", action="store_true", help="keep problems the model solves rarely")
    g.add_argument("--backend", default="server", help="verl_ext_eval.backends name: hf | server | sglang")
    g.add_argument("--backend-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="backend setting (value parsed as JSON when it can be); repeatable")
    g.add_argument("--k", type=int, default=4, help="answers per problem for --llm-filter")
    g.add_argument("--max-solve-rate", type=float, default=0.25, help="keep problems solved <= this share")
    g.add_argument("--max-new-tokens", type=int, default=4096)
    g.add_argument("--temperature", type=float, default=0.7)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--llm-seed", type=int, default=None)
    g.add_argument("--concurrency", type=int, default=64, help="LLM requests in flight")
    g.add_argument("--solve-prompt", type=Path, default=None, help="file with a {problem} template")
    g.add_argument("--generation-prompt", type=Path, default=None, help="file with a {problem} template")
    return p


def backend_config(pairs: Sequence[str]) -> dict:
    cfg = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConversionError(f"--backend-opt {pair!r}: expected KEY=VALUE, e.g. model=/path/to/model")
        if key in cfg:
            raise ConversionError(f"--backend-opt {key} given twice ({cfg[key]!r} and {value!r})")
        try:
            cfg[key] = json.loads(value)
        except ValueError:
            cfg[key] = value
    return cfg


def make_stage(args):
    """The LLM stage the flags ask for (None without --generate/--llm-filter), its fingerprint."""
    if not (args.generate or args.llm_filter):
        return None, {}
    from data_converters.openmath_llm import GENERATION_PROMPT, SOLVE_PROMPT, LLMOptions, LLMStage
    from verl_ext_eval.backends import make_backend
    from verl_ext_eval.backends.base import SamplingParams

    cfg = backend_config(args.backend_opt)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                            top_p=args.top_p, seed=args.llm_seed)
    opts = LLMOptions(params, args.k, args.max_solve_rate,
                      args.solve_prompt.read_text() if args.solve_prompt else SOLVE_PROMPT,
                      args.generation_prompt.read_text() if args.generation_prompt else GENERATION_PROMPT,
                      args.concurrency, str(next((cfg[k] for k in ("model", "path", "model_path") if k in cfg), args.backend)))
    grader = None
    if args.llm_filter:
        from verl_ext_eval.math.grading import MathGrader

        grader = MathGrader()
    try:
        backend = make_backend(args.backend, **cfg)
    except (ValueError, RuntimeError) as exc:  # unknown name/setting, missing model, server failed
        if grader is not None:
            grader.close()
        raise ConversionError(f"--backend {args.backend} / --backend-opt: {exc}") from exc
    stage = LLMStage(backend, opts, args.generate, args.llm_filter, grader)
    extra = {"generate": args.generate, "llm_filter": args.llm_filter, "backend": args.backend,
             "backend_cfg": cfg, "k": args.k, "max_solve_rate": args.max_solve_rate, "params": str(params),
             "solve_prompt": _prompt_hash(opts.solve_prompt), "generation_prompt": _prompt_hash(opts.generation_prompt)}
    return stage, extra


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        from tqdm import tqdm

        spans = plan_files(expand_inputs(args.inputs))
        opts = Options(args.filter_by_pass_rate, args.save_per_iteration, args.start_from_percentage,
                       args.end_at_percentage, args.data_source, args.batch_size)
        total = row_window(sum(s.rows for s in spans), opts.start_pct, opts.end_pct)
        stage, extra = make_stage(args)
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        try:
            with tqdm(total=total[1] - total[0], desc="openmath", unit=" rows", disable=args.no_progress) as bar:
                return run(spans, args.out, opts, stage, extra, args.restart, bar.update, config)
        finally:
            if stage is not None:
                stage.close()

    return run_main(body)


if __name__ == "__main__":
    raise SystemExit(main())
