"""Final-answer extraction from model responses and gold solutions (pure, no SymPy).

The one brace-balanced ``\\boxed{}`` reader of the project: the data converters import
``last_boxed`` / ``find_boxed`` / ``strip_boxed`` from here, so no second copy can drift.

Order of search in a response (``extract_answer``): the last ``\\boxed{}`` (falling back to the last
``\\fbox{}``, as Hendrycks MATH does); then the last answer stated in prose, an ``Answer:`` line
(Minerva / DAPO, ``**Answer:** X``) or "the (final) answer is X" (Llama, Qwen and R1 without a box),
whichever comes later; then the last GSM8K ``#### N`` line; then a multiple-choice letter on the last
line (``(B)``, ``B) 12``, ``option B``); then a bare value alone on the last line. When a think block
is present only the text after the last ``</think>`` is searched; a response that opens ``<think>``
and never closes it has no final answer. Prose values are cut at the sentence end and lose ``$``,
bold, trailing punctuation and unit words; a value that is itself prose ("the answer is not 5, ...",
"the answer is easy to see") is no answer (``prose.py`` has the rules).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from verl_ext_eval.math.prose import answer_is, clean_value, last_line_answer

BOXED_COMMANDS = ("\\boxed", "\\fbox")

# extraction methods recorded per sample
BOXED = "boxed"
FBOX = "fbox"
ANSWER_LINE = "answer_line"
ANSWER_IS = "answer_is"  # "the answer is X" in a sentence
CHOICE = "choice"  # a multiple-choice letter on the last line
LAST_LINE = "last_line"  # a bare value alone on the last line
GSM8K = "gsm8k"
NONE = "none"
UNCLOSED_THINK = "unclosed_think"

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class BoxedMatch:
    """One ``\\boxed``/``\\fbox`` occurrence: ``text[start:end]`` is the whole command, ``content``
    its argument (without the braces)."""

    command: str
    start: int
    end: int
    content: str


@dataclass(frozen=True)
class Extraction:
    """The final answer found in a response (``answer`` is None when there is none) and how."""

    answer: str | None
    method: str


def _balanced_end(text: str, open_pos: int) -> int | None:
    """Index just past the ``}`` closing the ``{`` at ``open_pos``; escaped ``\\{``/``\\}`` do not
    count. None when the braces never balance (a truncated response)."""
    depth = 0
    i = open_pos
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character (\{, \}, \\)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


_BARE_ARG = re.compile(r"[ \t]+([^\s$]+)")


def find_boxed(text: str, commands: tuple[str, ...] = BOXED_COMMANDS) -> list[BoxedMatch]:
    """Every complete ``\\boxed{...}`` / ``\\fbox{...}`` in ``text`` in order of position, nested
    braces balanced. ``\\boxed {x}`` (space before the brace) and ``\\boxed 5`` (bare argument, up to
    whitespace or ``$``) are accepted; ``\\boxedfoo`` (another macro) and an unclosed ``\\boxed{``
    are not matches."""
    out: list[BoxedMatch] = []
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
                end = _balanced_end(text, j)
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
    boxes are unwrapped too)."""
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


def final_segment(response: str) -> str | None:
    """The part of ``response`` that may hold the final answer: after the last ``</think>`` when
    there is one (Qwen3 templates put ``<think>`` in the prompt, so a lone ``</think>`` counts),
    None when ``<think>`` is opened and never closed, else the whole response."""
    close = response.rfind(THINK_CLOSE)
    if close >= 0:
        return response[close + len(THINK_CLOSE):]
    if THINK_OPEN in response:
        return None
    return response


_ANSWER_LINE = re.compile(r"(?im)^[ \t>*#_]*(?:final[ \t]+)?answer[ \t]*[*_]*[ \t]*:[ \t*_]*(.*)$")
_FINAL_IS = re.compile(r"(?i)^(?:the[ \t]+)?final[ \t]+answer[ \t]+is[ \t:]*")
_HOPE = re.compile(r"(?i)[.,;]?[ \t]*I[ \t]+hope[ \t]+it[ \t]+is[ \t]+correct\.?[ \t]*$")
# a number after the marker: "#### Step 1" is a markdown heading, not an answer
_GSM8K = re.compile(r"(?m)^[ \t]*####[ \t]*([-+]?[ \t]*(?:\\?\$)?[ \t]*\.?\d.*?)[ \t]*$")


def _clean_answer_line(value: str) -> str:
    v = value.strip()
    v = _FINAL_IS.sub("", v)
    v = _HOPE.sub("", v)
    v = v.strip().strip("*_").strip()
    v = v.rstrip(".").strip()
    if len(v) >= 2 and v[0] == "$" and v[-1] == "$":
        v = v.strip("$").strip()
    return v


def _answer_line_match(text: str) -> tuple[int, str] | None:
    """(position, value) of the last ``Answer: X`` line with a value."""
    for m in reversed(list(_ANSWER_LINE.finditer(text))):
        if m.group(1).strip():
            value = clean_value(_clean_answer_line(m.group(1)), explicit=True)
            if value:
                return m.start(), value
    return None


def answer_line(text: str) -> str | None:
    """Value of the last ``Answer: X`` line (also ``Final Answer: The final answer is $X$. I hope it
    is correct.``, Minerva's format), or None."""
    found = _answer_line_match(text)
    return None if found is None else found[1]


def gsm8k_answer(text: str) -> str | None:
    """Value after the last ``#### `` marker that starts a line and is followed by a number
    (GSM8K solutions), or None."""
    matches = _GSM8K.findall(text)
    return matches[-1].strip() if matches else None


def extract_answer(response: str) -> Extraction:
    """The final answer of a model response and the method that found it (see module doc)."""
    segment = final_segment(response)
    if segment is None:
        return Extraction(None, UNCLOSED_THINK)
    box = last_boxed_match(segment)
    if box is not None:
        return Extraction(box.content.strip(), BOXED if box.command == "boxed" else FBOX)
    line = _answer_line_match(segment)
    stated = answer_is(segment)
    if stated is not None and (line is None or segment.rfind("\n", 0, stated[0]) > line[0]):
        return Extraction(stated[1], ANSWER_IS)  # on a later line than the last Answer: line
    if line is not None:
        return Extraction(line[1], ANSWER_LINE)
    hashes = gsm8k_answer(segment)
    if hashes is not None:
        return Extraction(hashes, GSM8K)
    last = last_line_answer(segment)
    if last is not None:
        return Extraction(last[1], CHOICE if last[0] else LAST_LINE)
    return Extraction(None, NONE)


def gold_answer(text: str) -> str:
    """A reference answer as datasets store it: a bare value, a boxed value, a full MATH solution
    (its last box) or a GSM8K solution (after ``####``)."""
    box = last_boxed(text)
    if box is not None:
        return box.strip()
    hashes = gsm8k_answer(text)
    if hashes is not None:
        return hashes
    return text.strip()
