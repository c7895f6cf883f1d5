"""Lay out a folder of JSON/JSONL files as a Hugging Face dataset (and optionally push it).

One Parquet file per input file, named by split under ``data/`` (``data/train-<name>.parquet``;
the split comes from the file name: train / validation|valid|val|dev / test, else ``--default-split``),
a ``README.md`` whose YAML ``configs`` lists ``data_files`` per split and whose body is an existing
``original_readme.log`` (else a generated file list). Originals: with ``--out`` they are copied under
``raw/``; in place (no ``--out``) they stay where they are. Existing ``data/*.parquet`` targets are
skipped, so a rerun only converts new files. Parquet files beside the JSON are copied into
``data/`` as they are. ``--repo-id`` uploads the folder with ``huggingface_hub`` using the token of
``HF_TOKEN`` or ``hf auth login`` (never written or logged).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from data_converters.parquet_io import ConversionError, Reject, RejectSink, Summary, iter_chunks
from data_converters.pipeline import make_parser, run_main
from verl_ext.io import ParquetChunkWriter, atomic_write, count_rows, open_parquet

logger = logging.getLogger(__name__)

SPLIT_WORDS = {"train": "train", "training": "train", "validation": "validation", "valid": "validation",
               "val": "validation", "dev": "validation", "test": "test", "testing": "test"}
CARD_BODY_FILE = "original_readme.log"
WORK_DIR = ".publish"  # rejects and summary; never uploaded
INPUT_SUFFIXES = (".json", ".jsonl", ".ndjson")


def split_of(path: Path, default: str) -> str:
    """The split named by a word of the file name (``textcraft_train.json`` → train)."""
    words = path.stem.lower().replace("-", "_").replace(".", "_").split("_")
    return next((SPLIT_WORDS[w] for w in reversed(words) if w in SPLIT_WORDS), default)


def _records(path: Path, rejects: RejectSink, batch_size: int):
    for chunk in iter_chunks(path, batch_size, rejects):
        good = []
        for pos, rec in zip(chunk.positions, chunk.records):
            if isinstance(rec, dict):
                good.append(rec)
            else:
                rejects.add(chunk.file, chunk.unit, pos, Reject("not_an_object", type(rec).__name__), rec)
        if good:
            yield good


def infer_schema(path: Path, batch_size: int = 2048) -> pa.Schema:
    """One schema for all records of ``path`` (a field null in some chunks takes the others' type)."""
    if path.suffix.lower() == ".parquet":
        return pq.read_schema(path)
    schemas = [pa.Table.from_pylist(rows).schema for rows in _records(path, RejectSink(None), batch_size)]
    if not schemas:
        raise ConversionError(f"{path}: no JSON objects to publish")
    return _unify(schemas, [path])


def _unify(schemas: Sequence[pa.Schema], files: Sequence[Path]) -> pa.Schema:
    names = sorted(schemas[0].names)
    for f, sch in zip(files, schemas):
        if sorted(sch.names) != names:
            raise ConversionError(f"{f.name} has columns {sorted(sch.names)} but {files[0].name} has {names}: "
                                  "one dataset config needs the same columns in every file; publish such "
                                  "files as separate datasets")
    try:
        return pa.unify_schemas(list(schemas), promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ConversionError(f"a field has different types in {', '.join(sorted({f.name for f in files}))} "
                              f"({exc}); make its type consistent before publishing") from exc


def write_file(path: Path, target: Path, schema: pa.Schema, work: Path, allow_rejects: bool,
               batch_size: int = 2048) -> int:
    """``path`` (JSON/JSONL/Parquet) → ``target`` with ``schema``; returns rows. Bad records
    fail the file unless allowed (their list stays in ``work/`` either way)."""
    rejects = RejectSink(work / f"{path.name}.rejects.jsonl")
    writer = ParquetChunkWriter(target, schema)
    try:
        if path.suffix.lower() == ".parquet":
            for batch in open_parquet(path).iter_batches(batch_size):
                writer.write_table(pa.Table.from_batches([batch]))
        else:
            for rows in _records(path, rejects, batch_size):
                writer.write_rows(rows)
        if rejects.counts and not allow_rejects:
            raise ConversionError(f"{path}: {sum(rejects.counts.values())} bad records ({dict(rejects.counts)}); "
                                  f"see {rejects.path}, fix them, or pass --allow-rejects to publish without them")
        rows = writer.commit()
        rejects.commit() if rejects.counts else rejects.abort()
    except BaseException:
        writer.abort()
        rejects.commit() if rejects.counts else rejects.abort()
        raise
    return rows


def card(splits: dict[str, list[str]], body: str) -> str:
    """README.md: YAML front matter (one config, ``data_files`` per split) + the card body."""
    order = ["train", "validation", "test"]
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in sorted(splits, key=lambda s: (order.index(s) if s in order else len(order), s)):
        lines += [f"  - split: {split}", f"    path: data/{split}-*.parquet"]
    return "\n".join(lines + ["---", "", body.strip(), ""])


def publish_folder(src: Path, out: Path | None = None, default_split: str = "train", allow_rejects: bool = False) -> Summary:
    """Lay out ``src`` (or a copy in ``out``) in the Hugging Face layout; idempotent.

    Every file is written with one schema unified over all of them (a field that is null in one
    file takes its type from the others), which ``load_dataset`` needs for one config. A target
    that already exists with that schema is skipped."""
    if not src.is_dir():
        raise ConversionError(f"{src}: not a folder")
    dst = out or src
    inputs = sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() in (*INPUT_SUFFIXES, ".parquet"))
    if not inputs:
        raise ConversionError(f"{src}: no .json/.jsonl/.parquet files at its top level")
    targets = {p: dst / "data" / f"{split_of(p, default_split)}-{p.stem}.parquet" for p in inputs}
    schemas = {p: pq.read_schema(t) if t.exists() else infer_schema(p) for p, t in targets.items()}
    schema = _unify(list(schemas.values()), list(schemas))
    summary = Summary("publish", inputs=[str(p) for p in inputs])
    splits: dict[str, list[str]] = {}
    rows_of: dict[str, int] = {}
    for path, target in targets.items():
        split = target.name.split("-", 1)[0]
        splits.setdefault(split, []).append(target.name)
        if target.exists() and schemas[path].equals(schema):
            summary.notes["skipped_existing_parquet"] += 1
            logger.info("%s exists: skipped", target)
        else:
            source = target if target.exists() else path  # an old target is re-cast to the new schema
            write_file(source, target, schema, dst / WORK_DIR, allow_rejects)
        rows_of[target.name] = count_rows(target)
        summary.kept[split] += rows_of[target.name]
        summary.outputs.append(str(target))
        if dst != src:
            raw = dst / "raw" / path.name
            if not raw.exists() or raw.stat().st_size != path.stat().st_size:
                raw.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, raw)
    body_file = src / CARD_BODY_FILE
    if body_file.exists():
        body = body_file.read_text(encoding="utf-8")
        if dst != src:
            shutil.copy2(body_file, dst / CARD_BODY_FILE)
    else:
        body = f"# {src.resolve().name}\n\n" + "\n".join(f"- `data/{n}`: {r} rows" for n, r in sorted(rows_of.items()))
    atomic_write(dst / "README.md", card(splits, body))
    summary.rows_in = summary.kept_total
    summary.save(dst / WORK_DIR / "summary.json")
    return summary


def push(folder: Path, repo_id: str, private: bool) -> str:
    """Upload ``folder`` (without ``.publish/``) to the dataset repo ``repo_id``; returns its URL."""
    from huggingface_hub import HfApi, get_token

    if get_token() is None:
        raise ConversionError("no Hugging Face token: set HF_TOKEN or run `hf auth login`, then rerun")
    api = HfApi()
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                      ignore_patterns=[f"{WORK_DIR}/*", f"{WORK_DIR}/**"],
                      commit_message="Upload dataset (data_converters.publish)")
    return f"https://huggingface.co/datasets/{repo_id}"


EXAMPLE = """  python -m data_converters.publish textcraft_raw/ --out hf/textcraft
  HF_TOKEN=... python -m data_converters.publish textcraft_raw/ --out hf/textcraft --repo-id me/textcraft --private"""


def build_parser():
    p = make_parser("data_converters.publish", __doc__.split("\n\n")[0], EXAMPLE,
                    out_help="folder to lay the dataset out in (default: in place, in SRC)", out_required=False)
    p.add_argument("src", type=Path, help="folder with .json/.jsonl files (and an optional original_readme.log)")
    p.add_argument("--default-split", default="train", help="split of files whose name names none")
    p.add_argument("--allow-rejects", action="store_true", help="publish without bad records (else fail)")
    p.add_argument("--repo-id", default=None, help="push to this dataset repo (user/name)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        summary = publish_folder(args.src, args.out, args.default_split, args.allow_rejects)
        if args.repo_id:
            summary.extra["pushed_to"] = push(args.out or args.src, args.repo_id, args.private)
            summary.save((args.out or args.src) / WORK_DIR / "summary.json")
        return summary

    return run_main(body)


if __name__ == "__main__":
    raise SystemExit(main())
