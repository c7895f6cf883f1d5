"""Fixture writers/readers shared by the converter tests (inputs are built in code, never
downloaded). Exposed as fixtures: with ``--import-mode=importlib`` test folders are not on sys.path."""
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest


def _write_parquet(path: Path, rows, row_group_size: int | None = None, schema=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return path


def _read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def write_parquet():
    return _write_parquet


@pytest.fixture
def read_rows():
    return _read_rows


@pytest.fixture
def read_jsonl():
    return _read_jsonl
