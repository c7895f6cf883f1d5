"""math-verify on two answer strings, with its signal-based timeouts off (worker side).

Runs inside ``BoundedPool`` workers, which bound the time; math-verify's own ``signal.alarm``
timeouts raise ``ValueError`` off the main thread (0.9.0), so they are disabled here. Importing
this module imports SymPy (~1 s): the parent process never needs to.
"""
from __future__ import annotations

import logging
import re

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from sympy.core.relational import Equality, Relational, Unequality

# "Timeout is disabled ..." is logged once per process; it is deliberate here
logging.getLogger("math_verify").setLevel(logging.ERROR)

_CONFIG = (LatexExtractionConfig(), ExprExtractionConfig())
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")


def parse_answer(answer: str) -> list:
    """SymPy forms of one extracted answer string (``[]`` when math-verify finds nothing)."""
    s = _UNESCAPED_DOLLAR.sub("", answer).strip()
    if not s:
        return []
    parsed = parse(f"${s}$", extraction_config=_CONFIG, parsing_timeout=None)
    if not parsed:
        parsed = parse(f"\\boxed{{{s}}}", extraction_config=_CONFIG, parsing_timeout=None)
    return parsed


_PERCENT = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*\\?%")


def _as_fraction(answer: str) -> str:
    """``12.5\\%`` -> ``\\frac{12.5}{100}`` (the ``as_fraction`` percent policy)."""
    return _PERCENT.sub(r"\\frac{\1}{100}", answer)


def _inequality_sets(parsed: list) -> list:
    """Solution sets of the one-variable inequalities among ``parsed`` (``2x > 4`` -> ``(2, oo)``).
    Equations are left out: ``x^2 - 3x + 2 = 0`` is not the answer ``\\{1, 2\\}``."""
    out = []
    for e in parsed:
        if isinstance(e, Relational) and not isinstance(e, (Equality, Unequality)) and len(e.free_symbols) == 1:
            try:
                out.append(e.as_set())
            except Exception:  # noqa: BLE001 - SymPy cannot solve it: no set
                pass
    return out


def verify_strings(gold: str, pred: str, percent: str = "as_fraction") -> bool:
    """math-verify's verdict, gold first (its comparison is asymmetric). math-verify drops a
    percent sign (``50\\%`` = ``50``, the ``strict`` policy); ``as_fraction`` also accepts the side
    without one equal to the percentage over 100 (``0.5`` for ``50\\%``). A predicted inequality is
    also compared as its solution set: the parent rewrites ``x < 1`` golds as intervals, and
    math-verify compares a set gold with a relation only the other way round."""
    g = parse_answer(gold)
    p = parse_answer(pred)
    if not g or not p:
        return False
    if verify(g, p, timeout_seconds=None):
        return True
    sets = _inequality_sets(p)
    if sets and verify(g, sets, timeout_seconds=None):
        return True
    if percent == "as_fraction" and ("%" in gold) != ("%" in pred):
        g2, p2 = (parse_answer(_as_fraction(gold)), p) if "%" in gold else (g, parse_answer(_as_fraction(pred)))
        return bool(g2 and p2 and verify(g2, p2, timeout_seconds=None))
    return False


# one pair per kind of comparison: the first of each kind costs 0.1-0.8 s (parser and SymPy set-up)
_WARM_UP = (("(4,12)", "[4, 12]"), ("x^2+8x+16", "(x+4)^2"), (r"\{15, 7\}", r"\{7, 15\}"), ("3", "x=3"),
            (r"\frac{1}{2}", "0.5"), ("2i+3", "3+2i"), (r"2\pi", r"\pi \cdot 2"), (r"\sqrt{12}", r"2\sqrt{3}"),
            ("50", r"50\%"), (r"\begin{pmatrix}1\\2\end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
            (r"\text{(A)}", "A"), ("x>2", r"(2,\infty)"), (r"\frac{1}{3}\%", r"\frac{1}{300}"))


def warm_up() -> None:
    """Run each kind of comparison once, so a worker's first real samples are not charged for it
    (``BoundedPool`` runs this before the worker reports ready)."""
    for gold, pred in _WARM_UP:
        verify_strings(gold, pred)
