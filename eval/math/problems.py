"""Math problems from local files: JSONL, JSON (a list) or Parquet, MATH-style or GSM8K-style.

- ``math``: ``problem`` + ``answer`` (or ``expected_answer``; else the last ``\\boxed{}`` of
  ``solution``), optional ``subject``/``type``, ``level``, ``id``/``unique_id``.
- ``gsm8k``: ``question`` + ``answer`` (a solution ending ``#### N``, or a bare value).
- ``auto``: ``math`` if the file has a ``problem`` column, ``gsm8k`` if it has ``question``.
Row mapping is pure (``problem_from_row``); I/O stays in ``load_problems``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from verl_ext_eval.math.boxes import boxed_answer
from verl_ext_eval.math.extract import gold_answer, gsm8k_answer

FORMATS = ("auto", "math", "gsm8k")
ID_KEYS = ("id", "unique_id", "problem_id", "idx", "index")
MAX_LISTED = 5


class ProblemDataError(ValueError):
    """Rows cannot be read as problems; the message names file, row, field and the fix."""


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str
    subject: str | None = None
    level: str | None = None
    source: str | None = None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas/parquet
        return None
    s = str(value).strip()
    return s or None


def detect_format(columns: Iterable[str], where: str) -> str:
    cols = set(columns)
    if "problem" in cols:
        return "math"
    if "question" in cols:
        return "gsm8k"
    raise ProblemDataError(f"{where}: cannot tell the format from columns {sorted(cols)}; expected 'problem' "
                           f"(MATH-style) or 'question' (GSM8K-style), or set data.format")


def problem_from_row(row: dict, fmt: str, index: int, where: str) -> Problem:
    """One row to a ``Problem`` (``fmt`` is ``math`` or ``gsm8k``); raises ``ProblemDataError``."""
    ref = f"{where} row {index}"
    text_key = "problem" if fmt == "math" else "question"
    problem = _text(row.get(text_key))
    if problem is None:
        raise ProblemDataError(f"{ref}: field {text_key!r} is missing or empty (data.format={fmt})")
    if fmt == "math":
        answer = _text(row.get("answer")) or _text(row.get("expected_answer"))
        if answer is not None:
            answer = gold_answer(answer)
        else:
            solution = _text(row.get("solution"))
            answer = boxed_answer(solution) if solution else None
        if not answer:
            raise ProblemDataError(f"{ref}: no 'answer' (or 'expected_answer') and no \\boxed{{}} in 'solution'; "
                                   "add an answer column or drop the row")
    else:
        raw = _text(row.get("answer"))
        answer = (gsm8k_answer(raw) or raw) if raw else None
        if not answer:
            raise ProblemDataError(f"{ref}: field 'answer' is missing or empty (GSM8K rows end with '#### N')")
    pid = next((_text(row.get(k)) for k in ID_KEYS if _text(row.get(k)) is not None), None)
    return Problem(
        id=pid or f"{Path(where).stem}-{index}",
        problem=problem,
        answer=answer,
        subject=_text(row.get("subject")) or _text(row.get("type")),
        level=_text(row.get("level")),
        source=_text(row.get("source")) or _text(row.get("data_source")),
    )


def read_rows(path: Path) -> list[dict]:
    """Rows of a .jsonl / .json / .parquet file (one reader for the whole project: verl_ext.rows)."""
    from verl_ext.rows import DataError
    from verl_ext.rows import read_rows as read_file_rows

    if path.suffix.lower() not in (".jsonl", ".json", ".parquet"):
        raise ProblemDataError(f"{path}: unsupported file type {path.suffix!r}; use .jsonl, .json or .parquet")
    try:
        return read_file_rows(str(path))
    except DataError as e:
        raise ProblemDataError(f"{e}; fix or delete that row") from None


def problems_from_rows(rows: list[dict], fmt: str, where: str) -> list[Problem]:
    """All rows to problems; every bad row is collected and reported at once (first few listed)."""
    if fmt not in FORMATS:
        raise ProblemDataError(f"data.format={fmt!r}: choose one of {', '.join(FORMATS)}")
    if not rows:
        raise ProblemDataError(f"{where}: no rows")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ProblemDataError(f"{where} row {i}: expected an object, got {type(row).__name__}")
    if fmt == "auto":
        fmt = detect_format(rows[0].keys(), where)
    problems: list[Problem] = []
    errors: list[str] = []
    for i, row in enumerate(rows):
        try:
            problems.append(problem_from_row(row, fmt, i, where))
        except ProblemDataError as e:
            errors.append(str(e))
    seen: dict[str, int] = {}
    for i, p in enumerate(problems):
        if p.id in seen:
            errors.append(f"{where}: id {p.id!r} appears at rows {seen[p.id]} and {i}; ids must be unique "
                          "(results are keyed by id)")
        seen.setdefault(p.id, i)
    if errors:
        more = f"\n  ... and {len(errors) - MAX_LISTED} more" if len(errors) > MAX_LISTED else ""
        raise ProblemDataError(f"{len(errors)} bad row(s):\n  " + "\n  ".join(errors[:MAX_LISTED]) + more)
    return problems


def load_problems(path: str | Path | None, fmt: str = "auto") -> list[Problem]:
    """Problems from ``path``; ``None`` loads the bundled offline benchmark."""
    if path is None:
        from verl_ext_eval.math.bundled import BUNDLED_PATH

        path = BUNDLED_PATH
    path = Path(path)
    if not path.is_file():
        raise ProblemDataError(f"data.path={path}: no such file")
    return problems_from_rows(read_rows(path), fmt, str(path))
