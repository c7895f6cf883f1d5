from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verl_ext_eval.results import ResultsFile, ResultsFileError


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_append_done_records_roundtrip(tmp_path):
    path = tmp_path / "sub" / "results.jsonl"
    rf = ResultsFile(path, "id")
    assert rf.done() == set() and rf.records() == []
    rf.append({"id": "a", "ok": True, "text": "héllo"})
    rf.append({"id": 2, "ok": False})
    rf.append({"id": "a", "ok": False})  # a retry overrides
    again = ResultsFile(path, "id")
    assert again.done() == {"a", 2}
    assert again.records() == [{"id": "a", "ok": False}, {"id": 2, "ok": False}]
    assert len(_lines(path)) == 3 and "héllo" in path.read_text(encoding="utf-8")


def test_torn_last_line_is_dropped_and_file_rewritten(tmp_path):
    path = tmp_path / "r.jsonl"
    good = [json.dumps({"id": i, "v": i * i}) for i in range(3)]
    path.write_text("\n".join(good) + "\n" + '{"id": 3, "v": 9', encoding="utf-8")  # killed mid-write
    rf = ResultsFile(path, "id")
    assert rf.done() == {0, 1, 2}
    assert rf.dropped == 1
    assert _lines(path) == good  # rewritten without the torn line
    rf.append({"id": 3, "v": 9})
    assert [json.loads(x)["id"] for x in _lines(path)] == [0, 1, 2, 3]
    assert ResultsFile(path, "id").dropped == 0


def test_complete_record_missing_its_newline_is_kept(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "x"}\n{"id": "y"}', encoding="utf-8")
    rf = ResultsFile(path, "id")
    assert rf.done() == {"x", "y"} and rf.dropped == 0
    rf.append({"id": "z"})
    assert [json.loads(x)["id"] for x in _lines(path)] == ["x", "y", "z"]


def test_corrupt_middle_line_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": 1}\nnot json\n{"id": 2}\n', encoding="utf-8")
    with pytest.raises(ResultsFileError, match=r"r\.jsonl:2"):
        ResultsFile(path, "id").done()


def test_bad_records_are_rejected(tmp_path):
    rf = ResultsFile(tmp_path / "r.jsonl", "id")
    with pytest.raises(ResultsFileError, match="no 'id' field"):
        rf.append({"key": 1})
    with pytest.raises(ResultsFileError, match="str or int"):
        rf.append({"id": [1]})
    with pytest.raises(ResultsFileError, match="not JSON-serialisable"):
        rf.append({"id": 1, "x": object()})
    assert not (tmp_path / "r.jsonl").exists() or rf.records() == []


_WRITER = """
import sys, time
from verl_ext_eval.results import ResultsFile
rf = ResultsFile(sys.argv[1], "id")
todo = [i for i in range(int(sys.argv[2])) if i not in rf.done()]
for i in todo:
    rf.append({"id": i, "payload": "x" * 2000})
    time.sleep(0.002)
"""


@pytest.mark.parametrize("kill_after", [0.15, 0.3])
def test_real_kill_then_rerun_completes_without_duplicates(tmp_path, kill_after):
    path = tmp_path / "r.jsonl"
    n = 400
    cmd = [sys.executable, "-c", _WRITER, str(path), str(n)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(cmd, env=env)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (len(_lines(path)) if path.exists() else 0) < n, "writer finished before the kill"
    # simulate the worst case too: the kill tore the line being written
    with open(path, "ab") as f:
        f.write(b'{"id": 999999, "payload": "xx')
    subprocess.run(cmd, env=env, check=True)
    ids = [json.loads(x)["id"] for x in _lines(path)]
    assert sorted(ids) == list(range(n))  # no losses, no duplicates, torn line gone
