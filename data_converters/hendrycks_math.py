"""Hendrycks MATH (``train|test/<subject>/<n>.json`` folders, or JSONL) → verl-ready Parquet per split.

Each row gets ``level`` (int, null for "Level ?"), ``subject`` (the ``type`` display name),
``answer`` (the solution's last brace-balanced ``\\boxed{}``, else ``\\fbox{}``; ``\\boxed 5``
counts; boxes listing one answer, ``\\boxed{1}, \\boxed{2}``, are read as one, as the grader reads
them), ``prompt``/``response``, ``messages``, ``split`` and ``source_path``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Sequence

import pyarrow as pa

from data_converters.parquet_io import ConversionError, Reject, RejectSink, iter_chunks
from data_converters.pipeline import Kept, Outcome, convert_files, make_parser, run_main
from verl_ext.io import Chunk
from verl_ext_eval.math.boxes import boxed_answer

SPLITS = ("train", "test")
# folder name → the display name the files carry in ``type``
SUBJECTS = {
    "algebra": "Algebra", "counting_and_probability": "Counting & Probability", "geometry": "Geometry",
    "intermediate_algebra": "Intermediate Algebra", "number_theory": "Number Theory",
    "prealgebra": "Prealgebra", "precalculus": "Precalculus",
}
_LEVEL = re.compile(r"^\s*(?:level\s*)?(\d+)\s*$", re.IGNORECASE)
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema([
    ("prompt", pa.string()), ("response", pa.string()), ("messages", pa.list_(MESSAGE_TYPE)),
    ("problem", pa.string()), ("solution", pa.string()), ("answer", pa.string()), ("level", pa.int64()),
    ("subject", pa.string()), ("split", pa.string()), ("source_path", pa.string()), ("data_source", pa.string()),
])


def parse_level(value: object) -> tuple[int | None, str]:
    """("Level 3" → 3, ""); "Level ?" → (None, "level_unknown"); junk → (None, "level_unparsed")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, ""
    if isinstance(value, str):
        m = _LEVEL.match(value)
        if m:
            return int(m.group(1)), ""
        if "?" in value:
            return None, "level_unknown"
    return (None, "level_missing") if value is None else (None, "level_unparsed")


def convert_record(record: object, split: str, subject_hint: str | None, source_path: str,
                   data_source: str = "hendrycks_math") -> Outcome:
    """One MATH problem → a row for ``split``, or a Reject."""
    if not isinstance(record, dict):
        return Reject("not_an_object", f"got {type(record).__name__}")
    for key in ("problem", "solution"):
        value = record.get(key)
        if value is None:
            return Reject(f"missing_field:{key}", f"no {key!r}; keys: {sorted(record)[:12]}")
        if not isinstance(value, str):
            return Reject(f"wrong_type:{key}", f"{key} is {type(value).__name__}, expected str")
        if not value.strip():
            return Reject(f"empty_text:{key}", f"{key} is empty")
    problem, solution = record["problem"], record["solution"]
    level, level_note = parse_level(record.get("level"))
    subject = record.get("type") or record.get("subject") or subject_hint
    answer = boxed_answer(solution)
    notes = tuple(n for n in (level_note, "no_boxed_answer" if answer is None else "",
                              "" if isinstance(subject, str) else "no_subject") if n)
    row = {
        "prompt": problem, "response": solution,
        "messages": [{"role": "user", "content": problem}, {"role": "assistant", "content": solution}],
        "problem": problem, "solution": solution, "answer": answer.strip() if answer is not None else None,
        "level": level, "subject": subject if isinstance(subject, str) else None, "split": split,
        "source_path": source_path, "data_source": data_source,
    }
    return Kept(row, split, notes)


def folder_files(root: Path) -> list[tuple[Path, str, str]]:
    """(file, split, subject display name) for ``root/{train,test}/<subject>/*.json`` (or a
    single split folder ``root/<subject>/*.json`` named train/test). Sorted, numbers in order."""
    splits = [(root / s, s) for s in SPLITS if (root / s).is_dir()] or [(root, root.name)]
    out = []
    for folder, split in splits:
        for path in sorted(folder.glob("*/*.json"), key=lambda p: (p.parent.name, _number_key(p.stem))):
            subject = SUBJECTS.get(path.parent.name, path.parent.name.replace("_", " ").title())
            out.append((path, split, subject))
    if not out:
        raise ConversionError(f"{root}: no <split>/<subject>/<n>.json files; pass the MATH folder "
                              "(holding train/ and test/) or JSONL files")
    return out


def _number_key(stem: str) -> tuple[int, str]:
    return (int(stem), "") if stem.isdigit() else (1 << 62, stem)


def make_reader(inputs: Sequence[Path], split: str | None, batch_size: int):
    """Chunks of both input kinds; each record arrives wrapped with its split/subject/path."""

    def read(rejects: RejectSink) -> Iterable[Chunk]:
        for path in inputs:
            if path.is_dir():
                for file, file_split, subject in folder_files(path):
                    rel = str(file.relative_to(path))
                    try:
                        record = json.loads(file.read_text(encoding="utf-8"))
                    except (ValueError, UnicodeDecodeError) as exc:
                        rejects.add(str(file), "row", 0, Reject("malformed_json", str(exc)))
                        continue
                    yield Chunk(str(file), "row", [0], [(record, file_split, subject, rel)])
                continue
            file_split = split or next((s for s in SPLITS if s in path.stem.lower()), "train")
            for chunk in iter_chunks(path, batch_size, rejects):
                wrapped = [(r, file_split, None, f"{path.name}:{p}") for r, p in zip(chunk.records, chunk.positions)]
                yield Chunk(chunk.file, chunk.unit, chunk.positions, wrapped)

    return read


def transform(chunk: Chunk) -> list[Outcome]:
    return [convert_record(*item) for item in chunk.records]


EXAMPLE = """  python -m data_converters.hendrycks_math MATH/ --out data/math
  → data/math/{train,test}.parquet, rejects.jsonl, summary.json
  python -m data_converters.hendrycks_math math_test.jsonl --split test --out data/math"""


def build_parser():
    p = make_parser("data_converters.hendrycks_math", __doc__.split("\n\n")[0], EXAMPLE)
    p.add_argument("inputs", nargs="+", type=Path, help="MATH folders and/or JSONL/JSON/Parquet files")
    p.add_argument("--split", default=None, help="split of file inputs (default: train/test from the "
                   "file name, else train); folders take it from their train/ and test/ subfolders")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        from tqdm import tqdm

        for path in args.inputs:
            if not path.exists():
                raise ConversionError(f"{path}: no such file or folder")
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        with tqdm(desc="math", unit=" rows", disable=args.no_progress) as bar:
            return convert_files("math", args.inputs, transform, args.out, SCHEMA, SPLITS, args.batch_size,
                                 bar.update, config, reader=make_reader(args.inputs, args.split, args.batch_size))

    return run_main(body)


if __name__ == "__main__":
    raise SystemExit(main())
