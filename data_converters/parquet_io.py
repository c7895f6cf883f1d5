"""Shared I/O of every converter: streaming readers with source locations, an atomic chunked
Parquet writer, a rejects sink and the run summary.

Readers never hold a whole file: JSONL goes line by line, Parquet by record batch (no pre-buffering
of whole row groups), a JSON list through ``ijson`` when it is installed. Every write goes to a
hidden temp name beside the target and is renamed on ``commit()``, so a crash never leaves a
partial file that looks complete.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

PREVIEW_CHARS = 500
_UMASK = os.umask(0)
os.umask(_UMASK)
# Whole-file JSON lists are parsed with json.load when ijson is missing: that needs about 5-10x the
# file size in memory (fine for the ~400-item TextCraft list or Fast-Math-R1's 8k rows).
JSON_LOAD_WARN_BYTES = 512 * 1024 * 1024


class ConversionError(RuntimeError):
    """A problem that stops a conversion; the message names the file, row/field and the fix."""


@dataclass(frozen=True)
class Chunk:
    """Records read from one file. ``unit`` is ``"line"`` (1-based JSONL line) or ``"row"``
    (0-based Parquet row or JSON-list index); ``positions[i]`` locates ``records[i]``."""

    file: str
    unit: str
    positions: Sequence[int]
    records: Sequence[Any]


@dataclass(frozen=True)
class Reject:
    """Why a record was dropped. ``reason`` is a short stable key (counted in the summary)."""

    reason: str
    detail: str = ""


def input_kind(path: Path) -> str:
    """``parquet`` | ``jsonl`` | ``json`` (a JSON list, or JSON lines misnamed ``.json``)."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".json"):
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
        return "json" if head.startswith(b"[") or not head else "jsonl"
    raise ConversionError(f"{path}: unknown input type; expected .parquet, .jsonl, .ndjson or .json")


def open_parquet(path: Path) -> pq.ParquetFile:
    """A ParquetFile that reads pages as needed instead of pre-buffering whole row groups."""
    return pq.ParquetFile(str(path), pre_buffer=False, buffer_size=1 << 20)


def count_rows(path: Path) -> int | None:
    """Row count from Parquet metadata; ``None`` for JSON inputs (unknown without a full read)."""
    return open_parquet(path).metadata.num_rows if input_kind(path) == "parquet" else None


def _preview(record: Any) -> str:
    text = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False, default=str)
    return text[:PREVIEW_CHARS]


def iter_chunks(path: Path, batch_size: int, rejects: "RejectSink", columns: list[str] | None = None) -> Iterator[Chunk]:
    """Records of ``path`` in chunks of up to ``batch_size``. Malformed JSON lines go to
    ``rejects`` (reason ``malformed_json``); records are returned as parsed (dicts or anything)."""
    kind = input_kind(path)
    if kind == "parquet":
        yield from _parquet_chunks(path, batch_size, columns)
    elif kind == "jsonl":
        yield from _jsonl_chunks(path, batch_size, rejects)
    else:
        yield from _json_list_chunks(path, batch_size)


def _parquet_chunks(path: Path, batch_size: int, columns: list[str] | None) -> Iterator[Chunk]:
    start = 0
    for batch in open_parquet(path).iter_batches(batch_size=batch_size, columns=columns, use_threads=True):
        records = batch.to_pylist()
        yield Chunk(str(path), "row", range(start, start + len(records)), records)
        start += len(records)


def _jsonl_chunks(path: Path, batch_size: int, rejects: "RejectSink") -> Iterator[Chunk]:
    positions: list[int] = []
    records: list[Any] = []
    with path.open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                rejects.add(str(path), "line", line_no, Reject("invalid_utf8", str(exc)), raw.decode("utf-8", "replace"))
                continue
            try:
                records.append(json.loads(line))
                positions.append(line_no)
            except ValueError as exc:
                rejects.add(str(path), "line", line_no, Reject("malformed_json", str(exc)), line)
            if len(records) >= batch_size:
                yield Chunk(str(path), "line", positions, records)
                positions, records = [], []
    if records:
        yield Chunk(str(path), "line", positions, records)


def _json_list_items(path: Path) -> Iterator[Any]:
    try:
        import ijson
    except ImportError:
        size = path.stat().st_size
        if size > JSON_LOAD_WARN_BYTES:
            logger.warning("%s is %.1f GiB and ijson is not installed: json.load needs several times "
                           "that in memory; `pip install ijson` streams it", path, size / 2**30)
        with path.open("r", encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, list):
            raise ConversionError(f"{path}: top level is {type(data).__name__}, expected a JSON list")
        yield from data
        return
    with path.open("rb") as fh:
        try:
            yield from ijson.items(fh, "item", use_float=True)
        except ijson.JSONError as exc:  # not a ValueError
            raise ValueError(str(exc).strip()) from exc


def _json_list_chunks(path: Path, batch_size: int) -> Iterator[Chunk]:
    positions: list[int] = []
    records: list[Any] = []
    index = -1
    try:
        for index, item in enumerate(_json_list_items(path)):
            positions.append(index)
            records.append(item)
            if len(records) >= batch_size:
                yield Chunk(str(path), "row", positions, records)
                positions, records = [], []
    except ValueError as exc:  # json.JSONDecodeError and ijson.JSONError are ValueErrors
        raise ConversionError(f"{path}: invalid JSON after item {index}: {exc}; fix the file or "
                              "convert it to JSONL so bad lines can be skipped") from exc
    if records:
        yield Chunk(str(path), "row", positions, records)


def _temp_beside(path: Path, suffix: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get the usual mode
    return Path(name)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file + fsync + rename."""
    tmp = _temp_beside(path, ".tmp")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class RejectSink:
    """Counts rejects by reason and writes each (with its source location) to a JSONL file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self._tmp = _temp_beside(path, ".tmp") if path is not None else None
        self._fh = self._tmp.open("w", encoding="utf-8") if self._tmp is not None else None

    def add(self, file: str, unit: str, position: int, reject: Reject, record: Any = None) -> None:
        self.counts[reject.reason] += 1
        if self._fh is not None:
            entry = {"file": file, unit: position, "reason": reject.reason, "detail": reject.detail}
            if record is not None:
                entry["preview"] = _preview(record)
            self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def commit(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            os.replace(self._tmp, self.path)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._tmp.unlink(missing_ok=True)


class ParquetChunkWriter:
    """Rows → one Parquet file, written in row groups of exactly ``rows_per_group`` rows (the last
    one shorter) to a temp name and renamed by ``commit()``; the bytes do not depend on how the
    rows were batched. Rows are cast to ``schema`` (a missing key becomes null)."""

    def __init__(self, path: Path, schema: pa.Schema, rows_per_group: int = 4096, compression: str = "snappy") -> None:
        self.path, self.schema, self.rows_per_group = path, schema, rows_per_group
        self._tmp = _temp_beside(path, ".tmp")
        self._writer = pq.ParquetWriter(str(self._tmp), schema, compression=compression)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    @property
    def total_rows(self) -> int:
        """Rows written so far, including those still buffered."""
        return self.rows + self._pending_rows

    def write_rows(self, rows: Sequence[dict]) -> None:
        if rows:
            self.write_table(pa.Table.from_pylist(list(rows), schema=self.schema))

    def write_table(self, table: pa.Table) -> None:
        if table.num_rows:
            table = table.select(self.schema.names)
            # cast only when needed: casting list<struct<null>> columns trips pyarrow 26
            self._pending.append(table if table.schema.equals(self.schema) else table.cast(self.schema))
            self._pending_rows += table.num_rows
            if self._pending_rows >= self.rows_per_group:
                self._flush(final=False)

    def _flush(self, final: bool) -> None:
        if not self._pending_rows:
            return
        table = pa.concat_tables(self._pending)
        full = table.num_rows if final else table.num_rows - table.num_rows % self.rows_per_group
        for start in range(0, full, self.rows_per_group):
            self._writer.write_table(table.slice(start, min(self.rows_per_group, full - start)))
        self.rows += full
        rest = table.slice(full)
        self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def commit(self) -> int:
        self._flush(final=True)
        self._writer.close()
        os.replace(self._tmp, self.path)
        return self.rows

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)


@dataclass
class Summary:
    """What a run did. ``rows_in == kept + sum(dropped) + sum(filtered)``: ``dropped`` rows are in
    the rejects file, ``filtered`` rows (policy filters over many rows) are only counted;
    ``notes`` count kept rows that were changed or are worth a look."""

    converter: str
    inputs: list[str] = field(default_factory=list)
    rows_in: int = 0
    kept: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)
    filtered: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    outputs: list[str] = field(default_factory=list)
    rejects_file: str | None = None
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # converter-specific facts (e.g. resumed chunks)
    timed_rows: int | None = None  # rows processed by this run when fewer than rows_in (resumed)
    started: float = field(default_factory=time.monotonic)

    @property
    def kept_total(self) -> int:
        return sum(self.kept.values())

    def to_dict(self) -> dict:
        seconds = time.monotonic() - self.started
        return {
            "converter": self.converter, "inputs": self.inputs, "rows_in": self.rows_in,
            "kept": self.kept_total, "kept_by_output": dict(self.kept),
            "dropped": dict(sorted(self.dropped.items())), "filtered": dict(sorted(self.filtered.items())),
            "notes": dict(sorted(self.notes.items())), "outputs": self.outputs,
            "rejects_file": self.rejects_file, "seconds": round(seconds, 3),
            "rows_per_second": round((self.rows_in if self.timed_rows is None else self.timed_rows) / seconds, 1)
            if seconds > 0 else None,
            **self.extra, "config": self.config,
        }

    def render(self) -> str:
        d = self.to_dict()
        lines = [f"{self.converter}: {d['rows_in']} rows in, {d['kept']} kept "
                 f"({d['seconds']} s, {d['rows_per_second']} rows/s)"]
        for title in ("dropped", "filtered", "notes"):
            for reason, n in d[title].items():
                lines.append(f"  {title:8s} {reason}: {n}")
        lines += [f"  output   {p}" for p in d["outputs"]]
        if d["rejects_file"]:
            lines.append(f"  rejects  {d['rejects_file']}")
        return "\n".join(lines)

    def save(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")
