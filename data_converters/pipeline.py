"""The record-by-record conversion loop shared by the dict-based converters, and their CLI parts.

A converter supplies a pure ``transform(chunk) -> [Kept | Reject, ...]`` (one outcome per record)
and the output schemas; :func:`convert_files` streams the inputs through it, routes kept rows to
their output file, writes rejects with their source location and saves ``summary.json``.
"""
from __future__ import annotations

import argparse
import glob
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pyarrow as pa

from data_converters.parquet_io import ConversionError, Reject, RejectSink, Summary, iter_chunks
from verl_ext.io import Chunk, ParquetChunkWriter, ReadError, count_rows

logger = logging.getLogger(__name__)

REJECTS_NAME = "rejects.jsonl"
SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class Kept:
    """A converted row, the output it goes to (``train``, ``validation``...) and notes to count."""

    row: dict
    output: str = "train"
    notes: tuple[str, ...] = ()


Outcome = Kept | Reject
BatchTransform = Callable[[Chunk], Sequence[Outcome]]
Progress = Callable[[int], None]


def output_path(out_dir: Path, output: str) -> Path:
    return out_dir / f"{output}.parquet"


Reader = Callable[[RejectSink], Iterable[Chunk]]


def file_reader(inputs: Sequence[Path], batch_size: int) -> Reader:
    """Chunks of every input file in order (JSON list, JSONL or Parquet)."""

    def read(rejects: RejectSink) -> Iterable[Chunk]:
        for path in inputs:
            yield from iter_chunks(path, batch_size, rejects)

    return read


def convert_files(
    converter: str,
    inputs: Sequence[Path],
    transform: BatchTransform,
    out_dir: Path,
    schema: pa.Schema,
    outputs: Sequence[str] = ("train",),
    batch_size: int = 1024,
    progress: Progress | None = None,
    config: dict | None = None,
    reader: Reader | None = None,
) -> Summary:
    """Convert ``inputs`` into ``out_dir/<output>.parquet`` (one file per output a kept row names).

    An output of ``outputs`` that receives no rows is not written and an old file of that name is
    removed, so the folder always matches ``summary.json``. ``reader`` replaces the default file
    reader (e.g. a folder of one-object JSON files). On any exception every temp file is removed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = Summary(converter, inputs=[str(p) for p in inputs], config=dict(config or {}))
    rejects = RejectSink(out_dir / REJECTS_NAME)
    writers: dict[str, ParquetChunkWriter] = {}
    read = reader or file_reader(inputs, batch_size)
    transform_rejects = 0
    try:
        for chunk in read(rejects):
            outcomes = transform(chunk)
            if len(outcomes) != len(chunk.records):
                raise RuntimeError(f"{converter}: transform returned {len(outcomes)} outcomes for "
                                   f"{len(chunk.records)} records")
            kept: dict[str, list[dict]] = {}
            for position, record, outcome in zip(chunk.positions, chunk.records, outcomes):
                if isinstance(outcome, Reject):
                    rejects.add(chunk.file, chunk.unit, position, outcome, record)
                    transform_rejects += 1
                    continue
                kept.setdefault(outcome.output, []).append(outcome.row)
                summary.kept[outcome.output] += 1
                summary.notes.update(outcome.notes)
            for name, rows in kept.items():
                if name not in writers:
                    writers[name] = ParquetChunkWriter(output_path(out_dir, name), schema)
                writers[name].write_rows(rows)
            summary.rows_in += len(chunk.records)
            if progress is not None:
                progress(len(chunk.records))
        for name, writer in sorted(writers.items()):
            writer.commit()
            summary.outputs.append(str(writer.path))
        for name in outputs:
            stale = output_path(out_dir, name)
            if name not in writers and stale.exists():
                logger.info("removing %s from an earlier run: this run wrote no %s rows", stale, name)
                stale.unlink()
        rejects.commit()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        rejects.abort()
        raise
    # malformed lines were rejected by the reader before reaching the transform
    summary.rows_in += sum(rejects.counts.values()) - transform_rejects
    summary.dropped = rejects.counts
    summary.rejects_file = str(rejects.path)
    summary.save(out_dir / SUMMARY_NAME)
    return summary


def make_parser(prog: str, description: str, example: str,
                out_help: str = "output folder: <split>.parquet, rejects.jsonl, summary.json",
                out_required: bool = True) -> argparse.ArgumentParser:
    """A parser whose ``--help`` ends with a runnable example; common options added."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {prog}", description=description,
        epilog=f"example:\n{example}", formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=out_required, help=out_help)
    parser.add_argument("--batch-size", type=int, default=1024, help="records per read batch (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def progress_bar(inputs: Iterable[Path], desc: str, disable: bool):
    """A tqdm bar counting rows (rows/s shown); total known when every input is Parquet."""
    from tqdm import tqdm

    counts = [count_rows(p) for p in inputs]
    total = None if any(c is None for c in counts) else sum(counts)
    return tqdm(total=total, desc=desc, unit=" rows", disable=disable, file=sys.stderr)


def run_main(body: Callable[[], Summary]) -> int:
    """Run a CLI body: print the summary, or one line for a ConversionError or an unreadable
    input (exit 2)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = body()
    except (ConversionError, ReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.render())
    return 0


def expand_inputs(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a folder stands for its ``*.parquet``, ``*.jsonl``, ``*.json`` files and an
    unexpanded glob (``'data/cot-*.parquet'``, quoted or from a non-shell caller) for its matches,
    both sorted."""
    files: list[Path] = []
    for path in paths:
        if not path.exists() and any(c in str(path) for c in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not matches:
                raise ConversionError(f"{path}: the pattern matches no file")
            files.extend(matches)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".parquet", ".jsonl", ".json", ".ndjson"))
            if not found:
                raise ConversionError(f"{path}: folder holds no .parquet/.jsonl/.json files")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise ConversionError(f"{path}: no such file; check the path (globs are expanded by your shell)")
    return files
