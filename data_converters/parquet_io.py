"""What every converter shares on top of ``verl_ext.io`` (the one reader and atomic writer): the
rejects sink (each dropped record with its file, line/row and reason), the reader adapter that
sends malformed lines there, and the run summary.
"""
from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from verl_ext import io as fileio
from verl_ext.io import BadLine, Chunk, ReadError, atomic_write, publish, temp_beside

logger = logging.getLogger(__name__)

PREVIEW_CHARS = 500


class ConversionError(RuntimeError):
    """A problem that stops a conversion; the message names the file, row/field and the fix."""


@dataclass(frozen=True)
class Reject:
    """Why a record was dropped. ``reason`` is a short stable key (counted in the summary)."""

    reason: str
    detail: str = ""


def _preview(record: Any) -> str:
    text = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False, default=str)
    return text[:PREVIEW_CHARS]


def iter_chunks(path: Path, batch_size: int, rejects: "RejectSink", columns: list[str] | None = None) -> Iterator[Chunk]:
    """``verl_ext.io.iter_chunks`` with malformed JSONL lines sent to ``rejects`` (reasons
    ``malformed_json``, ``invalid_utf8``) and unreadable files raised as ``ConversionError``."""

    def bad_line(file: str, line: int, error: BadLine, text: str) -> None:
        rejects.add(file, "line", line, Reject(error.reason, error.detail), text)

    try:
        yield from fileio.iter_chunks(path, batch_size, columns, on_bad_line=bad_line)
    except ReadError as exc:
        raise ConversionError(str(exc)) from exc


class RejectSink:
    """Counts rejects by reason and writes each (with its source location) to a JSONL file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self._tmp = temp_beside(path) if path is not None else None
        self._fh = self._tmp.open("w", encoding="utf-8") if self._tmp is not None else None

    def add(self, file: str, unit: str, position: int, reject: Reject, record: Any = None, *,
            counted: bool = True) -> None:
        """Write the reject; ``counted=False`` lists a row a policy filter dropped (the summary counts
        it under ``filtered``, not here)."""
        if counted:
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
            publish(self._tmp, self.path)

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._tmp.unlink(missing_ok=True)


@dataclass
class Summary:
    """What a run did. ``rows_in == kept + sum(dropped) + sum(filtered)``: ``dropped`` rows are in
    the rejects file, ``filtered`` rows (policy filters over many rows) are counted, and listed in the
    rejects file too where the converter says so (OpenMathReasoning's problem-type filter);
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
        atomic_write(path, json.dumps(self.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n")
