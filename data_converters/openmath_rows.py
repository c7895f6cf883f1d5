"""OpenMathReasoning rows as Arrow batches: reading a global row range of many shards, type
conformance, the vectorised pass-rate parse and label filter, and the output columns.

Rows of all input files form one global index (files in the given order); a chunk is a range of
it, so chunk outputs do not depend on the batch size and a rerun rebuilds them identically.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_converters.parquet_io import ConversionError, Reject, RejectSink
from verl_ext.io import BadLine, decode_line, input_kind, iter_lines, open_parquet

TEXT_COLUMNS = ("problem", "generated_solution")
STRING_COLUMNS = ("expected_answer", "problem_type", "problem_source", "generation_model",
                  "pass_rate_72b_tir", "problem", "generated_solution", "inference_mode")
INPUT_SCHEMA = pa.schema([(c, pa.string()) for c in STRING_COLUMNS] + [("used_in_kaggle", pa.bool_())])
HAS_ANSWER = "has_answer_extracted"
# reasons of policy filters: counted under "filtered", not "dropped"
FILTER_PREFIXES = ("problem_type:", "pass_rate_above_threshold", "llm_")
# filtered rows listed in rejects/ anyway: a row without an extracted answer (problem type
# no_answer_extracted / converted_proof, pass rate "n/a") must be findable, not vanish; the pass-rate
# cut itself (most of the data) stays counted only
LISTED_FILTERS = ("problem_type:",)
_NUMBER = r"^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$"
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])


@dataclass(frozen=True)
class FileSpan:
    """One input file and where its rows start in the global index."""

    path: Path
    start: int
    rows: int

    @property
    def unit(self) -> str:
        return "row" if input_kind(self.path) == "parquet" else "line"


def _jsonl_rows(path: Path) -> int:
    return sum(1 for _ in iter_lines(path))


def plan_files(paths: Sequence[Path]) -> list[FileSpan]:
    """Global row index over ``paths`` (Parquet: metadata; JSONL: non-blank lines)."""
    spans, start = [], 0
    for path in paths:
        kind = input_kind(path)
        if kind == "json":
            raise ConversionError(f"{path}: a JSON list cannot be streamed by row range; convert it to JSONL")
        rows = open_parquet(path).metadata.num_rows if kind == "parquet" else _jsonl_rows(path)
        spans.append(FileSpan(path, start, rows))
        start += rows
    return spans


@dataclass(frozen=True)
class Batch:
    """Conformed rows of one file: ``table`` follows INPUT_SCHEMA, ``positions`` locate them."""

    file: str
    unit: str
    positions: list[int]
    table: pa.Table


def read_range(spans: Sequence[FileSpan], lo: int, hi: int, batch_size: int, rejects: RejectSink) -> Iterator[Batch]:
    """Batches of global rows ``[lo, hi)``; malformed JSONL lines go to ``rejects``."""
    for span in spans:
        a, b = max(lo, span.start) - span.start, min(hi, span.start + span.rows) - span.start
        if a >= b:
            continue
        if span.unit == "row":
            yield from _parquet_range(span.path, a, b, batch_size)
        else:
            yield from _jsonl_range(span.path, a, b, batch_size, rejects)


def _parquet_range(path: Path, a: int, b: int, batch_size: int) -> Iterator[Batch]:
    pf = open_parquet(path)
    groups, first, offset = [], None, 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if offset < b and offset + n > a:
            groups.append(g)
            first = offset if first is None else first
        offset += n
    columns = [c for c in INPUT_SCHEMA.names if c in pf.schema_arrow.names]
    pos = first or 0
    for batch in pf.iter_batches(batch_size=batch_size, row_groups=groups, columns=columns):
        s, e = max(a, pos), min(b, pos + batch.num_rows)
        if s < e:
            table = pa.Table.from_batches([batch.slice(s - pos, e - s)])
            yield Batch(str(path), "row", list(range(s, e)), conform(table, str(path)))
        pos += batch.num_rows


def conform(table: pa.Table, file: str) -> pa.Table:
    """Known columns cast to INPUT_SCHEMA (a float pass rate becomes its string), missing → null."""
    arrays = []
    for field in INPUT_SCHEMA:
        if field.name not in table.column_names:
            arrays.append(pa.nulls(table.num_rows, field.type))
            continue
        col = table.column(field.name)
        try:
            arrays.append(col if col.type == field.type else pc.cast(col, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ConversionError(f"{file}: column {field.name!r} of type {col.type} cannot be read as "
                                  f"{field.type} ({exc}); fix the column type in that file") from exc
    return pa.Table.from_arrays(arrays, schema=INPUT_SCHEMA)


def _jsonl_range(path: Path, a: int, b: int, batch_size: int, rejects: RejectSink) -> Iterator[Batch]:
    rows: list[dict] = []
    positions: list[int] = []
    for index, (line_no, raw) in enumerate(iter_lines(path)):
        if index < a:
            continue
        if index >= b:
            break
        record = _json_record(raw)
        if isinstance(record, Reject):
            rejects.add(str(path), "line", line_no, record, raw.decode("utf-8", "replace"))
        else:
            rows.append(record)
            positions.append(line_no)
        if len(rows) >= batch_size:
            yield Batch(str(path), "line", positions, pa.Table.from_pylist(rows, schema=INPUT_SCHEMA))
            rows, positions = [], []
    if rows:
        yield Batch(str(path), "line", positions, pa.Table.from_pylist(rows, schema=INPUT_SCHEMA))


def _as_string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isnan(value):
        return repr(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value)  # junk (bool, list, NaN...) stays visible as text


def _json_record(raw: bytes) -> dict | Reject:
    """One JSONL line → a dict of INPUT_SCHEMA types, or a Reject."""
    try:
        record = decode_line(raw)
    except BadLine as exc:
        return Reject(exc.reason, exc.detail)
    if not isinstance(record, dict):
        return Reject("not_an_object", f"got {type(record).__name__}")
    out: dict[str, Any] = {}
    for key in TEXT_COLUMNS:
        value = record.get(key)
        if value is not None and not isinstance(value, str):
            return Reject(f"wrong_type:{key}", f"{key} is {type(value).__name__}, expected str")
    for key in STRING_COLUMNS:
        out[key] = _as_string(record.get(key))
    kaggle = record.get("used_in_kaggle")
    out["used_in_kaggle"] = kaggle if isinstance(kaggle, bool) else None
    return out


def parse_pass_rate(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(pass rate float64 or null, kind of an unusable value or null) of a string array. Kinds:
    ``null``, ``n/a``, ``empty``, ``nan``, ``non_numeric``, ``out_of_range`` (outside [0, 1])."""
    text = pc.utf8_trim_whitespace(values)
    lower = pc.utf8_lower(text)
    numeric = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
    rate = pc.cast(pc.if_else(numeric, text, pa.scalar(None, pa.string())), pa.float64())
    in_range = pc.fill_null(pc.and_(pc.greater_equal(rate, 0.0), pc.less_equal(rate, 1.0)), False)
    conds = [pc.is_null(values), pc.equal(lower, "n/a"), pc.equal(text, ""), pc.equal(lower, "nan"),
             pc.invert(numeric), pc.invert(in_range)]
    kinds = ["null", "n/a", "empty", "nan", "non_numeric", "out_of_range"]
    kind = pc.case_when(pc.make_struct(*[pc.fill_null(c, False) for c in conds]),
                        *[pa.scalar(k, pa.string()) for k in kinds])
    return pc.if_else(in_range, rate, pa.scalar(None, pa.float64())), kind


def row_reasons(table: pa.Table, threshold: float | None) -> tuple[pa.Array, pa.Array]:
    """(reason per row, null = kept; parsed pass rate). Checked in order: missing/empty text,
    then with a threshold: problem type, pass-rate kind, pass rate above the threshold."""
    rate, kind = parse_pass_rate(table.column("pass_rate_72b_tir").combine_chunks())
    conds, reasons = [], []
    for key in TEXT_COLUMNS:
        col = table.column(key)
        conds += [pc.is_null(col), pc.equal(pc.utf8_trim_whitespace(col), "")]
        reasons += [f"missing_field:{key}", f"empty_text:{key}"]
    if threshold is not None:
        ptype = table.column("problem_type")
        conds += [pc.is_null(ptype), pc.not_equal(ptype, HAS_ANSWER), pc.is_valid(kind),
                  pc.greater(rate, threshold)]
        reasons += ["missing_field:problem_type", pc.binary_join_element_wise("problem_type:", ptype, ""),
                    pc.binary_join_element_wise("pass_rate:", kind, ""), "pass_rate_above_threshold"]
    conds = [pc.fill_null(c, False) for c in conds]
    reason = pc.case_when(pc.make_struct(*conds), *[_chunked(r) for r in reasons])
    return reason, rate


def _chunked(value):
    if isinstance(value, str):
        return pa.scalar(value, pa.string())
    return value.combine_chunks() if isinstance(value, pa.ChunkedArray) else value


def filtered_mask(reason: pa.Array) -> pa.Array:
    """Vectorised ``is_filtered`` (False for null reasons)."""
    masks = [pc.fill_null(pc.starts_with(reason, p), False) for p in FILTER_PREFIXES]
    out = masks[0]
    for m in masks[1:]:
        out = pc.or_(out, m)
    return out


def listed_mask(reason: pa.Array) -> pa.Array:
    """Rows to write to rejects/: every data problem (a reason that is no policy filter) and the
    policy filters of ``LISTED_FILTERS``."""
    listed = pc.and_not(pc.is_valid(reason), filtered_mask(reason))
    for prefix in LISTED_FILTERS:
        listed = pc.or_(listed, pc.fill_null(pc.starts_with(reason, prefix), False))
    return listed


def is_filtered(reason: str) -> bool:
    """True for policy-filter reasons (counted only); False for data problems (written out)."""
    return reason.startswith(FILTER_PREFIXES)


def messages_array(user: pa.Array, assistant: pa.Array) -> pa.Array:
    """``[{user}, {assistant}]`` per row as a list<struct<role, content>> array, vectorised."""
    n = len(user)
    order = np.empty(2 * n, dtype=np.int64)
    order[0::2], order[1::2] = np.arange(n), np.arange(n, 2 * n)
    content = pc.take(pa.concat_arrays([_chunked(user).cast(pa.string()), _chunked(assistant).cast(pa.string())]), order)
    role = pc.take(pa.array(["user", "assistant"]), pa.array(np.arange(2 * n) % 2))
    values = pa.StructArray.from_arrays([role, content], fields=list(MESSAGE_TYPE))
    return pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), values)


# problem / generated_solution are renamed prompt / response (not copied: the text is most of the
# bytes); messages holds them once more for the chat dataset
RENAMED = {"problem": "prompt", "generated_solution": "response"}
OUTPUT_SCHEMA = pa.schema(
    [pa.field(RENAMED.get(f.name, f.name), f.type) for f in INPUT_SCHEMA] + [
        ("pass_rate", pa.float64()), ("messages", pa.list_(MESSAGE_TYPE)), ("answer", pa.string()),
        ("data_source", pa.string()), ("llm_solve_rate", pa.float64()), ("seed_problem", pa.string()),
    ])


def output_table(table: pa.Table, rate: pa.Array, data_source: str) -> pa.Table:
    """Kept input rows → OUTPUT_SCHEMA: the source columns (problem → ``prompt``,
    generated_solution → ``response``) plus ``pass_rate`` (parsed), ``messages`` and ``answer``
    (expected_answer)."""
    n = table.num_rows
    problem, solution = table.column("problem"), table.column("generated_solution")
    extra = {
        "pass_rate": rate, "messages": messages_array(problem, solution), "answer": table.column("expected_answer"),
        "data_source": pa.array([data_source] * n, pa.string()),
        "llm_solve_rate": pa.nulls(n, pa.float64()), "seed_problem": pa.nulls(n, pa.string()),
    }
    columns = [table.column(name) for name in INPUT_SCHEMA.names] + [extra[name] for name in OUTPUT_SCHEMA.names[len(INPUT_SCHEMA):]]
    return pa.Table.from_arrays([_chunked(c) for c in columns], schema=OUTPUT_SCHEMA)
