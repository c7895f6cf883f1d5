"""Final answers stated in prose, for responses without ``\\boxed{}`` (pure, no SymPy).

Models that do not box end the way their training data did: Llama "The final answer is: 5", Qwen
and R1 "So the answer is $\\frac{1}{2}$." or "**Final Answer**" followed by the value on its own line,
Minerva "Final Answer: The final answer is 7. I hope it is correct.", multiple choice "(B)",
"B) 12", "the correct option is B". Here: the value after the last "the answer is" (cut at the end of
its sentence or ``$...$``), a choice letter or a bare value on the last line, each cleaned of bold,
``$``, trailing punctuation and unit words. A numeral in ordinary prose is never taken: the value
must itself read as a value (no sentence words left once units are dropped), so "the answer is not
5, since ..." and "the answer is easy to see: ..." are no answers.
"""
from __future__ import annotations

import re

from verl_ext_eval.math.forms import equation_list

# "the answer is", "the final answer is:", "so the correct option is", "our answer would be"
_ANSWER_IS = re.compile(
    r"(?i)\b(?:final\s+|correct\s+|right\s+)?(?:answer|option|choice)(?:\s+to\s+the\s+(?:problem|question))?"
    r"\s*(?:\*\*|__)?\s*(?:is|would\s+be|will\s+be|=)\s*(?:\*\*|__)?\s*:?[ \t]*(?P<rest>[^\n]*)")
_DELIMITED = re.compile(r"^(\$\$?|\\\(|\\\[)(.+?)(\$\$?|\\\)|\\\])")
_SENTENCE_END = re.compile(r"[.;!?](?=\s|$)|,\s+(?=[A-Za-z]{2,})|\s+(?:since|because|as|so|but|which)\s")
_BOLD = re.compile(r"^(?:\*\*|__)(.+?)(?:\*\*|__)$")
_UNITS = re.compile(r"^(?P<value>.*?[\d}$)])\s*(?:\\(?:text|mbox|mathrm)\s*\{\s*)?"
                    r"(?P<unit>[A-Za-z]{2,}[A-Za-z.]*(?:\s+[A-Za-z][A-Za-z.]*)?)\s*\}?(?:\^\{?[23]\}?)?$")
# words that make a value a sentence: never units
_PROSE_WORDS = {"if", "when", "and", "or", "but", "not", "since", "because", "unless", "otherwise", "the",
                "a", "an", "is", "are", "was", "be", "that", "this", "it", "to", "of", "for", "in", "on",
                "we", "so", "as", "then", "than", "which", "where", "with", "find", "need", "easy",
                "clear", "obvious", "given", "equal", "equals", "correct", "wrong", "none", "yes", "no"}
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")
_COMMAND_ARG = re.compile(r"\\(?:text|textbf|mathrm|mbox|operatorname)\s*\{[^{}]*\}|\\[A-Za-z]+")
_CHOICE_LINE = re.compile(r"(?i)^(?:(?:the\s+)?(?:correct\s+|right\s+|best\s+)?(?:option|choice)\s*:?\s*)?"
                          r"\(?(?P<letter>[A-E])\)(?:\s.*)?$|^(?:.*\s)?(?:option|choice)\s+\(?(?P<letter2>[A-E])\)?[.!]?$")
MAX_VALUE_CHARS = 200  # longer is an explanation, not a final value


def _strip_wrappers(v: str) -> str:
    prev = None
    while v != prev:
        prev = v
        v = v.strip().rstrip(".,;:!").strip()
        m = _BOLD.match(v)
        if m:
            v = m.group(1)
        if len(v) >= 2 and v[0] == "$" and v[-1] == "$":
            v = v.strip("$")
        for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
            if v.startswith(left) and v.endswith(right):
                v = v[len(left):-len(right)]
    return v.strip()


def _prose_words(v: str) -> list[str]:
    """Words outside LaTeX commands and ``\\text{}`` (which may hold a unit or a word answer)."""
    return _WORD.findall(_COMMAND_ARG.sub(" ", v))


def _drop_units(v: str) -> str:
    m = _UNITS.match(v)
    if m and not any(w.lower() in _PROSE_WORDS for w in m.group("unit").split()):
        return m.group("value").strip()
    return v


def clean_value(value: str, *, explicit: bool = False) -> str | None:
    """``value`` without bold, ``$``, trailing punctuation and unit words; None when what is left is
    prose. ``explicit`` (an ``Answer:`` line) keeps word answers such as ``Tuesday``."""
    v = _strip_wrappers(value)
    if not v:
        return None
    v = _strip_wrappers(_drop_units(v))
    if len(v) > MAX_VALUE_CHARS:
        return None
    if equation_list(v) is not None:
        return v  # "x = 3 and x = -3": its "and" joins solutions, it is not prose
    words = _prose_words(v)
    if explicit:
        return v if len(words) <= 3 and not any(w.lower() in ("not", "if", "when", "unless") for w in words) else None
    if any(w.lower() in _PROSE_WORDS for w in words) or len(words) > 1:
        return None
    return v


_MORE = re.compile(r"\s*(?:,|and|or|\\text\{\s*(?:and|or)\s*\})\s*(\$\$?|\\\()(.+?)(\$\$?|\\\))")
_CONDITION = re.compile(r"(?i)^(?:if|when|unless|for|otherwise|provided|except|only|assuming|or|and)\b")
_UNIT_TAIL = re.compile(r"^[A-Za-z][A-Za-z.]*(?:\s+[A-Za-z][A-Za-z.]*)?$")


def _cut_sentence(rest: str) -> str:
    """The value at the start of ``rest``: whole ``$...$`` groups (``$x=2$ and $x=-5$`` joined with a
    comma), else up to the end of the sentence (a period followed by a space, not a decimal point)."""
    rest = rest.replace("**", "").strip()  # bold around or inside the value
    m = _DELIMITED.match(rest)
    if not m:
        end = _SENTENCE_END.search(rest)
        return rest[:end.start()] if end else rest
    values, pos = [m.group(2)], m.end()
    while (more := _MORE.match(rest, pos)) is not None:
        values.append(more.group(2))
        pos = more.end()
    tail = rest[pos:].strip().lstrip("*").strip().rstrip(".!;")
    if _CONDITION.match(tail):
        return ""  # "$5$ when n is odd and $6$ otherwise": a case split, not one answer
    value = ", ".join(values)
    # "$5$ cm." keeps the unit for clean_value to drop; "$8$ since ..." is the value and a reason
    return f"{value} {tail}" if tail and _UNIT_TAIL.match(tail) and len(values) == 1 else value


def answer_is(text: str) -> tuple[int, str] | None:
    """(position, value) of the last "the answer is X" whose X reads as a value, else None."""
    for m in reversed(list(_ANSWER_IS.finditer(text))):
        value = clean_value(_cut_sentence(m.group("rest")))
        if value:
            return m.start(), value
    return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def last_line_answer(text: str) -> tuple[bool, str] | None:
    """(is_choice, value) from the last non-empty line: a choice letter (``(B)``, ``B) 12``,
    ``option B``) or a line that is only a value (``$\\frac{1}{2}$``, ``**42**``, ``= 7``)."""
    line = _strip_wrappers(_last_line(text))
    m = _CHOICE_LINE.match(line)
    if m:
        return True, m.group("letter") or m.group("letter2")
    line = re.sub(r"^(?:=|\\Rightarrow|\\implies|\\therefore)\s*", "", line)
    value = clean_value(line)
    if value is None or not re.search(r"[\d\\]", value):
        return None
    if equation_list(value) is not None:
        return False, value
    if len(value) > 80 or _prose_words(value):
        return None
    if "=" in value and not re.match(r"^[A-Za-z]\s*=[^=]+$", value):
        return None  # "3 + 4 = 7" is a step of working; "x = 7" is an answer
    return False, value
