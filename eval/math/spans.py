"""LaTeX math spans in prose (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``) and the
sentences around them (pure, no SymPy).

For responses that state their answer without a box or an "answer" anchor (``so $x \\geq 5$ is the
solution.``, ``$$f(y) = y$$``): ``find_spans`` reads the spans as math-verify's LaTeX extraction
does (inline ``$`` on one line, display ones across lines, ``\\$`` escaped), ``last_math`` joins
the last span with the ones listed before it (``$x=2$ and $x=-5$``), and ``sentences`` splits text
into sentences with the math masked, so a period inside ``\\[ x = 5. \\]`` ends nothing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_SPAN = re.compile(
    r"(?<!\\)\$\$(?P<dd>.+?)(?<!\\)\$\$"
    r"|(?<!\\)\\\[(?P<db>.+?)\\\]"
    r"|(?<!\\)\\\((?P<ip>[^\n]+?)\\\)"
    # inline: not a currency sign ("$5 and $10": an opening $ after a digit or a closing $ before
    # one is not math), one line, \$ inside allowed
    r"|(?<![\\$\d])\$(?!\$)(?P<id>(?:\\\$|[^\n$])+?)(?<!\\)\$(?![\d$])", re.S)
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_COMMAND_ARG = re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname|mathbf|textit|begin|end)\s*\{[^{}]*\}|\\[A-Za-z]+")
# a word of prose inside dollar signs: three letters or more, some lower case ("AB", "NO", "ab" are
# names and products of variables, "per hour" is prose)
_MATH_WORD = re.compile(r"(?<![\\A-Za-z])(?=[A-Za-z]*[a-z])[A-Za-z]{3,}")
MASK = "\x01"  # stands for masked math: no sentence punctuation, no digits, no words
_QED = re.compile(r"^(?:\\hfill\s*)?\\(?:blacksquare|square|Box|qed|boxtimes)$")  # an end-of-proof mark


def without_commands(text: str) -> str:
    """``text`` with LaTeX commands and their ``\\text{}``-like arguments blanked."""
    return _COMMAND_ARG.sub(" ", text)


def prose_words(text: str) -> list[str]:
    """Words outside LaTeX commands and ``\\text{}`` (which may hold a unit or a word answer)."""
    return _WORD.findall(without_commands(text))


@dataclass(frozen=True)
class MathSpan:
    """``text[start:end]`` is the span with its delimiters, ``content`` the math inside."""

    start: int
    end: int
    content: str


def _is_math(content: str) -> bool:
    """Not prose between two dollar signs: at most one word outside commands (``$odd$`` is an
    answer, ``$5 per hour for $`` is not), and not an end-of-proof mark (``$\\blacksquare$``)."""
    c = content.strip()
    return bool(c) and not _QED.match(c) and len(_MATH_WORD.findall(without_commands(c))) <= 1


def _span(m: re.Match | None) -> MathSpan | None:
    content = None if m is None else next(g for g in m.groups() if g is not None)
    return MathSpan(m.start(), m.end(), content.strip()) if content is not None and _is_math(content) else None


def find_spans(text: str) -> list[MathSpan]:
    """Every math span of ``text`` in order."""
    return [s for m in _SPAN.finditer(text) if (s := _span(m)) is not None]


def span_at(text: str, pos: int) -> MathSpan | None:
    """The math span that starts exactly at ``pos`` (an answer line's ``\\[`` running over lines)."""
    return _span(_SPAN.match(text, pos))


def mask(text: str, spans: list[MathSpan]) -> str:
    """``text`` with every span replaced by ``MASK`` characters (same length, so positions hold)."""
    if not spans:
        return text
    parts, last = [], 0
    for s in spans:
        parts += [text[last:s.start], MASK * (s.end - s.start)]
        last = s.end
    parts.append(text[last:])
    return "".join(parts)


_CONNECTOR = re.compile(r"^\s*(?:,|,?\s*and|,?\s*or|\\text\{\s*(?:and|or)\s*\})\s*$")
MAX_JOINED = 6  # math-verify joins up to six spans the same way


def last_math(text: str, spans: list[MathSpan] | None = None) -> tuple[int, int, str] | None:
    """(start, end, value) of the last span, joined with the spans listed right before it by
    ``,``/``and``/``or`` (``$x=2$ and $x=-5$`` -> ``x=2, x=-5``), or None without a span."""
    spans = find_spans(text) if spans is None else spans
    if not spans:
        return None
    group = [spans[-1]]
    for s in reversed(spans[:-1]):
        if len(group) == MAX_JOINED or not _CONNECTOR.match(text[s.end:group[0].start]):
            break
        group.insert(0, s)
    return group[0].start, group[-1].end, ", ".join(s.content for s in group)


# a capital after math starts a sentence too: models drop the period after display math
_BOUNDARY = re.compile(r"[.!?](?=[\s*_)\]]|$)|\n|(?<=\x01)[ \t]+(?=[A-Z])")


def sentences(masked: str) -> list[tuple[int, int]]:
    """(start, end) of each non-blank sentence of an already masked text: ends at ``.``/``!``/``?``
    before a space (not a decimal point), at every newline (markdown lines are statements) and
    before a capital right after math (``$$ ... $$ Therefore, ...``)."""
    out, start = [], 0
    for m in _BOUNDARY.finditer(masked):
        end = m.end()
        if masked[start:end].strip():
            out.append((start, end))
        start = end
    if masked[start:].strip():
        out.append((start, len(masked)))
    return out
