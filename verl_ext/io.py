"""File I/O every layer shares: one streaming reader of Parquet / JSONL / JSON-list records that
locates each record (file + line or row), and one atomic writer (temp beside the target + fsync +
rename) that every output goes through, so a crash never leaves a partial file that looks complete.

Callers choose what a bad JSONL line means: ``on_bad_line=None`` raises ``ReadError`` (training
data), a hook can count it and go on (converters send it to their rejects file).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:  # pyarrow is imported where used: atomic_write stays cheap for the eval runners
    import pyarrow as pa
    import pyarrow.parquet as pq

logger = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)
# Whole-file JSON lists are parsed with json.load when ijson is missing: that needs about 5-10x the
# file size in memory (fine for the ~400-item TextCraft list or Fast-Math-R1's 8k rows).
JSON_LOAD_WARN_BYTES = 512 * 1024 * 1024
_DATA_LIST = re.compile(rb'^\{\s*"data"\s*:\s*\[')  # {"data": [...]} exports (HF viewer, Label Studio)


class ReadError(ValueError):
    """A file cannot be read as records; the message names the file and the line or item."""


class BadLine(ValueError):
    """A JSONL line that is not a JSON value. ``reason`` is a stable key (``invalid_utf8`` or
    ``malformed_json``), ``detail`` the full parser message, ``short`` its first clause."""

    def __init__(self, reason: str, error: Exception):
        self.reason, self.detail = reason, str(error)
        self.short = getattr(error, "msg", None) or self.detail
        super().__init__(self.detail)

    def describe(self) -> str:
        return "not valid UTF-8" if self.reason == "invalid_utf8" else "not valid JSON"


# on_bad_line(file, line number, error, the line's text): count it, log it or raise
OnBadLine = Callable[[str, int, BadLine, str], None]


@dataclass(frozen=True)
class Chunk:
    """Records read from one file. ``unit`` is ``"line"`` (1-based JSONL line) or ``"row"``
    (0-based Parquet row or JSON-list index); ``positions[i]`` locates ``records[i]``."""

    file: str
    unit: str
    positions: Sequence[int]
    records: Sequence[Any]


# ---------------------------------------------------------------------------------------- reading


def input_kind(path: str | os.PathLike) -> str:
    """``parquet`` | ``jsonl`` | ``json`` (a JSON list or ``{"data": [...]}``; JSON lines misnamed
    ``.json`` are ``jsonl``)."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if name.endswith(".json"):
        head = _head(path)
        return "json" if not head or head.startswith(b"[") or _DATA_LIST.match(head) else "jsonl"
    raise ReadError(f"{path}: unknown input type; expected .parquet, .jsonl, .ndjson or .json")


def _head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")


def open_parquet(path: str | os.PathLike) -> pq.ParquetFile:
    """A ParquetFile that reads pages as needed instead of pre-buffering whole row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(str(path), pre_buffer=False, buffer_size=1 << 20)
    except (pa.ArrowException, OSError) as e:  # pyarrow raises several types for non-parquet input
        raise ReadError(f"{path}: cannot read as Parquet ({e})") from None


def count_rows(path: str | os.PathLike) -> int | None:
    """Row count from Parquet metadata; ``None`` for JSON inputs (unknown without a full read)."""
    return open_parquet(path).metadata.num_rows if input_kind(path) == "parquet" else None


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """``(1-based line number, raw bytes)`` of each non-blank line."""
    with Path(path).open("rb") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if raw.strip():
                yield line_no, raw


def decode_line(raw: bytes) -> Any:
    """One JSONL line -> its JSON value; raises ``BadLine``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadLine("invalid_utf8", e) from None
    try:
        return json.loads(text)
    except ValueError as e:
        raise BadLine("malformed_json", e) from None


def iter_chunks(path: str | os.PathLike, batch_size: int = 1024, columns: Sequence[str] | None = None,
                on_bad_line: OnBadLine | None = None, kind: str | None = None) -> Iterator[Chunk]:
    """Records of ``path`` in chunks of up to ``batch_size``, with bounded memory: Parquet by
    record batch, JSONL line by line, a JSON list through ``ijson`` when installed.

    ``columns`` keeps only those fields (ones a file lacks are absent); ``kind`` overrides the
    type guessed from the name. A bad JSONL line goes to ``on_bad_line`` or raises ``ReadError``.
    """
    kind = kind or input_kind(path)
    if kind == "parquet":
        yield from _parquet_chunks(Path(path), batch_size, columns)
        return
    pick = _picker(columns)
    chunks = _jsonl_chunks(Path(path), batch_size, on_bad_line) if kind == "jsonl" else _json_list_chunks(Path(path), batch_size)
    for chunk in chunks:
        yield chunk if pick is None else Chunk(chunk.file, chunk.unit, chunk.positions, [pick(r) for r in chunk.records])


def _picker(columns: Sequence[str] | None) -> Callable[[Any], Any] | None:
    if not columns:
        return None
    return lambda r: {c: r[c] for c in columns if c in r} if isinstance(r, dict) else r


def _parquet_chunks(path: Path, batch_size: int, columns: Sequence[str] | None) -> Iterator[Chunk]:
    pf = open_parquet(path)
    wanted = [c for c in columns if c in pf.schema_arrow.names] if columns else None
    start = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=wanted, use_threads=True):
        records = batch.to_pylist()
        yield Chunk(str(path), "row", range(start, start + len(records)), records)
        start += len(records)


def _raise_bad_line(file: str, line_no: int, error: BadLine, text: str) -> None:
    raise ReadError(f"{file}, line {line_no}: {error.describe()} ({error.short})")


def _jsonl_chunks(path: Path, batch_size: int, on_bad_line: OnBadLine | None) -> Iterator[Chunk]:
    on_bad_line = on_bad_line or _raise_bad_line
    positions: list[int] = []
    records: list[Any] = []
    for line_no, raw in iter_lines(path):
        try:
            records.append(decode_line(raw))
            positions.append(line_no)
        except BadLine as e:
            on_bad_line(str(path), line_no, e, raw.decode("utf-8", "replace"))
        if len(records) >= batch_size:
            yield Chunk(str(path), "line", positions, records)
            positions, records = [], []
    if records:
        yield Chunk(str(path), "line", positions, records)


def _json_list_items(path: Path) -> Iterator[Any]:
    prefix = "data.item" if _DATA_LIST.match(_head(path)) else "item"
    try:
        import ijson
    except ImportError:
        size = path.stat().st_size
        if size > JSON_LOAD_WARN_BYTES:
            logger.warning("%s is %.1f GiB and ijson is not installed: json.load needs several times "
                           "that in memory; `pip install ijson` streams it", path, size / 2**30)
        with path.open("r", encoding="utf-8") as fh:
            data = json.load(fh)
        if prefix == "data.item":
            data = data.get("data") if isinstance(data, dict) else data
        if not isinstance(data, list):
            raise ReadError(f"{path}: top level is {type(data).__name__}, expected a JSON list")
        yield from data
        return
    with path.open("rb") as fh:
        try:
            yield from ijson.items(fh, prefix, use_float=True)
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
    except ReadError:
        raise
    except ValueError as exc:  # json.JSONDecodeError and ijson.JSONError are ValueErrors
        raise ReadError(f"{path}: invalid JSON after item {index}: {exc}; fix the file or "
                        "convert it to JSONL so bad lines can be skipped") from exc
    if records:
        yield Chunk(str(path), "row", positions, records)


# ---------------------------------------------------------------------------------------- writing


def temp_beside(path: str | os.PathLike, suffix: str = ".tmp", folder: bool = False) -> Path:
    """A fresh hidden temp file (or folder) next to ``path``, so the final rename stays on one
    filesystem; files get the usual mode (``mkstemp`` makes 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        return Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)
    return Path(name)


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's (or a folder's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """fsync the finished temp file ``tmp``, rename it to ``path`` (atomic on POSIX), then fsync
    the folder so the rename itself survives a power loss."""
    fsync(tmp)
    os.replace(tmp, path)
    try:
        fsync(Path(path).parent)
    except OSError:  # some filesystems refuse to fsync a folder; the rename is still atomic
        pass


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temp path to write ``path`` through (by any library); published when the block ends,
    deleted if it raises."""
    tmp = temp_beside(path, suffix)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temp file + fsync + rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)


def atomic_folder(target: str | os.PathLike, build: Callable[[Path], None], done: str = "config.json") -> Path:
    """Run ``build(tmp_dir)`` and rename the folder to ``target``; skipped when ``target/done``
    exists (idempotent), and another process finishing first wins (crash-safe, race-safe)."""
    target = Path(target)
    if (target / done).exists():
        return target
    tmp = temp_beside(target, folder=True)
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / done).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class ParquetChunkWriter:
    """Rows -> one Parquet file, written in row groups of exactly ``rows_per_group`` rows (the last
    one shorter) to a temp name and published by ``commit()``; the bytes do not depend on how the
    rows were batched. Rows are cast to ``schema`` (a missing key becomes null)."""

    def __init__(self, path: Path, schema: pa.Schema, rows_per_group: int = 4096, compression: str = "snappy") -> None:
        import pyarrow.parquet as pq

        self.path, self.schema, self.rows_per_group = Path(path), schema, rows_per_group
        self._tmp = temp_beside(self.path)
        self._writer = pq.ParquetWriter(str(self._tmp), schema, compression=compression)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0

    @property
    def total_rows(self) -> int:
        """Rows written so far, including those still buffered."""
        return self.rows + self._pending_rows

    def write_rows(self, rows: Sequence[dict]) -> None:
        import pyarrow as pa

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
        import pyarrow as pa

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
        publish(self._tmp, self.path)
        return self.rows

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self._tmp.unlink(missing_ok=True)
