"""Tokenized samples as one Arrow IPC file, read memory-mapped.

A ``TokenStore`` serves ``input_ids`` / ``loss_mask`` of sample ``i`` as zero-copy numpy views into
the mapped file, so a rank's private memory does not grow with the number of samples and forked
DataLoader workers share the same page-cache pages (Python lists of arrays would be copied page by
page on every worker's first touch, pytorch #5902). The same class holds an in-memory table when
the cache is off, so both paths serve identical items.

Columns: ``input_ids`` list<int32>, ``loss_mask`` list<int8>, ``file`` int32 (index into the
store's file list), ``row`` int64, ``turn`` int32 (message index in ``per_turn`` mode, -1 otherwise),
``length`` int32 (tokens before truncation).
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from verl_ext.rows import RowRef

DATA_FILE = "data.arrow"

SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("loss_mask", pa.list_(pa.int8())),
        ("file", pa.int32()),
        ("row", pa.int64()),
        ("turn", pa.int32()),
        ("length", pa.int32()),
    ]
)


@dataclass(frozen=True)
class Sample:
    """One training sample: ids + mask (1 = target), where it came from, its length before truncation."""

    input_ids: np.ndarray
    loss_mask: np.ndarray
    ref: RowRef
    turn: int = -1
    length: int = 0


def to_batch(samples: list[Sample], file_index: dict[str, int]) -> pa.RecordBatch:
    """Encoded samples -> one record batch of ``SCHEMA`` (built from flat buffers, no Python lists)."""
    lengths = np.fromiter((len(s.input_ids) for s in samples), dtype=np.int32, count=len(samples))
    offsets = np.zeros(len(samples) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.concatenate([s.input_ids for s in samples]).astype(np.int32) if samples else np.zeros(0, np.int32)
    mask = np.concatenate([s.loss_mask for s in samples]).astype(np.int8) if samples else np.zeros(0, np.int8)
    off = pa.array(offsets)
    return pa.RecordBatch.from_arrays(
        [
            pa.ListArray.from_arrays(off, pa.array(ids)),
            pa.ListArray.from_arrays(off, pa.array(mask)),
            pa.array([file_index[s.ref.path] for s in samples], pa.int32()),
            pa.array([s.ref.row for s in samples], pa.int64()),
            pa.array([s.turn for s in samples], pa.int32()),
            pa.array([s.length for s in samples], pa.int32()),
        ],
        schema=SCHEMA,
    )


class TokenStore:
    """Random access to the samples of an Arrow table (mapped from ``path`` or held in memory)."""

    def __init__(self, table: pa.Table, files: list[str], path: str | None = None):
        self.files = list(files)
        self.path = path
        self._attach(table)

    @classmethod
    def open(cls, folder: str, files: list[str]) -> "TokenStore":
        path = os.path.join(folder, DATA_FILE)
        return cls(_map(path), files, path)

    def _attach(self, table: pa.Table) -> None:
        self.table = table
        ids, mask = table.column("input_ids"), table.column("loss_mask")
        self._starts: list[int] = []
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        n = 0
        for ci, cm in zip(ids.chunks, mask.chunks):
            if len(ci) == 0:
                continue
            self._starts.append(n)
            n += len(ci)
            # offsets of both lists are equal by construction; values are zero-copy views of the map
            self._chunks.append((ci.offsets.to_numpy(), ci.values.to_numpy(), cm.values.to_numpy()))
        self._len = n

    def __len__(self) -> int:
        return self._len

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids int32 view, loss_mask int8 view) of sample ``i``."""
        if not 0 <= i < self._len:
            raise IndexError(f"sample {i} out of range ({self._len} samples)")
        c = bisect.bisect_right(self._starts, i) - 1
        offsets, ids, mask = self._chunks[c]
        j = i - self._starts[c]
        a, b = int(offsets[j]), int(offsets[j + 1])
        return ids[a:b], mask[a:b]

    def ref(self, i: int) -> RowRef:
        return RowRef(self.files[self.table.column("file")[i].as_py()], self.table.column("row")[i].as_py())

    def lengths(self) -> np.ndarray:
        """Tokens per sample after truncation (what is trained on)."""
        return np.concatenate([np.diff(off) for off, _, _ in self._chunks] or [np.zeros(0, np.int64)])

    def trained_counts(self) -> np.ndarray:
        """Trained (loss) tokens per sample, summed chunk by chunk over the mapped views (no copy
        of the whole mask column)."""
        out = []
        for offsets, _, mask in self._chunks:
            csum = np.concatenate([[0], np.cumsum(mask[offsets[0]: offsets[-1]], dtype=np.int64)])
            out.append(csum[offsets[1:] - offsets[0]] - csum[offsets[:-1] - offsets[0]])
        return np.concatenate(out or [np.zeros(0, np.int64)])

    # DataLoader workers started with spawn/forkserver re-map the file instead of pickling the table
    def __getstate__(self) -> dict:
        return {"files": self.files, "path": self.path, "table": None if self.path else self.table}

    def __setstate__(self, state: dict) -> None:
        self.files, self.path = state["files"], state["path"]
        self._attach(_map(self.path) if self.path else state["table"])


def _map(path: str) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(path, "r")).read_all()


def write(folder: str, batches) -> int:
    """Write record batches to ``folder/data.arrow``; returns the number of samples written."""
    n = 0
    with pa.OSFile(os.path.join(folder, DATA_FILE), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer:
        for batch in batches:
            writer.write_batch(batch)
            n += batch.num_rows
    return n
