"""Equations and inequalities rewritten into forms math-verify equates (pure, no SymPy): solution
lists (``x = 2 and x = -5`` -> ``2, -5``), chains of equalities (``x = 5+5+1 = 11`` -> ``x = 11``),
one-variable inequalities as intervals (``x > 2``, ``-x \\ge -1``, ``-1 \\le x < 3``).

Each returns None when the text is not (certainly) of its form, so the answer goes to math-verify
as written.
"""
from __future__ import annotations

import re

from verl_ext_eval.math.forms import split_top

# -- solution lists and equations (on the rewritten, not yet whitespace-free answer) ---------------
_LIST_SEP = re.compile(r"\s*(?:\\text\{\s*(?:and|or)\s*\}|\\quad|\\qquad|\band\b|\bor\b|;)\s*")
_EQUATION = re.compile(r"^\s*([a-zA-Z])\s*=\s*([^=<>]+?)\s*$")
SINGLE_EQUATION = re.compile(r"^([a-zA-Z])=([^=<>]+)$")  # on a normalised answer


def equation_list(s: str) -> list[str] | None:
    """``x = 2 and x = -5`` / ``x=2, x=-5`` / ``x = 2 \\text{ or } x = -5`` -> ``["2", "-5"]`` (one
    variable, at least two solutions), else None; ``x=2, y=3`` is a point, not a list."""
    parts = [q for part in split_top(_LIST_SEP.sub(",", s)) if (q := part.strip())]
    if len(parts) < 2:
        return None
    found = [_EQUATION.match(q) for q in parts]
    if not all(found) or len({m.group(1) for m in found}) != 1:
        return None
    return [m.group(2) for m in found]


_CHAIN_HEAD = re.compile(r"^(?:[a-zA-Z](?:_\{?\w+\}?)?|[a-zA-Z]\([a-zA-Z]\))$")
_RELATION = re.compile(r"[<>!]|\\(?:n?eq|le|ge|lt|gt|approx|sim)")


def equation_chain(s: str) -> str | None:
    """The answer a chain of equalities ends on: ``x = 5+5+1 = 11`` -> ``x = 11`` (a variable keeps
    its name, as math-verify reads an assignment), ``5+5+1 = 11 = 22/2`` -> ``22/2``; None for a
    single equation, a list (``a=1, b=2``) or any other relation."""
    if s.count("=") < 2:
        return None
    parts = [p.strip() for p in split_top(s, "=")]
    if len(parts) < 3 or not all(parts) or _RELATION.search(s) or len(split_top(s, ",")) > 1 or ";" in s:
        return None
    return f"{parts[0]} = {parts[-1]}" if _CHAIN_HEAD.match(parts[0]) else parts[-1]


# -- inequalities -> intervals ---------------------------------------------------------------------
_OP_CMD = re.compile(r"\\(?:leqslant|geqslant|leq|geq|le|ge|lt|gt)(?![a-zA-Z])|\u2264|\u2265")
_OP_NAME = {"\\leqslant": "<=", "\\leq": "<=", "\\le": "<=", "\u2264": "<=", "\\lt": "<",
            "\\geqslant": ">=", "\\geq": ">=", "\\ge": ">=", "\u2265": ">=", "\\gt": ">"}
_OP = r"(<=|>=|<|>)"
_BOUND = r"([^<>=]*[^<>=\s][^<>=]*)"
_ONE_SIDED = re.compile(rf"^\s*(-?)\s*([a-zA-Z])\s*{_OP}\s*{_BOUND}$")
_ONE_SIDED_REV = re.compile(rf"^{_BOUND}{_OP}\s*(-?)\s*([a-zA-Z])\s*$")
_TWO_SIDED = re.compile(rf"^{_BOUND}{_OP}\s*([a-zA-Z])\s*{_OP}{_BOUND}$")
_UNION_SEP = re.compile(r"\s*(?:\\text\{\s*or\s*\}|\bor\b|\\cup|\\lor)\s*")
_MEMBER = re.compile(r"^\s*[a-zA-Z]\s*\\in\s*([(\[].*[)\]])\s*$")
_REVERSE = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}


def _interval(var_op: str, bound: str) -> str:
    b = bound.strip()
    return {"<": f"(-\\infty, {b})", "<=": f"(-\\infty, {b}]", ">": f"({b}, \\infty)", ">=": f"[{b}, \\infty)"}[var_op]


def _negate(bound: str) -> str:
    """``-b`` as text: ``-1`` -> ``1``, ``2`` -> ``-2``, ``a+1`` -> ``-(a+1)``."""
    b = bound.strip()
    if b.startswith("-") and len(split_top(b[1:].replace("+", "-"), "-")) == 1:
        return b[1:].strip()
    return f"-{b}" if len(split_top(b.replace("+", "-"), "-")) == 1 else f"-({b})"


def _one_sided(negated: str, var: str, op: str, bound: str) -> tuple[str, str]:
    """``x op b``, or ``-x op b`` read as ``x (reversed op) -b`` (``-x > -1`` is ``x < 1``)."""
    if negated:
        return var, _interval(_REVERSE[op], _negate(bound))
    return var, _interval(op, bound)


def _one_inequality(s: str) -> tuple[str, str] | None:
    """(variable, interval) of ``x > 2``, ``2 < x``, ``-x \\ge -1``, ``-1 \\le x < 3``, else None."""
    s = _OP_CMD.sub(lambda m: _OP_NAME[m.group()], s)
    m = _TWO_SIDED.match(s)
    if m:
        lo, o1, var, o2, hi = (g.strip() for g in m.groups())
        if o1[0] == o2[0] == "<":
            return var, ("[" if o1 == "<=" else "(") + f"{lo}, {hi}" + ("]" if o2 == "<=" else ")")
        return None
    m = _ONE_SIDED.match(s)
    if m:
        return _one_sided(m.group(1), m.group(2), m.group(3), m.group(4))
    m = _ONE_SIDED_REV.match(s)
    if m:  # 2 < x  is  x > 2
        return _one_sided(m.group(3), m.group(4), _REVERSE[m.group(2)], m.group(1))
    return None


def inequality_to_interval(s: str) -> str | None:
    """One-variable inequality (or a union with "or") as interval notation, else None:
    ``x > 2`` -> ``(2, \\infty)``, ``x < -1 \\text{ or } x \\ge 3`` -> ``(-\\infty, -1) \\cup [3, \\infty)``."""
    member = _MEMBER.match(s)
    if member:  # x \in (2, \infty) is the interval itself
        return member.group(1)
    pieces = [q for q in _UNION_SEP.split(s) if q.strip()]
    read = [_one_inequality(q) for q in pieces]
    if not read or not all(read) or len({r[0] for r in read}) != 1:
        return None
    return " \\cup ".join(r[1] for r in read)
