from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from verl_ext_eval.math.bundled import BUNDLED_PATH, FIELDS, SOURCES, allocate, generate, load_bundled, main, to_jsonl
from verl_ext_eval.math.grading import grade_many

ROOT = Path(__file__).resolve().parents[3]


def test_regenerating_gives_identical_bytes(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["--out", str(a), "--n", "12", "--seed", "3"]) == 0
    # a separate interpreter with another hash seed: nothing may depend on set/dict hashing
    env = {"PYTHONHASHSEED": "987", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-m", "verl_ext_eval.math.bundled", "--out", str(b), "--n", "12", "--seed", "3"],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    assert a.read_bytes() == b.read_bytes()
    c = tmp_path / "c.jsonl"
    main(["--out", str(c), "--n", "12", "--seed", "4"])
    assert c.read_bytes() != a.read_bytes()


def test_committed_file_is_the_default_generation():
    """Fails if reasoning-gym's generators change under us (pin it) or someone edits the data."""
    assert BUNDLED_PATH.read_text(encoding="utf-8") == to_jsonl(generate(200, 0))


def test_committed_rows_are_well_formed():
    rows = load_bundled()
    assert len(rows) == 200
    assert all(tuple(r) == FIELDS for r in rows)
    assert len({r["id"] for r in rows}) == 200
    assert all(r["problem"].strip() and r["answer"].strip() for r in rows)
    assert len({r["subject"] for r in rows}) >= 5 and len({r["level"] for r in rows}) >= 3
    assert len({r["subject"] for r in rows[:20]}) >= 3  # shuffled: a short prefix mixes subjects
    counts = Counter(r["source"] for r in rows)
    assert counts["reasoning_gym/gsm_symbolic"] == 90


def test_every_gold_answer_grades_as_correct_against_itself():
    rows = load_bundled()
    results = grade_many([(f"\\boxed{{{r['answer']}}}", r["answer"]) for r in rows], workers=2, timeout_s=10)
    assert all(r.correct for r in results)


def test_allocate_splits_exactly():
    weights = [s.weight for s in SOURCES]
    assert allocate(200, weights) == weights
    for n in (1, 7, 13, 50, 333):
        counts = allocate(n, weights)
        assert sum(counts) == n and all(c >= 0 for c in counts)
