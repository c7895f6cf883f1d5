"""Cheap answer comparison in the parent process: answer-form rewrites + exact arithmetic, no SymPy.

Two layers. ``rewrite_forms`` turns forms math-verify does not equate into ones it does, keeping the
LaTeX intact (its output is also what the workers get): ``12,\\!345`` / ``12 345`` -> ``12345``, mixed
numbers ``3 1/3`` / ``3\\frac{1}{3}`` -> ``10/3``, ``6.02e23`` -> ``6.02\\times10^{23}``, and
(``verl_ext_eval.math.relations``) solution lists written as equations (``x=2, x=-5``) -> ``2, -5``,
one-variable inequalities -> intervals (``-x > -1`` too), chains of equalities -> their last side
(``x = 5+5+1 = 11`` -> ``x = 11``).
``normalize_answer`` then applies only normalisations that cannot turn a wrong answer right in
practice (Hendrycks' ``is_equiv`` and math-verify apply the same): spacing commands, delimiters,
``\\dfrac``, ``\\text{}`` wrappers and unit words after a number, degrees, ``\\%``, ``\\$``. A decimal
comma (``1,22``, ``0,111``) is read as a decimal point only against a decimal on the other side.

``fast_verdict`` decides only what is certain (``verl_ext_eval.math.forms`` reads the structures):
exact equality of numbers (``eval_number``: integers, decimals, fractions, powers, factorials, with
"huge" for ``10^{10^{10}}`` so SymPy never sees it), of number lists/sets (unordered), of intervals,
of words and choice letters; and inequality where no rounding rule of math-verify could apply.
Everything else goes to math-verify.
"""
from __future__ import annotations

import re
from fractions import Fraction

from verl_ext_eval.math import forms, relations

PERCENT_POLICIES = ("strict", "as_fraction")  # see grading.GradingOptions

_SPACING = re.compile(r"\\[,:;! ]|\\quad|\\qquad|\\left|\\right|\\displaystyle|\\big|\\Big|\\bigg|\\Bigg")
_FRAC_CMDS = re.compile(r"\\[dt]frac")
_FRAC_SHORT = re.compile(r"\\frac\s*(\d)\s*(\d)")  # \frac12 -> \frac{1}{2}
_FRAC_HALF = re.compile(r"\\frac\s*\{([^{}]*)\}\s*(\d)")  # \frac{1}2 -> \frac{1}{2}
_FRAC_HALF2 = re.compile(r"\\frac\s*(\d)\s*\{")  # \frac1{2} -> \frac{1}{2}
_SQRT_SHORT = re.compile(r"\\sqrt\s*(\d+|[a-zA-Z])")  # \sqrt2 -> \sqrt{2}
_TEXT_WRAP = re.compile(r"^\\(?:text|textbf|mathrm|mbox|textrm|mathbf|textit)\s*\{([^{}]*)\}$")
_NUM = r"-?(?:\d+(?:\.\d*)?|\.\d+)"
_TRAILING_UNIT = re.compile(
    r"^(" + _NUM + r")\s*\\(?:text|mbox|mathrm|textrm)\s*\{\s*[A-Za-z][A-Za-z .]*\}(?:\^\{?[23]\}?)?$")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°|\\degree")
_CURRENCY = re.compile(r"^([-+]?)\s*\$\s*(?=\.?\d)")
_THOUSANDS = re.compile(r"^-?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?$")  # "0,111" is a decimal comma
# 12,\!345 / 11,\! 111 (MATH) / 12{,}345 / 12\,345 / 12 345 (thin or plain space): groups of exactly
# three digits; "32, 349" (comma and space) is a list
_SEP_THOUSANDS = re.compile(r"^([-+]?[1-9]\d{0,2})((?:(?:,\\!\s?|\{,\}|\\,|,\\,|\\ |\s|,)\d{3})+)(\.\d+)?$")
_SEP = re.compile(r",\\!\s?|\{,\}|,\\,|\\,|\\ |\s|,")
_MIXED_FRAC = re.compile(r"^([-+]?)(\d+)\s*\\[dt]?frac\s*\{(\d+)\}\s*\{(\d+)\}$")
_MIXED_SLASH = re.compile(r"^([-+]?)(\d+)\s+(\d+)\s*/\s*(\d+)$")
_SCI_E = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+))[eE]([-+]?\d{1,4})$")
_INT = re.compile(r"^[-+]?\d+$")
_DIGIT_GAP = re.compile(r"(?<=\d)\s+(?=\d)")

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


def _rewrite_number(s: str) -> str:
    """Thousands separators, mixed numbers and e-notation of one number (else ``s`` unchanged)."""
    m = _SEP_THOUSANDS.match(s)
    if m:  # "1,2" and "1,23" never match: every group has exactly three digits
        return m.group(1) + _SEP.sub("", m.group(2)) + (m.group(3) or "")
    m = _MIXED_FRAC.match(s) or _MIXED_SLASH.match(s)
    if m:
        sign, whole, num, den = m.groups()
        if 0 < int(num) < int(den):  # 3\frac{4}{3} is not a mixed number: leave it to math-verify
            value = int(whole) * int(den) + int(num)
            return f"{sign}{value}/{den}".lstrip("+")
    m = _SCI_E.match(s)
    if m:
        return f"{m.group(1)}\\times10^{{{int(m.group(2))}}}"
    return s


def rewrite_forms(answer: str) -> str:
    """An answer in a form math-verify equates (see module doc); LaTeX otherwise untouched."""
    s = _strip_delimiters(answer).replace("\u2212", "-").replace("\u2013", "-").replace("\n", " ").strip()
    m = _TEXT_WRAP.match(s)
    if m:
        s = m.group(1).strip()
    s = s.rstrip(".").strip() if not s.endswith("..") else s
    s = _rewrite_number(s)
    listed = relations.equation_list(s)
    if listed is not None:
        return ", ".join(_rewrite_number(v) for v in listed)
    interval = relations.inequality_to_interval(s)
    if interval is not None:
        return interval
    return relations.equation_chain(s) or s


def normalize_answer(answer: str) -> str:
    """Canonical string for cheap equality (see module doc for what it does and does not touch)."""
    s = rewrite_forms(answer)
    m = _TRAILING_UNIT.match(s.replace("\\,", "").strip())
    if m:
        s = m.group(1)
    s = _SPACING.sub(" ", s)
    s = _FRAC_CMDS.sub(r"\\frac", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")
    s = _CURRENCY.sub(r"\1", s.strip())  # "$5", "-$5.50" (a lone dollar sign, not a delimiter pair)
    s = s.strip().rstrip(".").strip()
    if _THOUSANDS.match(s):
        s = s.replace(",", "")
    s = _FRAC_SHORT.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF2.sub(r"\\frac{\1}{", s)
    s = _SQRT_SHORT.sub(r"\\sqrt{\1}", s)
    s = _DIGIT_GAP.sub("{}", s)  # "12 34 5" is not 12345 (only 3-digit groups were thousands)
    s = re.sub(r"\s+", "", s)
    return s


def has_percent(answer: str) -> bool:
    """Whether the answer is written as a percentage (``50\\%``, ``50%``)."""
    return "%" in answer


def as_number(normalized: str) -> Fraction | None:
    """Exact value of a normalised numeric answer (see ``eval_number``), None when it has none or is
    "huge"."""
    if not normalized or len(normalized) > MAX_NUMBER_CHARS:
        return None
    v = forms.eval_number(normalized)
    return v if isinstance(v, Fraction) else None


def _numbers_differ(g: str, p: str, gv, pv) -> bool:
    """Certainly different to math-verify too: it compares floats rounded to 6 decimals, so only
    values apart by more than that (or exact rationals) count."""
    if isinstance(gv, forms.Huge) or isinstance(pv, forms.Huge):
        return not (isinstance(gv, forms.Huge) and isinstance(pv, forms.Huge))
    if "." not in g and "." not in p:
        return True
    diff = abs(gv - pv)
    return diff > Fraction(1, 10**5) and diff > Fraction(1, 10**6) * max(abs(gv), abs(pv))


def _number_verdict(g: str, p: str, g_pct: bool, p_pct: bool, percent: str) -> tuple[bool, str] | None:
    gv = forms.eval_number(g) if len(g) <= MAX_NUMBER_CHARS else None
    pv = forms.eval_number(p) if len(p) <= MAX_NUMBER_CHARS else None
    if gv is None or pv is None:
        return None
    g_read, p_read = [gv], [pv]
    if percent == "as_fraction" and g_pct != p_pct and isinstance(gv, Fraction) and isinstance(pv, Fraction):
        (g_read if g_pct else p_read).append((gv if g_pct else pv) / 100)
    if any(isinstance(a, Fraction) and isinstance(b, Fraction) and a == b for a in g_read for b in p_read):
        return (True, "numeric")
    if all(_numbers_differ(g, p, a, b) for a in g_read for b in p_read):
        return (False, "numeric")
    return None


def _strip_variable(g: str, p: str) -> tuple[str, str] | None:
    """``x=3`` vs ``3`` compares ``3`` with ``3`` (math-verify's rule); ``y=3`` vs ``x=3`` is left to
    math-verify (None)."""
    gm, pm = relations.SINGLE_EQUATION.match(g), relations.SINGLE_EQUATION.match(p)
    if gm and pm:
        return (gm.group(2), pm.group(2)) if gm.group(1) == pm.group(1) else None
    return (gm.group(2) if gm else g, pm.group(2) if pm else p)


_DECIMAL_COMMA = re.compile(r"^(-?\d+),(\d+)$")


def _decimal_comma(s: str, other: str) -> str:
    """``1,22`` read as ``1.22`` when the other side is a decimal number (European notation:
    ``1000,99``, ``0,111``); ``1,234`` stays a thousand and ``1,2`` against ``12`` stays a list."""
    m = _DECIMAL_COMMA.match(s)
    if not m or "." not in other or as_number(other) is None:
        return s
    whole, frac = m.groups()
    if len(frac) == 3 and len(whole.lstrip("-")) <= 3 and not whole.lstrip("-").startswith("0"):
        return s
    return f"{whole}.{frac}"


def fast_verdict(gold: str, pred: str, percent: str = "as_fraction") -> tuple[bool, str] | None:
    """``(correct, reason)`` when the cheap path is certain, else None (ask math-verify)."""
    g = normalize_answer(gold)
    p = normalize_answer(pred)
    if not p:
        return (False, "empty_answer")
    g_pct, p_pct = has_percent(gold), has_percent(pred)
    if g == p:  # 50\% vs 50 too: under either policy the percent sign may be read as a unit
        return (True, "exact")
    word = forms.word_verdict(gold, pred, g, p)
    if word is not None:
        return word
    stripped = _strip_variable(g, p)
    if stripped is None:
        return None
    g, p = stripped
    g, p = _decimal_comma(g, p), _decimal_comma(p, g)
    number = _number_verdict(g, p, g_pct, p_pct, percent)
    if number is not None:
        return number
    listed = forms.list_verdict(g, p)
    if listed is not None:
        return listed
    return forms.interval_verdict(g, p)
