"""Readers of answer structures for the cheap path: exact numbers, number lists, intervals, words
and choice letters (pure, no SymPy; equations and inequalities are ``relations``).

Each reader returns None when the text is not (certainly) of its form, so a caller falls back to
math-verify. Numbers are exact (``Fraction``); a value past ``HUGE_DIGITS`` digits (``10^{10^{10}}``,
``(10^6)!``) is a ``Huge`` with its sign, enough to say it differs from any ordinary answer without
SymPy spending minutes on it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

FINITE_DIGITS = 1000  # exact results up to this many digits
HUGE_DIGITS = 10000  # results surely past this many digits are Huge; in between: give up
MAX_FACTORIAL = 450  # 450! has ~1000 digits


@dataclass(frozen=True)
class Huge:
    """A number with more than ``HUGE_DIGITS`` digits (only its sign is kept)."""

    sign: int


class _NotANumber(Exception):
    """The text is not an arithmetic expression we evaluate exactly."""


_TOKEN = re.compile(r"\d+\.?\d*|\.\d+|\\frac|\\cdot|\\times|\\infty|[-+*/^!(){}]")


def _tokens(s: str) -> list[str]:
    out, pos = [], 0
    for m in _TOKEN.finditer(s):
        if m.start() != pos:
            raise _NotANumber(s)
        out.append(m.group())
        pos = m.end()
    if pos != len(s) or not out:
        raise _NotANumber(s)
    return out


def _digits(v: Fraction) -> float:
    return math.log10(abs(v.numerator)) - math.log10(v.denominator) if v else 0.0


def _power(a, b):
    if isinstance(b, Huge) or isinstance(a, Huge):
        if isinstance(a, Fraction) and a > 1 and isinstance(b, Huge) and b.sign > 0:
            return Huge(1)
        if isinstance(a, Huge) and a.sign > 0 and isinstance(b, Fraction) and b >= 1 and b.denominator == 1:
            return a
        raise _NotANumber("huge power")
    if b.denominator != 1:
        raise _NotANumber("root")  # \sqrt-like values are math-verify's
    if a == 0 and b < 0:
        raise _NotANumber("division by zero")
    digits = abs(int(b)) * abs(_digits(a))
    if digits <= FINITE_DIGITS:
        return a ** int(b)
    if digits > HUGE_DIGITS and b > 0 and abs(a) > 1:
        return Huge(1 if a > 0 or b.numerator % 2 == 0 else -1)
    raise _NotANumber("too large")


def _factorial(a):
    if isinstance(a, Huge):
        if a.sign > 0:
            return a
        raise _NotANumber("factorial")
    if a.denominator != 1 or a < 0:
        raise _NotANumber("factorial")
    if a <= MAX_FACTORIAL:
        return Fraction(math.factorial(int(a)))
    if a > 5000:  # 5000! has 16,326 digits
        return Huge(1)
    raise _NotANumber("too large")


def _add(a, b, sign: int):
    if isinstance(a, Huge) and isinstance(b, Huge):
        if a.sign == b.sign * sign:
            return a
        raise _NotANumber("huge - huge")
    if isinstance(a, Huge):
        return a
    if isinstance(b, Huge):
        return Huge(b.sign * sign)
    return a + b * sign


def _mul(a, b, divide: bool):
    if isinstance(a, Huge) or isinstance(b, Huge):
        if divide or a == 0 or b == 0:
            raise _NotANumber("huge quotient")
        sa = a.sign if isinstance(a, Huge) else (1 if a > 0 else -1)
        sb = b.sign if isinstance(b, Huge) else (1 if b > 0 else -1)
        return Huge(sa * sb)
    if divide:
        if b == 0:
            raise _NotANumber("division by zero")
        return a / b
    return a * b


class _Parser:
    """expr := term (+|- term)*; term := unary ((*|/|\\cdot|\\times) unary)*; unary := -unary |
    power; power := postfix (^ exponent)?; exponent: one digit or a braced group (``2^32`` is
    ambiguous LaTeX: rejected); atom: number, (expr), {expr}, \\frac{}{}."""

    def __init__(self, s: str):
        self.toks = _tokens(s)
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise _NotANumber(f"expected {expected}")
        self.i += 1
        return tok

    def parse(self):
        v = self.expr()
        if self.peek() is not None:
            raise _NotANumber("trailing tokens")
        return v

    def expr(self):
        v = self.term()
        while self.peek() in ("+", "-"):
            sign = 1 if self.take() == "+" else -1
            v = _add(v, self.term(), sign)
        return v

    def term(self):
        v = self.unary()
        while self.peek() in ("*", "/", "\\cdot", "\\times"):
            divide = self.take() == "/"
            v = _mul(v, self.unary(), divide)
        return v

    def unary(self):
        if self.peek() in ("-", "+"):
            return _mul(Fraction(-1 if self.take() == "-" else 1), self.unary(), False)
        return self.power()

    def power(self):
        base = self.postfix()
        if self.peek() != "^":
            return base
        self.take()
        if self.peek() == "{":
            exponent = self.group("{", "}")
        else:
            tok = self.take()
            if not (tok.isdigit() and len(tok) == 1):
                raise _NotANumber("ambiguous exponent")
            exponent = Fraction(int(tok))
        if self.peek() == "!":
            raise _NotANumber("ambiguous factorial")
        return _power(base, exponent)

    def postfix(self):
        v = self.atom()
        while self.peek() == "!":
            self.take()
            v = _factorial(v)
        return v

    def group(self, open_: str, close: str):
        self.take(open_)
        v = self.expr()
        self.take(close)
        return v

    def atom(self):
        tok = self.peek()
        if tok == "(":
            return self.group("(", ")")
        if tok == "{":
            return self.group("{", "}")
        if tok == "\\frac":
            self.take()
            num = self.group("{", "}")
            return _mul(num, self.group("{", "}"), True)
        if tok is not None and (tok[0].isdigit() or tok[0] == "."):
            self.take()
            return Fraction(tok)
        raise _NotANumber(f"unexpected {tok}")


def eval_number(normalized: str) -> Fraction | Huge | None:
    """Exact value of a whitespace-free arithmetic answer (``-\\frac{3}{4}``, ``2^{10}``, ``0.5``,
    ``6.02\\times10^{23}``, ``(10^{6})!``), or None when it is anything else."""
    try:
        return _Parser(normalized).parse()
    except (_NotANumber, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def split_top(s: str, sep: str = ",") -> list[str]:
    """``s`` split at ``sep`` outside brackets (``(``, ``[``, ``{``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(s):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    parts.append(s[start:])
    return parts


# -- verdicts on normalised (whitespace-free) answers ---------------------------------------------
def _exact(s: str):
    v = eval_number(s)
    return v if isinstance(v, Fraction) else None


def _as_list(s: str) -> list[str] | None:
    if s.startswith("\\{") and s.endswith("\\}"):
        s = s[2:-2]
    elif s[:1] in "([" or "," not in s:
        return None
    parts = split_top(s.replace("\\{", "{").replace("\\}", "}"))
    return parts if len(parts) >= 2 or s == "" else None


def list_verdict(g: str, p: str) -> tuple[bool, str] | None:
    """Lists and sets of exact numbers compare unordered (math-verify's reading of ``1,2`` and
    ``\\{1,2\\}``); a single number against two or more different numbers is wrong."""
    gl, pl = _as_list(g), _as_list(p)
    if gl is None and pl is None:
        return None
    gv = [_exact(x) for x in (gl if gl is not None else [g])]
    pv = [_exact(x) for x in (pl if pl is not None else [p])]
    if None in gv or None in pv:
        return None
    if sorted(gv) == sorted(pv):
        return (True, "list")
    if set(gv) != set(pv) and "." not in g + p:
        return (False, "list")
    return None


_INTERVAL = re.compile(r"^([(\[])(.+)([)\]])$")


def _endpoint(s: str):
    if s in ("\\infty", "+\\infty", "-\\infty"):
        return Huge(-1 if s.startswith("-") else 1)
    return _exact(s)


def _as_intervals(s: str) -> list[tuple] | None:
    out = []
    for piece in s.split("\\cup"):
        m = _INTERVAL.match(piece)
        if not m:
            return None
        ends = split_top(m.group(2))
        if len(ends) != 2:
            return None
        a, b = _endpoint(ends[0]), _endpoint(ends[1])
        if a is None or b is None:
            return None
        out.append((m.group(1), a, b, m.group(3)))
    return out


def interval_verdict(g: str, p: str) -> tuple[bool, str] | None:
    """Two intervals (or unions) with exact endpoints: equal iff same brackets and endpoints (also
    right as tuples: ``(1,2)`` vs ``(2,1)`` differ either way)."""
    gi, pi = _as_intervals(g), _as_intervals(p)
    if gi is None or pi is None or "." in g + p:
        return None
    return (gi == pi, "interval")


_CHOICE = re.compile(r"^(?:\\text(?:bf)?\{)?\(?([A-E])\)?\}?$")
_WORD = re.compile(r"^[A-Za-z][A-Za-z ]*[A-Za-z]$")


def word_verdict(gold_raw: str, pred_raw: str, g: str, p: str) -> tuple[bool, str] | None:
    """Choice letters (``(B)``, ``\\text{B}``) and words (``\\text{Tuesday}``, ``Tuesday``): equal
    strings, case-insensitive for words. Decided here because math-verify reads a word as a product
    of symbols. Words must be \\text-wrapped on one side or 4+ letters (``xy`` is algebra)."""
    gc, pc = _CHOICE.match(g), _CHOICE.match(p)
    if gc and pc:
        return (gc.group(1) == pc.group(1), "choice")
    if not (_WORD.match(g) and _WORD.match(p)):
        return None
    texty = "\\text" in gold_raw + pred_raw or "\\mathrm" in gold_raw + pred_raw
    if texty or (len(g) >= 4 and len(p) >= 4):
        return (g.casefold() == p.casefold(), "text")
    return None
