"""Resumable JSONL results: one record per line, appended with flush + fsync.

A run killed at any point leaves at most one torn last line; opening the file again drops that line
(rewriting the file atomically without it, so later appends start on a fresh line) and reports what
is already done, so a rerun completes the rest without duplicates or losses. A corrupt line that is
not the last cannot come from a kill (two writers?) and is an error naming file and line.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from verl_ext.io import atomic_write

logger = logging.getLogger(__name__)

Key = str | int


class ResultsFileError(ValueError):
    """The results file is damaged beyond a torn last line, or a record is unusable."""


class ResultsFile:
    """Records keyed by ``record[key_field]`` (str or int) in a JSONL file.

    ``done()`` gives the keys already written, ``append(record)`` adds one durably, ``records()``
    returns them deduplicated by key (last wins, first-seen order). ``dropped`` counts torn lines
    removed when the file was opened. Safe to share between threads of one process.
    """

    def __init__(self, path: str | os.PathLike, key_field: str):
        self.path = Path(path)
        self.key_field = key_field
        self.dropped = 0
        self._lock = threading.Lock()
        self._records: dict[Key, dict] | None = None

    def _key(self, record: dict, where: str) -> Key:
        if not isinstance(record, dict):
            raise ResultsFileError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
        if self.key_field not in record:
            raise ResultsFileError(f"{where}: record has no {self.key_field!r} field (keys: {sorted(record)})")
        key = record[self.key_field]
        if isinstance(key, bool) or not isinstance(key, (str, int)):
            raise ResultsFileError(
                f"{where}: field {self.key_field!r} must be a str or int, got {type(key).__name__} {key!r}"
            )
        return key

    def _load(self) -> dict[Key, dict]:
        if self._records is not None:
            return self._records
        records: dict[Key, dict] = {}
        if not self.path.exists():
            self._records = records
            return records
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        # a file ending in "\n" splits into [..., b""]; anything else after the last "\n" is unterminated
        tail = lines.pop()
        good: list[bytes] = []
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = self._key(record, f"{self.path}:{n}")
            except (json.JSONDecodeError, UnicodeDecodeError, ResultsFileError) as e:
                if n == len(lines) and not tail:
                    self.dropped += 1  # torn final line that still got its newline: drop it below
                    break
                raise ResultsFileError(
                    f"{self.path}:{n}: corrupt line that is not the last one ({e}); a killed run only "
                    f"tears the last line, so check for two runs writing the same file, then delete line {n}"
                ) from None
            records[key] = record
            good.append(line)
        if tail.strip():
            try:
                record = json.loads(tail)
                records[self._key(record, f"{self.path}:{len(lines) + 1}")] = record
                good.append(tail)  # complete record whose newline was lost: keep it
            except (json.JSONDecodeError, UnicodeDecodeError, ResultsFileError):
                self.dropped += 1
        repaired = b"".join(line + b"\n" for line in good)
        if repaired != raw:
            if self.dropped:
                logger.warning("%s: dropped %d torn line(s) left by an interrupted run", self.path, self.dropped)
            atomic_write(self.path, repaired)
        self._records = records
        return records

    def done(self) -> set[Key]:
        """Keys already written (repairs a torn last line on first use)."""
        with self._lock:
            return set(self._load())

    def __contains__(self, key: Key) -> bool:
        with self._lock:
            return key in self._load()

    def __len__(self) -> int:
        with self._lock:
            return len(self._load())

    def append(self, record: dict[str, Any]) -> None:
        """Append one record as a JSON line, flushed and fsynced before returning."""
        key = self._key(record, f"{self.path}: append")
        try:
            line = json.dumps(record, ensure_ascii=False)
            data = (line + "\n").encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates in model text: escape them instead
            line = json.dumps(record)
            data = (line + "\n").encode("utf-8")
        except (TypeError, ValueError) as e:
            raise ResultsFileError(f"{self.path}: record {key!r} is not JSON-serialisable: {e}") from e
        with self._lock:
            records = self._load()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            records[key] = json.loads(line)

    def records(self) -> list[dict]:
        """All records, one per key (the last written wins), in first-written order."""
        with self._lock:
            return list(self._load().values())
