"""The bundled offline math benchmark: ~200 procedural problems from ``reasoning-gym`` 0.1.25.

No PyPI package ships GSM8K/MATH files, so the default eval set is generated once with a fixed
seed and committed as ``eval/math/data/bundled.jsonl`` (fields: id, problem, answer, subject,
level, source). Regenerating with the same ``--n``/``--seed`` gives identical bytes.

    python -m verl_ext_eval.math.bundled --out eval/math/data/bundled.jsonl --n 200 --seed 0
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLED_PATH = Path(__file__).resolve().parent / "data" / "bundled.jsonl"
FIELDS = ("id", "problem", "answer", "subject", "level", "source")


@dataclass(frozen=True)
class Source:
    """One reasoning-gym dataset configuration and its share of the benchmark."""

    key: str  # stable id prefix
    dataset: str  # reasoning_gym dataset name
    subject: str
    level: str
    weight: int  # problems per 200
    config: dict[str, Any] = field(default_factory=dict)


SOURCES: tuple[Source, ...] = (
    Source("gsm_symbolic", "gsm_symbolic", "Word Problems", "Level 2", 90),
    Source("arith_l1", "basic_arithmetic", "Arithmetic", "Level 1", 18,
           dict(min_terms=2, max_terms=3, min_digits=1, max_digits=2)),
    Source("arith_l3", "basic_arithmetic", "Arithmetic", "Level 3", 18,
           dict(min_terms=3, max_terms=5, min_digits=2, max_digits=3)),
    Source("fractions", "fraction_simplification", "Fractions", "Level 1", 22,
           dict(min_value=1, max_value=200, max_factor=30)),
    Source("equations", "simple_equations", "Algebra", "Level 2", 22, dict(max_terms=3, max_value=50)),
    Source("gcd", "gcd", "Number Theory", "Level 1", 10),
    Source("lcm", "lcm", "Number Theory", "Level 1", 10),
    Source("complex", "complex_arithmetic", "Complex Numbers", "Level 2", 10,
           dict(min_real=-6, max_real=6, min_imag=-6, max_imag=6)),
)


def allocate(n: int, weights: list[int]) -> list[int]:
    """Split ``n`` by ``weights`` (largest remainder, ties to the earlier source)."""
    total = sum(weights)
    exact = [n * w / total for w in weights]
    counts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _clean_answer(answer: Any) -> str:
    s = str(answer).strip()
    if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
        s = s.strip("$").strip()
    return s


def generate(n: int = 200, seed: int = 0) -> list[dict[str, str]]:
    """``n`` problems, deterministic in (``n``, ``seed``), shuffled so any prefix mixes subjects."""
    import reasoning_gym

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rows: list[dict[str, str]] = []
    counts = allocate(n, [s.weight for s in SOURCES])
    for index, (source, count) in enumerate(zip(SOURCES, counts)):
        if count == 0:
            continue
        dataset = reasoning_gym.create_dataset(source.dataset, size=count, seed=seed * 1000 + index,
                                               **source.config)
        for k in range(count):
            item = dataset[k]
            rows.append({
                "id": f"{source.key}-{seed}-{k:04d}",
                "problem": str(item["question"]).strip(),
                "answer": _clean_answer(item["answer"]),
                "subject": source.subject,
                "level": source.level,
                "source": f"reasoning_gym/{source.dataset}",
            })
    random.Random(seed).shuffle(rows)
    return rows


def to_jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps({k: r[k] for k in FIELDS}, ensure_ascii=False) + "\n" for r in rows)


def load_bundled(path: str | Path = BUNDLED_PATH) -> list[dict[str, str]]:
    """The committed problems (or another file in the same format)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m verl_ext_eval.math.bundled",
        description="Regenerate the bundled offline math benchmark from reasoning-gym (deterministic).",
        epilog="example: python -m verl_ext_eval.math.bundled --out eval/math/data/bundled.jsonl --n 200 --seed 0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, default=BUNDLED_PATH, help="output JSONL (default: the bundled file)")
    p.add_argument("--n", type=int, default=200, help="number of problems (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    from verl_ext.io import atomic_write

    try:
        rows = generate(args.n, args.seed)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_write(args.out, to_jsonl(rows))
    by_subject: dict[str, int] = {}
    for r in rows:
        by_subject[r["subject"]] = by_subject.get(r["subject"], 0) + 1
    print(f"wrote {len(rows)} problems to {args.out}: {by_subject}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
