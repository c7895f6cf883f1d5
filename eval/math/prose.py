"""Final answers stated in prose, for responses without ``\\boxed{}`` (pure, no SymPy).

Models that do not box end the way their training data did: Llama "The final answer is: 5", Qwen
and R1 "So the answer is $\\frac{1}{2}$." or "**Final Answer**" followed by the value on its own line,
Minerva "Final Answer: The final answer is 7. I hope it is correct.", multiple choice "(B)",
"B) 12", "the correct option is B". Here: the value after the last "the answer is" (cut at the end of
its sentence or ``$...$``), a choice letter or a bare value on the last line, each cleaned of bold,
``$``, trailing punctuation and unit words. A numeral in ordinary prose is never taken: the value
must itself read as a value (no sentence words left once units are dropped), so "the answer is not
5, since ..." and "the answer is easy to see: ..." are no answers.

Without any of those (chat models, olympiad write-ups), the value a sentence states: an answer line
that is a sentence (``Final Answer: The largest $n$ is 34.``), or the last sentence holding a value
(``final_statement``): a conclusion (``Therefore, there are 12 ways.``) or a sentence ending on math
(``We find that $x < 3$.``). A hedged, negated, conditional or questioning sentence, a case split,
or one followed by more work ("Next we ...") states nothing.
"""
from __future__ import annotations

import re

from verl_ext_eval.math.relations import equation_list
from verl_ext_eval.math.spans import (
    MASK, MathSpan, find_spans, last_math, mask, prose_words, sentences, without_commands,
)

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
_CHOICE_LINE = re.compile(r"(?i)^(?:(?:the\s+)?(?:correct\s+|right\s+|best\s+)?(?:option|choice)\s*:?\s*)?"
                          r"\(?(?P<letter>[A-E])\)(?:\s.*)?$|^(?:.*\s)?(?:option|choice)\s+\(?(?P<letter2>[A-E])\)?[.!]?$")
# words that make even an explicit answer ("Answer: ...") a sentence
_SENTENCE_WORDS = {"not", "if", "when", "unless", "is", "are", "was", "were", "be", "the", "it", "this", "that",
                   "we", "of", "to", "has", "have", "there", "so", "thus", "hence", "therefore", "get", "gives"}
MAX_VALUE_CHARS = 200  # longer is an explanation, not a final value
MAX_STATEMENTS = 64  # "the answer is" statements tried from the last back (a generation loop repeats them)


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
    words = prose_words(v)
    if explicit:  # "Tuesday", "no solution"; "The largest $n$ is 34" is a sentence (see sentence_value)
        sentence = len(words) > 3 or any(w.lower() in _SENTENCE_WORDS for w in words)
        return None if sentence or _HEDGES.search(without_commands(v)) else v
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


def answer_is(text: str, start: int = 0) -> tuple[int, str] | None:
    """(position, value) of the last "the answer is X" at or after ``start`` whose X reads as a
    value, else None."""
    for m in list(_ANSWER_IS.finditer(text, start))[:-MAX_STATEMENTS - 1:-1]:  # the last ones first
        value = clean_value(_cut_sentence(m.group("rest")))
        if value:
            return m.start(), value
    return None


_CLOSES_BLOCK = re.compile(r"^(?:\\\]|\$\$|\\\)|\\end\{[a-z*]+\})$")


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def last_line_answer(text: str) -> tuple[bool, str] | None:
    """(is_choice, value) from the last non-empty line: a choice letter (``(B)``, ``B) 12``,
    ``option B``) or a line that is only a value (``$\\frac{1}{2}$``, ``**42**``, ``= 7``)."""
    line = _strip_wrappers(_last_line(text))
    if _CLOSES_BLOCK.match(line):
        return None  # the end of a display block: the block is read as a whole (final_statement)
    m = _CHOICE_LINE.match(line)
    if m:
        return True, m.group("letter") or m.group("letter2")
    line = re.sub(r"^(?:=|\\Rightarrow|\\implies|\\therefore)\s*", "", line)
    value = clean_value(line)
    if value is None or not re.search(r"[\d\\]", value):
        return None
    if equation_list(value) is not None:
        return False, value
    if len(value) > 80 or prose_words(value):
        return None
    if "=" in value and not re.match(r"^[A-Za-z]\s*=[^=]+$", value):
        return None  # "3 + 4 = 7" is a step of working; "x = 7" is an answer
    return False, value


# -- a value stated in a sentence ------------------------------------------------------------------
# "Final Answer: The largest $n$ is 34.", "Therefore, there are 12 sequences.", "Thus $x \le 2$ is
# our answer.": the value after the last copula, else the sentence's only value. Hedged, negated,
# conditional sentences and questions state no answer.
_NUMBER = re.compile(r"(?<![\w.\\])[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?:\s*\\?%)?")
_COPULA = re.compile(r"(?i)(?:\b(?:is|are|was|were|equals?|be|becomes?|gives?|yields?|gets?|got|makes?|has|have"
                     r"|totals?|(?:comes?|amounts?)\s+to)\b|=|:)[\s*_]*(?:(?:approximately|about|exactly|equal\s+to)\s+)?"
                     r"(?:\\?\$(?=\d))?")  # a currency sign before the value: "is $18."
_HEDGES = re.compile(r"(?i)\b(?:not|cannot|never|if|unless|whether|suppose|assume|assuming|maybe|perhaps|guess|wrong"
                     r"|incorrect|instead|check|verify|let|wait|too|fails?|contradiction|impossible)\b|n't\b|\?")
# after the value's sentence: the work goes on ("This means we should continue with the next part.")
_CONTINUES = re.compile(r"(?i)\b(?:next|continue|proceed|now\s+(?:we|let|consider|compute|find|solve)|then\s+we"
                        r"|we\s+(?:need|should|must|will|now)|let's|let\s+us|step\s+\d)\b|\?")
_CASES = re.compile(r"(?i)\b(?:when|otherwise|whenever)\b")  # after a value: "$5$ when n is odd", a case split
# a sentence that announces work still to do states no result: "Now we find $y$."
_STEP = re.compile(r"(?i)^[\s*_#>-]*(?:now|next|first|second|to\s+find|we\s+(?:need|want|must))\b")
_CONCLUSION = re.compile(r"(?i)^[\s*_#>-]*(?:therefore|thus|hence|so|consequently|in\s+conclusion|in\s+total"
                         r"|in\s+summary|overall|finally|as\s+a\s+result|altogether|all\s+in\s+all)\b")
_QUALIFIER = re.compile(r"(?i)\b(?:for\s+(?:all|every|each|any|some)|where|with|when)\s+(?:[A-Za-z]+\s+)?$")
QUALIFIER_WINDOW = 40  # "for every real " fits: a bounded look-behind keeps long sentences linear
MAX_WORDS_AFTER_MATH = 8  # "$x \geq 5$ is the solution set of the inequality." still states it


_LISTED = re.compile(r"^\s*(?:,|,?\s*and|,?\s*or)\s*$")


def _values(masked: str, spans: list[MathSpan]) -> list[tuple[int, int, str]]:
    """(start, end, value) of every number and every span of ``masked`` (its spans masked) in order,
    skipping spans that qualify another (``... for all real $x$``)."""
    found = [(s.start, s.end, s.content) for s in spans
             if not _QUALIFIER.search(masked[max(0, s.start - QUALIFIER_WINDOW):s.start])]
    found += [(m.start(), m.end(), m.group().replace("\u2212", "-")) for m in _NUMBER.finditer(masked)]
    return sorted(found)


def _listed_from(masked: str, values: list[tuple[int, int, str]], i: int) -> str:
    """``values[i]`` with the values listed right after it (``12 and 15`` -> ``12, 15``)."""
    items = [values[i]]
    for nxt in values[i + 1:]:
        if not _LISTED.match(masked[items[-1][1]:nxt[0]]):
            break
        items.append(nxt)
    return ", ".join(v for _, _, v in items)


def _commits(masked: str, values: list[tuple[int, int, str]]) -> bool:
    """A sentence with values that commits to them: no hedge, negation or question, and no case
    split after its first value."""
    return bool(values) and not _HEDGES.search(masked) and not _CASES.search(masked, values[0][0])


def _stated(masked: str, values: list[tuple[int, int, str]]) -> str | None:
    """The value right after the last copula that is followed by one (with the values listed after
    it: ``are 12 and 15``), else the only value."""
    for m in reversed(list(_COPULA.finditer(masked))):
        after = [i for i, (start, _, _) in enumerate(values) if start == m.end()]
        if after:
            return _listed_from(masked, values, after[0])
    return values[0][2] if len(values) == 1 else None


def sentence_value(text: str) -> str | None:
    """The value a one-sentence answer states (``The largest $n$ is 34`` -> ``34``), or None."""
    spans = find_spans(text)
    masked = mask(text, spans)
    values = _values(masked, spans)
    return _stated(masked, values) if _commits(masked, values) else None


def final_statement(segment: str) -> tuple[bool, str] | None:
    """(is_conclusion, value) from the last sentence of ``segment`` that holds a value, for
    responses without a box or an answer line: a conclusion (``Therefore, ...``, ``So ...``) gives
    its stated value; any other sentence gives its last math span (with the spans listed before it)
    when at most a few words and no number follow it (``We find that $x < 3$.``,
    ``$$f(y) = y$$``). None when that sentence is hedged, conditional or a question."""
    spans = find_spans(segment)
    masked = mask(segment, spans)
    for start, end in reversed(sentences(masked)):
        piece = masked[start:end]
        if MASK in piece or _NUMBER.search(piece):
            break
    else:
        return None
    if _CONTINUES.search(masked, end):
        return None
    local = [MathSpan(s.start - start, s.end - start, s.content) for s in spans if start <= s.start < end]
    values = _values(piece, local)
    if not _commits(piece, values) or _STEP.match(piece):
        return None
    if _CONCLUSION.match(piece):
        value = _stated(piece, values)
        return None if value is None else (True, value)
    candidates = [s for s in local if s.start == values[-1][0] and s.end == values[-1][1]]
    if not candidates:
        return None  # the sentence ends on a number, not on math
    last = candidates[0]
    if len(re.findall(r"[A-Za-z]+", piece[last.end:])) > MAX_WORDS_AFTER_MATH:
        return None
    joined = last_math(segment[start:end], [s for s in local if s.start <= last.start])
    return None if joined is None else (False, joined[2])
