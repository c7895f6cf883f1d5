"""Cheap answer comparison in the parent process: safe string normalisation + exact rationals.

Only normalisations that cannot turn a wrong answer into a right one in practice (the same ones
Hendrycks' ``is_equiv`` and math-verify apply): spacing and sizing commands, ``$`` and ``\\(``
delimiters, ``\\dfrac``/``\\tfrac``, ``\\frac12``, ``\\text{}`` wrappers and trailing unit words after
a number, degrees, ``\\%``, ``\\$``, thousands commas in numbers (``1,000``; never ``1,2``),
unicode minus, a trailing period. Anything else (``x=3`` vs ``3``, ``0.5`` vs ``50\\%``, sets,
intervals) is left to math-verify. ``fast_verdict`` decides only what is certain: equal strings,
equal exact numbers, or two different integers.
"""
from __future__ import annotations

import re
from fractions import Fraction

_SPACING = re.compile(r"\\[,:;! ]|\\quad|\\qquad|\\left|\\right|\\displaystyle|\\big|\\Big|\\bigg|\\Bigg")
_FRAC_CMDS = re.compile(r"\\[dt]frac")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d)\s*(\d)")  # \frac12 -> \frac{1}{2}
_FRAC_HALF = re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)")  # \frac{1}2 -> \frac{1}{2}
_FRAC_HALF2 = re.compile(r"\\frac\s*(\d)\s*\{")  # \frac1{2} -> \frac{1}{2}
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\d+|[a-zA-Z])")  # \sqrt2 -> \sqrt{2}
_TEXT_WRAP = re.compile(r"^\\(?:text|textbf|mathrm|mbox|textrm)\s*\{([^{}]*)\}$")
_NUM = r"-?(?:\d+(?:\.\d*)?|\.\d+)"
_TRAILING_UNIT = re.compile(
    r"^(" + _NUM + r")\s*\\(?:text|mbox|mathrm|textrm)\s*\{\s*[A-Za-z][A-Za-z .]*\}(?:\^\{?[23]\}?)?$")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°|\\degree")
_CURRENCY = re.compile(r"^([-+]?)\s*\$\s*(?=\.?\d)")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_THIN_THOUSANDS = re.compile(r"(?<=\d)(?:\\,|\{,\}|\\ )(?=\d{3}(?!\d))")  # 1\,000 / 1{,}000
_INT = re.compile(r"^[-+]?\d+$")
_DECIMAL = re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)$")
_FRAC_NUM = re.compile(r"^([-+]?)\\frac\{([-+]?\d+)\}\{([-+]?\d+)\}$")
_SLASH_NUM = re.compile(r"^([-+]?\d+)/([-+]?\d+)$")

MAX_NUMBER_CHARS = 600  # longer literals go to the worker (int() would refuse past 4300 digits anyway)


def _strip_delimiters(s: str) -> str:
    s = s.strip()
    changed = True
    while changed:
        changed = False
        for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if len(s) >= len(left) + len(right) and s.startswith(left) and s.endswith(right):
                s = s[len(left):len(s) - len(right)].strip()
                changed = True
    return s


def normalize_answer(answer: str) -> str:
    """Canonical string for cheap equality (see module doc for what it does and does not touch)."""
    s = _strip_delimiters(answer)
    s = s.replace("\u2212", "-").replace("\u2013", "-").replace("\n", " ")
    m = _TEXT_WRAP.match(s)
    if m:
        s = m.group(1).strip()
    m = _TRAILING_UNIT.match(s.replace("\\,", "").strip())
    if m:
        s = m.group(1)
    s = _THIN_THOUSANDS.sub(",", s)
    s = _SPACING.sub(" ", s)
    s = _FRAC_CMDS.sub(r"\\frac", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")
    s = _CURRENCY.sub(r"\1", s.strip())  # "$5", "-$5.50" (a lone dollar sign, not a delimiter pair)
    s = s.strip()
    s = s.strip().rstrip(".").strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF2.sub(r"\\frac{\1}{", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = re.sub(r"\s+", "", s)
    return s


def as_number(normalized: str) -> Fraction | None:
    """Exact value of an integer, decimal, ``a/b`` or ``\\frac{a}{b}`` literal (already normalised),
    else None."""
    s = normalized
    if not s or len(s) > MAX_NUMBER_CHARS:
        return None
    try:
        if _DECIMAL.match(s):
            return Fraction(s)
        m = _FRAC_NUM.match(s) or _SLASH_NUM.match(s)
        if m:
            groups = m.groups()
            sign, num, den = ("",) + groups if len(groups) == 2 else groups
            if int(den) == 0:
                return None
            value = Fraction(int(num), int(den))
            return -value if sign == "-" else value
    except (ValueError, ZeroDivisionError):
        return None
    return None


def fast_verdict(gold: str, pred: str) -> tuple[bool, str] | None:
    """``(correct, reason)`` when the cheap path is certain, else None (ask math-verify)."""
    g = normalize_answer(gold)
    p = normalize_answer(pred)
    if not p:
        return (False, "empty_answer")
    if g == p:
        return (True, "exact")
    gv, pv = as_number(g), as_number(p)
    if gv is not None and pv is not None:
        if gv == pv:
            return (True, "numeric")
        if _INT.match(g) and _INT.match(p):
            return (False, "numeric")
    return None
