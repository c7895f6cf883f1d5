"""A resumable chunked job's record of finished chunks, rewritten atomically after each one.

A chunk's outputs are renamed into place before its manifest entry is written, so a chunk listed
here is complete; a crash in between only repeats that chunk. The manifest carries a fingerprint
of the job (inputs and options): resuming with different settings is refused rather than mixing
outputs of two configurations.
"""
from __future__ import annotations

import json
from pathlib import Path

from data_converters.parquet_io import ConversionError
from verl_ext.io import atomic_write

VERSION = 1


class Manifest:
    def __init__(self, path: Path, fingerprint: dict) -> None:
        self.path = path
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        self.chunks: dict[str, dict] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConversionError(f"{path}: unreadable manifest ({exc}); delete it to start over") from exc
            if data.get("fingerprint") != self.fingerprint:
                changed = sorted(k for k in set(self.fingerprint) | set(data.get("fingerprint", {}))
                                 if self.fingerprint.get(k) != data.get("fingerprint", {}).get(k))
                raise ConversionError(f"{path}: written by a run with other settings ({', '.join(changed)}); "
                                      "use another --out folder, or --restart to discard that work")
            self.chunks = data.get("chunks", {})

    def done(self, name: str) -> dict | None:
        """The entry of a finished chunk, or None."""
        return self.chunks.get(name)

    def record(self, name: str, entry: dict) -> None:
        self.chunks[name] = entry
        payload = {"version": VERSION, "fingerprint": self.fingerprint, "chunks": self.chunks}
        atomic_write(self.path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
