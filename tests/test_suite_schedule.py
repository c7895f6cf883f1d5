"""The suite's schedule (pyproject: -n 2 --dist loadgroup, tests/conftest.py): every ``serial`` test on
one xdist worker, one after another, so two trainings never run at once. An inner pytest run checks it
with the installed pytest and pytest-xdist (xdist's grouping broke once under a new pytest: this fails
when that happens again)."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

INNER = '''
import json, os, time, pytest

def _record(kind, i):
    with open(os.environ["SCHEDULE_LOG"], "a") as f:
        f.write(json.dumps({"kind": kind, "i": i, "worker": os.environ.get("PYTEST_XDIST_WORKER"),
                            "t0": time.time()}) + "\\n")
    time.sleep(0.3)
    with open(os.environ["SCHEDULE_LOG"], "a") as f:
        f.write(json.dumps({"kind": kind + "-end", "i": i, "t1": time.time()}) + "\\n")

@pytest.mark.parametrize("i", range(3))
def test_fast(i):
    _record("fast", i)

@pytest.mark.serial
@pytest.mark.parametrize("i", range(4))
def test_serial(i):
    _record("serial", i)
'''


def test_serial_tests_share_one_worker_and_never_overlap(tmp_path):
    (tmp_path / "conftest.py").write_text("from tests.conftest import pytest_collection_modifyitems  # noqa: F401\n")
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    serial: x\n    slow: x\n")
    log = tmp_path / "schedule.jsonl"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist", "loadgroup",
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "SCHEDULE_LOG": str(log)})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    recs = [json.loads(line) for line in log.read_text().splitlines()]
    starts = [r for r in recs if r["kind"] == "serial"]
    ends = {r["i"]: r["t1"] for r in recs if r["kind"] == "serial-end"}
    assert len(starts) == 4 and len({r["worker"] for r in starts}) == 1, starts
    spans = sorted((r["t0"], ends[r["i"]]) for r in starts)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), spans  # one after another
    assert {r["worker"] for r in recs if r["kind"] == "fast"} - {starts[0]["worker"]}, "the other worker takes the rest"
