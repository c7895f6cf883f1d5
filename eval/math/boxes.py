"""The one brace-balanced ``\\boxed{}`` / ``\\fbox{}`` reader of the project (pure, no SymPy).

The grader (``extract``) and the data converters read boxes through here, so they cannot drift:
``find_boxed`` (every complete box), ``last_boxed`` (Hendrycks MATH's rule: the last ``\\boxed``,
else the last ``\\fbox``), ``boxed_answer`` (the final answer split over several boxes, joined into
one list), ``strip_boxed`` (unwrap for training text). An unbalanced ``\\boxed{12`` (a truncated
trace) is never a match, and nothing here cuts or rewrites it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

BOXED_COMMANDS = ("\\boxed", "\\fbox")


@dataclass(frozen=True)
class BoxedMatch:
    """One ``\\boxed``/``\\fbox`` occurrence: ``text[start:end]`` is the whole command, ``content``
    its argument (without the braces)."""

    command: str
    start: int
    end: int
    content: str


_BRACE = re.compile(r"\\.|[{}]", re.S)


def _closing_braces(text: str) -> dict[int, int]:
    """``{`` position -> index just past its ``}``, for every brace that closes; escaped ``\\{``/
    ``\\}`` do not count. One pass for the whole text: a response that repeats ``\\boxed{``
    without closing it (a generation loop) costs linear time, not one scan per box."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE.finditer(text):
        ch = m.group()
        if ch == "{":
            stack.append(m.start())
        elif ch == "}" and stack:
            pairs[stack.pop()] = m.end()
    return pairs


_BARE_ARG = re.compile(r"[ \t]+([^\s$]+)")


def find_boxed(text: str, commands: tuple[str, ...] = BOXED_COMMANDS) -> list[BoxedMatch]:
    """Every complete ``\\boxed{...}`` / ``\\fbox{...}`` in ``text`` in order of position, nested
    braces balanced. ``\\boxed {x}`` (space before the brace) and ``\\boxed 5`` (bare argument, up to
    whitespace or ``$``) are accepted; ``\\boxedfoo`` (another macro) and an unclosed ``\\boxed{``
    are not matches."""
    out: list[BoxedMatch] = []
    closing: dict[int, int] | None = None
    for command in commands:
        pos = text.find(command)
        while pos >= 0:
            after = pos + len(command)
            nxt = text[after] if after < len(text) else ""
            if nxt.isalpha():  # \boxedx is a different macro
                pos = text.find(command, after)
                continue
            j = after
            while j < len(text) and text[j] in " \t\n":
                j += 1
            if j < len(text) and text[j] == "{":
                if closing is None:
                    closing = _closing_braces(text)
                end = closing.get(j)
                if end is not None:
                    out.append(BoxedMatch(command[1:], pos, end, text[j + 1:end - 1]))
            else:
                m = _BARE_ARG.match(text, after)
                if m:
                    arg = m.group(1).rstrip(".,;")
                    if arg:
                        out.append(BoxedMatch(command[1:], pos, m.end(), arg))
            pos = text.find(command, after)
    out.sort(key=lambda b: b.start)
    return out


def last_boxed_match(text: str) -> BoxedMatch | None:
    """The last complete ``\\boxed``; if there is none, the last ``\\fbox`` (Hendrycks' order)."""
    for command in BOXED_COMMANDS:
        found = find_boxed(text, (command,))
        if found:
            return found[-1]
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete ``\\boxed{}`` (else ``\\fbox{}``) in ``text``, or None.

    >>> last_boxed(r"so $\\boxed{\\frac{1}{2}}$ and \\boxed{\\{1,2\\}}")
    '\\\\{1,2\\\\}'
    """
    m = last_boxed_match(text)
    return None if m is None else m.content


# -- several boxes, one answer ---------------------------------------------------------------------
# What may stand between two boxes of one answer, once \text{} wrappers are opened and math
# delimiters / spacing / list bullets dropped: a unit after the first box, a part label, list
# connectors, and an assignment before the next box. "\boxed{1}, \boxed{2}", "\boxed{(2,2)} \quad \text{and} \quad
# \boxed{(6,2)}", "$y_1 = \boxed{a}$ and $y_2 = \boxed{b}$", "\boxed{1} papers and \boxed{2} bins".
# A sentence ("\boxed{5}. Then ... \boxed{7}"), "finally", "equivalently", "=" restatements do not.
_WRAPPER = re.compile(r"\\(?:text|textrm|textbf|mbox|mathrm)\s*\{([^{}]*)\}")
_NOISE = re.compile(r"\$|\\[()\[\]]|\\(?:quad|qquad|[,;:! ])|~|\\\\|&|\*\*")
_BULLET = re.compile(r"(?m)^[ \t]*[-*\u2022][ \t]+")
_LABEL = r"(?:(?:for\s+)?(?:part\s+)?\(?[a-z0-9]{1,3}[).:]\s*)?"  # "(b)", "b)", "part 2:", "2."
_ASSIGN = r"(?:[a-z](?:_\{?[a-z0-9]+\}?)?(?:\([a-z]\))?\s*=\s*)?"
_JOINER = re.compile(rf"^(?:[a-z]{{1,8}}\s*)?{_LABEL}(?:(?:,|;|\band\b|\bor\b)\s*)+{_LABEL}{_ASSIGN}$")
_ADJACENT = re.compile(rf"^{_LABEL}{_ASSIGN}$")  # nothing, a part label alone, "x ="
MAX_JOIN_CHARS = 80  # longer text between two boxes is a sentence, not a separator


def _joins(between: str) -> bool:
    """Whether the text between two boxes separates items of one answer (see ``_JOINER``)."""
    if len(between) > MAX_JOIN_CHARS:
        return False
    s = _NOISE.sub(" ", _WRAPPER.sub(r" \1 ", _BULLET.sub(" ", between)))
    s = " ".join(s.split()).lower()
    return bool(_ADJACENT.match(s) or _JOINER.match(s))


def final_box_group(text: str) -> list[BoxedMatch]:
    """The last box and the boxes chained to it by list separators, in order (``[]`` when there is
    no complete box). ``\\fbox`` is read only when there is no ``\\boxed`` (as ``last_boxed``)."""
    for command in BOXED_COMMANDS:
        found = find_boxed(text, (command,))
        if found:
            break
    else:
        return []
    outer: list[BoxedMatch] = []
    for m in found:  # boxes nested in another are part of it, not items of the list
        if not outer or m.start >= outer[-1].end:
            outer.append(m)
    if found[-1] is not outer[-1]:
        return [found[-1]]  # the last box sits inside another: read the inner one, as last_boxed
    group = [outer[-1]]
    for m in reversed(outer[:-1]):
        if not _joins(text[m.end:group[0].start]):
            break
        group.insert(0, m)
    return group


def join_group(group: list[BoxedMatch]) -> str:
    """One answer from a box group: the contents in order, comma-separated (``\\boxed{1},
    \\boxed{2}`` -> ``1, 2``: order kept, so tuples stay tuples, and a set gold compares unordered);
    a box repeated verbatim counts once."""
    parts = [m.content.strip() for m in group]
    if len({"".join(p.split()) for p in parts}) == 1:
        return parts[-1]
    return ", ".join(parts)


def boxed_answer(text: str) -> str | None:
    """The final boxed answer of ``text`` (``join_group`` of ``final_box_group``), None without a
    complete box."""
    group = final_box_group(text)
    return join_group(group) if group else None


def unwrap_boxed(text: str) -> str:
    """``\\boxed{x}`` (optionally inside ``$...$``) becomes ``x``; any other text is returned
    stripped. For gold answers stored with their box."""
    s = text.strip()
    inner = s
    if len(inner) >= 2 and inner[0] == "$" and inner[-1] == "$":
        inner = inner.strip("$").strip()
    found = find_boxed(inner)
    if len(found) == 1 and found[0].start == 0 and found[0].end == len(inner):
        return found[0].content.strip()
    return s


def strip_boxed(text: str) -> str:
    """Replace every complete ``\\boxed{x}`` / ``\\fbox{x}`` by ``x`` (outermost first; nested
    boxes are unwrapped too). An unclosed ``\\boxed{`` stays exactly as written."""
    found = find_boxed(text)
    if not found:
        return text
    parts: list[str] = []
    last = 0
    for m in found:
        if m.start < last:  # nested inside the previous one: handled by the recursion below
            continue
        parts.append(text[last:m.start])
        parts.append(strip_boxed(m.content))
        last = m.end
    parts.append(text[last:])
    return "".join(parts)
