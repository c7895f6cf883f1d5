"""Final-answer extraction from model responses and gold answers (pure, no SymPy).

This docstring is the one place the extraction order is written down. In a response:

1. Only the text after the last ``</think>`` is searched; a response that opens ``<think>`` and
   never closes it has no final answer. Text from a leaked chat-template token on
   (``<|im_start|>user ...``, ``<|eot_id|>``) is not part of the response.
2. The final box group: the last ``\\boxed{}`` (else ``\\fbox{}``, as Hendrycks MATH) with the boxes
   listed right before it (``\\boxed{1}, \\boxed{2}``, ``\\boxed{(2,2)} \\quad\\text{and}\\quad
   \\boxed{(6,2)}``) as one comma-separated answer (``boxes.py`` says what may separate them).
3. An answer statement: an ``Answer:`` line (Minerva's ``Final Answer: The final answer is X. I hope
   it is correct.``, ``**Answer:** X``, ``Answer $X$`` without a colon, a ``**Final Answer**``
   heading over its line) or "the (final) answer is X" (Llama, Qwen, R1 without a box), whichever
   comes later. It replaces the box group when it comes after it: the later commitment wins. A
   statement that is a sentence gives the value it states (``Final Answer: The largest $n$ is
   34.`` -> ``34``).
4. The last GSM8K ``#### N`` line.
5. A multiple-choice letter (``(B)``, ``B) 12``, ``option B``) or a bare value alone on the last line.
6. The final statement: the last sentence holding a value. A conclusion (``Therefore, there are 12
   ways.``) gives the value it states; any other sentence its last LaTeX span (joined with spans
   listed before it by ``,``/and/or) when only a few words and no number follow it (``so $x \\geq
   5$ is the solution.``, ``$$f(y) = y$$``), as math-verify's extraction does.
7. Else no answer. Values in prose must read as values (``prose.py``): "the answer is not 5, ...",
   hedged, conditional or questioning sentences state nothing, so a number mentioned in passing is
   never taken.

A gold answer is read with the same rules: steps 2-3 when it has a box (datasets write several
boxes too), its ``####`` line, the text itself when it reads as a value (``5 cm``, ``$AB=4,CD=5$``),
else steps 3-6 over it (a solution without a box), else the value its one sentence states.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from verl_ext_eval.math.boxes import final_box_group, join_group
from verl_ext_eval.math.prose import answer_is, clean_value, final_statement, last_line_answer, sentence_value
from verl_ext_eval.math.spans import find_spans, last_math, mask, prose_words, span_at

# extraction methods recorded per sample
BOXED = "boxed"
BOXES = "boxes"  # several boxes read as one answer
FBOX = "fbox"
ANSWER_LINE = "answer_line"
ANSWER_IS = "answer_is"  # "the answer is X" in a sentence
CHOICE = "choice"  # a multiple-choice letter on the last line
LAST_LINE = "last_line"  # a bare value alone on the last line
GSM8K = "gsm8k"
CONCLUSION = "conclusion"  # "Therefore, ... is X." without a box
LAST_LATEX = "last_latex"  # the last LaTeX span of the final sentence
NONE = "none"
UNCLOSED_THINK = "unclosed_think"

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"


@dataclass(frozen=True)
class Extraction:
    """The final answer found in a response (``answer`` is None when there is none) and how."""

    answer: str | None
    method: str


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


MAX_STATEMENTS = 64  # answer statements tried from the last back (a generation loop repeats them)
# a model that does not stop at its end-of-turn token writes the next turn itself
_CHAT_TOKEN = re.compile(r"<\|(?:im_start|im_end|endoftext|eot_id|start_header_id|end_of_text)\|>"
                         "|<\uff5cend\u2581of\u2581sentence\uff5c>")
_ANSWER_LINE = re.compile(
    r"(?im)(?:^|(?<=[.!?])[ \t]+)[ \t>*#_]*(?:final[ \t]+)?answer[ \t]*[*_]*[ \t]*(?::|(?=\$|\\\[|\\\())[ \t*_]*(.*)$")
_ANSWER_HEADING = re.compile(r"(?im)^[ \t>#*_]*final[ \t]+answer[ \t*_:]*\n(?:[ \t]*\n)*[ \t]*(\S.*)$")
_FINAL_IS = re.compile(r"(?i)^(?:the[ \t]+)?final[ \t]+answer[ \t]+is[ \t:]*")
_HOPE = re.compile(r"(?i)[.,;]?[ \t]*I[ \t]+hope[ \t]+it[ \t]+is[ \t]+correct\.?[ \t]*$")
# a number after the marker: "#### Step 1" is a markdown heading, not an answer
_GSM8K = re.compile(r"(?m)^[ \t]*####[ \t]*([-+]?[ \t]*(?:\\?\$)?[ \t]*\.?\d.*?)[ \t]*$")
_OPENS_MATH = re.compile(r"^(?:\$\$?|\\\[|\\\()")
_SENTENCE_BREAK = re.compile(r"[.!?]\s+\S")
_REMARK = re.compile(r"\s+\([A-Za-z]{2,}[^()]*\)\s*$")  # "$\frac{\sqrt3}{2}$ (approximately 0.866)"


def _clean_answer_line(value: str) -> str:
    v = value.strip()
    v = _FINAL_IS.sub("", v)
    v = _HOPE.sub("", v)
    v = v.strip().strip("*_").strip()
    v = _REMARK.sub("", v.rstrip(".").strip())
    joined = last_math(v)  # "$x = 2$ or $x = -3$" -> "x = 2, x = -3"
    if joined is not None and joined[0] == 0 and joined[1] == len(v):
        return joined[2]
    return v


def _line_value(text: str, start: int, line: str) -> str | None:
    """The value of an answer line starting at ``start``: a display block opened on the line runs to
    its close (``Answer \\[`` newline ``9`` newline ``\\]``); a sentence gives the value it states."""
    if _OPENS_MATH.match(line):
        span = span_at(text, start)
        if span is not None and span.end - start > len(line):
            line = text[start:span.end]
    value = clean_value(_clean_answer_line(line), explicit=True)
    return value or sentence_value(_HOPE.sub("", _FINAL_IS.sub("", line.strip())))


def _answer_line_match(text: str, start: int = 0) -> tuple[int, str] | None:
    """(position, value) of the last ``Answer: X`` line (or ``Final Answer`` heading) at or after
    ``start`` with a value."""
    found = [(m.start(), m.start(1), m.group(1)) for pattern in (_ANSWER_LINE, _ANSWER_HEADING)
             for m in pattern.finditer(text, start) if m.group(1).strip()]
    for pos, value_at, line in sorted(found, reverse=True)[:MAX_STATEMENTS]:
        value = _line_value(text, value_at, line)
        if value:
            return pos, value
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


def _statement(segment: str, start: int = 0) -> tuple[int, Extraction] | None:
    """Step 3: (position, extraction) of the last answer statement at or after ``start``."""
    line = _answer_line_match(segment, start)
    stated = answer_is(segment, start)
    if stated is not None and (line is None or segment.rfind("\n", 0, stated[0]) > line[0]):
        return stated[0], Extraction(stated[1], ANSWER_IS)  # on a later line than the last Answer: line
    if line is not None:
        return line[0], Extraction(line[1], ANSWER_LINE)
    return None


def _unboxed(segment: str) -> Extraction:
    """Steps 4-7."""
    hashes = gsm8k_answer(segment)
    if hashes is not None:
        return Extraction(hashes, GSM8K)
    last = last_line_answer(segment)
    if last is not None:
        return Extraction(last[1], CHOICE if last[0] else LAST_LINE)
    final = final_statement(segment)
    if final is not None:
        return Extraction(final[1], CONCLUSION if final[0] else LAST_LATEX)
    return Extraction(None, NONE)


def _boxed_or_stated(segment: str) -> Extraction | None:
    """Steps 2-3: the final box group, unless an answer statement comes after it."""
    group = final_box_group(segment)
    statement = _statement(segment, group[-1].end if group else 0)  # only a later one can win
    if statement is not None:
        return statement[1]
    if group:
        method = BOXES if len(group) > 1 else BOXED if group[-1].command == "boxed" else FBOX
        return Extraction(join_group(group).strip(), method)
    return None


def extract_answer(response: str) -> Extraction:
    """The final answer of a model response and the method that found it (see module doc)."""
    segment = final_segment(response)
    if segment is None:
        return Extraction(None, UNCLOSED_THINK)
    chat = _CHAT_TOKEN.search(segment)
    if chat is not None:
        segment = segment[:chat.start()]
    return _boxed_or_stated(segment) or _unboxed(segment)


def _bare(s: str) -> bool:
    """A gold that is a value as written (``42``, ``5 cm``, ``\\text{odd}``, ``$AB=4,CD=5$``,
    ``(11,7) or (7,11)``), not a solution: one token, or a value with no sentence in it and at most
    a unit word beside its math."""
    if len(s.split(None, 1)) < 2:
        return True
    if clean_value(s, explicit=True) is None or _SENTENCE_BREAK.search(s):
        return False
    spans = find_spans(s)
    return not spans or len(prose_words(mask(s, spans))) <= 1


def gold_answer(text: str) -> str:
    """A reference answer as datasets store it, read with the response rules (see module doc): its
    box group (or an answer statement after it), its ``####`` line, the text when it is a bare
    value, else the answer a solution without a box states."""
    s = text.strip()
    found = _boxed_or_stated(s) if "\\boxed" in s or "\\fbox" in s else None
    if found is not None and found.answer:
        return found.answer
    hashes = gsm8k_answer(s)
    if hashes is not None:
        return hashes
    if not s or _bare(s):
        return s
    found = _boxed_or_stated(s) or _unboxed(s)
    return found.answer or sentence_value(s) or s
