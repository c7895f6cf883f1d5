"""How a chat template lays out an assistant turn, learned from renders of the template itself.

``verl_ext.data.masks`` uses two kinds of renders, both of the real template, no per-model code:

- the *sentinel render* of the conversation (``mark`` + ``align``): each assistant message's content,
  ``reasoning_content`` and last tool call carry a unique ASCII sentinel; the text between sentinels
  is identical in the real render, so aligning the two tells where each message's own fields landed
  (a template may drop, trim or move them, render tool calls instead of content, or echo a name);
- *probe renders* of tiny synthetic conversations (``TemplateProbe``), cached per system messages,
  tools and template kwargs (modes switched by system text, e.g. ``/no_think``, are in the key):
  the inference *lead-in* after each kind of message (the rest of that message + what
  ``add_generation_prompt=True`` adds), how history and final turns are really rendered after it,
  and the text a turn of each shape closes with before each kind of next message.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

SENTINEL = "@@verl-ext-{}{}@@"  # ASCII: survives tojson, trim and string concatenation unchanged
_SENTINEL_RE = re.compile(r"@@verl-ext-([crst])(\d+)@@")
_KINDS = "crst"  # content, reasoning, first tool call (of several), last tool call
THINK_CLOSE = "</think>"
_PROBE = 10**6  # sentinel index of the probe turn (real messages never have that many)
_PROBE_ID = "vx{:07d}"  # 9 alphanumeric characters: the tool-call id shape Mistral templates demand
_PROBE_TOOL = "probe_fn"


class TemplateAlignmentError(RuntimeError):
    """The chat template lays out an assistant turn in a way the span alignment cannot follow."""


@dataclass(frozen=True)
class Shape:
    """What a probe turn must look like to be closed the way a real turn is."""

    content: str  # "none" (None), "empty" (""), "text"
    calls: int  # number of tool calls
    call_mark: str  # where the last call carries its sentinel: "value", "string" (arguments), "name"
    first_mark: str = ""  # likewise the first call, when there are several


TEXT = Shape("text", 0, "")


@dataclass(frozen=True)
class Anchor:
    """Where an assistant message's own fields landed in the real render."""

    first: int  # start of the first rendered field (content, reasoning or tool call)
    last_end: int  # end of the last one


def lit(name: str) -> str:
    """A probe message's content: unique, and rendered verbatim by templates."""
    return f"@@verl-ext-probe-{name}@@"


def split_inline_reasoning(content: str) -> tuple[str, str]:
    """``(head, answer)``: inline reasoning up to ``</think>`` + following whitespace, and the rest.
    The head stays in the sentinel render so a template splits the content the same way."""
    j = content.rfind(THINK_CLOSE)
    if j < 0:
        return "", content
    k = j + len(THINK_CLOSE)
    while k < len(content) and content[k].isspace():
        k += 1
    return content[:k], content[k:]


def mark(m: dict, i: int, force_content: bool = False) -> tuple[dict, Shape]:
    """Message ``i`` with sentinels in the fields a template renders from it, and its probe shape.
    ``force_content``: a sentinel in an empty content too (for a turn nothing else of was rendered)."""
    out = dict(m)
    content = m.get("content")
    kind = "text" if content or force_content else ("none" if content is None else "empty")
    head, answer = split_inline_reasoning(content) if isinstance(content, str) else ("", "")
    if answer or force_content:
        out["content"] = head + SENTINEL.format("c", i)
    if isinstance(m.get("reasoning_content"), str) and m["reasoning_content"]:
        out["reasoning_content"] = SENTINEL.format("r", i)
    calls = list(m.get("tool_calls") or [])
    call_mark = first_mark = ""
    if calls:  # the last call places the turn's end; the first one its start (an argument may hold anything)
        calls[-1], call_mark = _mark_call(calls[-1], SENTINEL.format("t", i))
        if len(calls) > 1:
            calls[0], first_mark = _mark_call(calls[0], SENTINEL.format("s", i))
        out["tool_calls"] = calls
    return out, Shape(kind, len(calls), call_mark, first_mark)


def _mark_call(call: dict, sentinel: str) -> tuple[dict, str]:
    """A sentinel in the call's last string argument (the name may steer the template: Llama's
    builtin tools), in string arguments, else in the name."""
    fn = dict(call.get("function") or {})
    args = fn.get("arguments")
    if isinstance(args, dict) and any(isinstance(v, str) for v in args.values()):
        key = [k for k, v in args.items() if isinstance(v, str)][-1]
        fn["arguments"], where = {**args, key: sentinel}, "value"
    elif isinstance(args, str):
        fn["arguments"], where = sentinel, "string"
    else:
        fn["name"], where = sentinel, "name"
    return {**call, "function": fn}, where


def align(text: str, marked: str) -> dict[int, Anchor]:
    """Anchors of every message whose sentinels the marked render shows, aligned with ``text``.
    A sentinel may occur again (a tool name echoed in its result's header): only its first
    occurrence places the message."""
    parts = _SENTINEL_RE.split(marked)  # [X0, kind, idx, X1, kind, idx, X2, ...]
    if not text.startswith(parts[0]):
        raise TemplateAlignmentError("the template renders text before the first assistant turn differently "
                                     "when that turn's content changes")
    pos = len(parts[0])
    n = (len(parts) - 1) // 3
    seen: dict[tuple[int, str], tuple[int, int]] = {}
    for k in range(n):
        kind, idx, seg = parts[1 + 3 * k], int(parts[2 + 3 * k]), parts[3 + 3 * k]
        if k == n - 1:
            if not text.endswith(seg) or len(text) - len(seg) < pos:
                raise TemplateAlignmentError("the template renders text after the last assistant turn differently "
                                             "when that turn's content changes")
            end = len(text) - len(seg)
        else:
            end = text.find(seg, pos) if seg else pos
            if end < 0:
                raise TemplateAlignmentError(f"cannot align assistant message {idx} with the rendered template")
        seen.setdefault((idx, kind), (pos, end))
        pos = end + len(seg)
    anchors: dict[int, Anchor] = {}
    for idx in sorted({i for i, _ in seen}):
        spans = [seen[(idx, kd)] for kd in _KINDS if (idx, kd) in seen]
        anchors[idx] = Anchor(min(a for a, _ in spans), max(b for _, b in spans))
    return anchors


@dataclass(frozen=True)
class LeadIn:
    """What inference renders between the previous message's content and the model's turn (the
    rest of that message, the assistant header, text the generation prompt injects), from its first
    added token on; ``residue`` is what came before that (the previous content's closing quote)."""

    text: str
    residue: str
    ends: tuple[int, ...]  # token ends in ``text``: where a shorter part of it may be cut


class TemplateProbe:
    """Probe renders of one template under one (system messages, tools, kwargs) context, computed
    lazily and cached. ``render(messages, generation_prompt)`` is the encoder's render."""

    def __init__(self, render: Callable[[list, bool], str], tokenizer: Any, system: list[dict]):
        self._render = render
        self._tok = tokenizer
        self._system = system
        self._added = set(tokenizer.get_added_vocab().values())
        self._cache: dict = {}

    # -- probe conversations --------------------------------------------------------------
    def _context(self, prev: str, string_args: bool) -> list[dict]:
        user = {"role": "user", "content": lit("user")}
        if prev == "tool":
            call = _probe_call(0, string_args)
            return [*self._system, user, {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "content": lit("tool"), "tool_call_id": call["id"], "name": _PROBE_TOOL}]
        if prev == "assistant":
            return [*self._system, user, {"role": "assistant", "content": lit("assistant")}]
        return [*self._system, user]

    @staticmethod
    def _turn(shape: Shape) -> dict:
        content = {"none": None, "empty": "", "text": SENTINEL.format("c", _PROBE)}[shape.content]
        msg: dict = {"role": "assistant", "content": content}
        if shape.calls:
            calls = [_probe_call(k + 1, shape.call_mark == "string") for k in range(shape.calls)]
            for k, where, kind in ((-1, shape.call_mark, "t"), (0, shape.first_mark, "s")):
                if where:  # marked as the real call: in a string argument, the arguments, or the name
                    fn = calls[k]["function"]
                    fn["arguments"] = {"value": {"q": "x"}, "string": '{"q": "x"}', "name": {}}[where]
                    calls[k], _ = _mark_call(calls[k], SENTINEL.format(kind, _PROBE))
            msg["tool_calls"] = calls
        return msg

    @staticmethod
    def _next(turn: dict, role: str) -> dict:
        if role == "tool":
            calls = turn.get("tool_calls") or [{"id": _PROBE_ID.format(9)}]
            return {"role": "tool", "content": lit("next"), "tool_call_id": calls[-1]["id"], "name": _PROBE_TOOL}
        return {"role": role, "content": lit("next")}

    def _try_render(self, build: Callable[[bool], list[dict]], generation_prompt: bool) -> str | None:
        """Render a probe with dict tool-call arguments, else with JSON-string ones (templates that
        concatenate them, DeepSeek-R1); ``None`` if the template refuses the probe's structure."""
        for string_args in (False, True):
            try:
                return self._render(build(string_args), generation_prompt)
            except Exception:
                continue
        return None

    # -- what the probes tell ------------------------------------------------------------
    def lead_in(self, prev: str) -> LeadIn | None:
        key = ("lead", prev)
        if key not in self._cache:
            self._cache[key] = self._lead_in(prev)
        return self._cache[key]

    def _lead_in(self, prev: str) -> LeadIn | None:
        rendered = self._try_render(lambda string_args: self._context(prev, string_args), True)
        if rendered is None or lit(prev) not in rendered:
            return None
        raw = rendered[rendered.rindex(lit(prev)) + len(lit(prev)):]
        # the lead-in starts at its first added token: what precedes it belongs to the previous
        # message's content as the template wrote it (Llama's tojson quote after a tool result)
        ids, offsets = self._tokens(raw)
        first = next((a for t, (a, _) in zip(ids, offsets) if t in self._added), 0)
        return LeadIn(raw[first:], raw[:first], tuple(e - first for _, (_, e) in zip(ids, offsets) if e > first))

    def shorter_lead_ins(self, prev: str, shape: Shape, nxt: str | None) -> tuple[int, ...]:
        """Lengths of the lead-in a rendered turn may start after instead of the whole of it, longest
        first: the part of it that history and final turns of this shape really render (DeepSeek-R1
        history: ``<｜Assistant｜>`` without the ``<think>\\n`` its generation prompt injects),
        token-aligned, never only whitespace."""
        key = ("cuts", prev, shape, nxt)
        if key in self._cache:
            return self._cache[key]
        lead = self.lead_in(prev)
        cuts: set[int] = set()
        for variant in {(prev, TEXT, "user"), (prev, TEXT, None), (prev, shape, nxt), (prev, shape, self._alt(shape, nxt))}:
            seen = self._observed(*variant)
            if lead is None or seen is None or not seen[0].startswith(lead.residue):
                continue
            common = _common_prefix(lead.text, seen[0][len(lead.residue):])
            cuts.add(max([e for e in lead.ends if e <= common] or [0]))
        out = tuple(sorted((c for c in cuts if lead.text[:c].strip() and c < len(lead.text)), reverse=True))
        self._cache[key] = out
        return out

    def closing(self, prev: str, shape: Shape, nxt: str | None) -> str | None:
        """The text a turn of ``shape`` ends with before a ``nxt`` message (``None``: the
        conversation ends with it): what the two renders share after the turn, so neither the next
        message's header nor text appended after the last message only (Phi's EOS); where they share
        nothing (harmony's ``<|end|>`` vs ``<|return|>``), the first added token of this one."""
        key = ("close", prev, shape, nxt)
        if key not in self._cache:
            here, other = self._observed(prev, shape, nxt), self._observed(prev, shape, self._alt(shape, nxt))
            self._cache[key] = None if here is None else self._closing(here[1], other and other[1], nxt)
        return self._cache[key]

    def _closing(self, tail: str, other: str | None, nxt: str | None) -> str:
        shared = tail[: self._common_prefix_tokens(tail, other)].rstrip() if other is not None else ""
        if shared:
            return self._trailing_added(shared)
        if nxt is None:
            return self._trailing_added(tail.rstrip())
        ids, offsets = self._tokens(tail)
        return tail[: offsets[0][1]] if ids and ids[0] in self._added else ""

    @staticmethod
    def _alt(shape: Shape, nxt: str | None) -> str | None:
        if nxt is not None:
            return None
        return "tool" if shape.calls else "user"

    def _observed(self, prev: str, shape: Shape, nxt: str | None) -> tuple[str, str] | None:
        """(lead-in as rendered before the probe turn, text after it up to the next message)."""
        key = ("obs", prev, shape, nxt)
        if key in self._cache:
            return self._cache[key]
        turn = self._turn(shape)
        tail = [turn] + ([self._next(turn, nxt)] if nxt else [])
        rendered = self._try_render(lambda string_args: self._context(prev, string_args) + tail, False)
        out = None if rendered is None else _split(rendered, lit(prev), _PROBE, nxt is not None)
        self._cache[key] = out
        return out

    def in_context(self, messages: list[dict], i: int, force_content: bool) -> tuple[str, str] | None:
        """(what the template renders between the previous message's content and turn ``i``'s first
        field, turn ``i``'s closing) from renders of the turn's own conversation, for templates whose
        layout of a turn depends on the turns before it (DeepSeek-R1 drops the header and changes the
        closing of a later tool-calling turn); two renders, uncached."""
        if i == 0 or not isinstance(messages[i - 1].get("content"), str):
            return None
        head = messages[: i - 1] + [{**messages[i - 1], "content": lit("prev")}, mark(messages[i], _PROBE, force_content)[0]]
        after = {**messages[i + 1], "content": lit("next")} if i + 1 < len(messages) else {"role": "user", "content": lit("next")}
        try:
            alone, followed = self._render(head, False), self._render(head + [after], False)
        except Exception:
            return None
        alone, followed = _split(alone, lit("prev"), _PROBE, False), _split(followed, lit("prev"), _PROBE, True)
        if alone is None or followed is None:
            return None
        if i + 1 < len(messages):
            return followed[0], self._closing(followed[1], alone[1], messages[i + 1]["role"])
        return alone[0], self._closing(alone[1], followed[1], None)

    def place_in_context(self, text: str, anchor: Anchor, hi: int, messages: list[dict], i: int,
                         force_content: bool, prev: str) -> tuple[int, int, str] | None:
        """(start, end, marker) of turn ``i`` in ``text`` from ``in_context``: it starts after the part
        of that render's lead-in it shares with the generation prompt's lead-in."""
        seen, lead = self.in_context(messages, i, force_content), self.lead_in(prev)
        if seen is None or lead is None or text[anchor.first - len(seen[0]) : anchor.first] != seen[0]:
            return None
        lead_in, marker = seen
        shared = 0
        if lead_in.startswith(lead.residue):
            common = _common_prefix(lead.text, lead_in[len(lead.residue):])
            shared = len(lead.residue) + max([e for e in lead.ends if e <= common] or [0])
        end = text.find(marker, anchor.last_end, hi) if marker else anchor.last_end
        if end < 0:
            return None
        return anchor.first - len(lead_in) + shared, end + len(marker), marker

    # -- tokens -----------------------------------------------------------------------------
    def _tokens(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        backend = getattr(self._tok, "backend_tokenizer", None)
        if backend is not None:  # the fast path of tokenizer(text); the wrapper costs more than short texts
            enc = backend.encode(text, add_special_tokens=False)
            return list(enc.ids), list(enc.offsets)
        enc = self._tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    def _common_prefix_tokens(self, a: str, b: str) -> int:
        """Characters of the longest common prefix of ``a`` and ``b`` that is whole tokens of both."""
        (ia, oa), (ib, ob) = self._tokens(a), self._tokens(b)
        end = 0
        for x, y, p, q in zip(ia, ib, oa, ob):
            if x != y or p != q:
                break
            end = p[1]
        return end

    def _trailing_added(self, text: str) -> str:
        """The run of added tokens ``text`` ends with (the marker to search for), else ``text``."""
        ids, offsets = self._tokens(text)
        start = len(text)
        for t, (a, _) in reversed(list(zip(ids, offsets))):
            if t not in self._added:
                break
            start = a
        return text[start:] if start < len(text) else text


def _split(rendered: str, before: str, idx: int, followed: bool) -> tuple[str, str] | None:
    """(text between ``before`` and the first field of turn ``idx``, text after its last field up to
    the next message's content, or to the end)."""
    if before not in rendered:
        return None
    after = rendered.index(before) + len(before)
    found = [(rendered.find(s, after), len(s)) for s in (SENTINEL.format(k, idx) for k in _KINDS)]
    found = [(a, n) for a, n in found if a >= 0]
    if not found:
        return None
    first, last_end = min(a for a, _ in found), max(a + n for a, n in found)
    stop = rendered.find(lit("next"), last_end) if followed else len(rendered)
    return None if stop < 0 else (rendered[after:first], rendered[last_end:stop])


def _probe_call(k: int, string_args: bool) -> dict:
    args: Any = '{"q": "x"}' if string_args else {"q": "x"}
    return {"id": _PROBE_ID.format(k), "type": "function", "function": {"name": _PROBE_TOOL, "arguments": args}}


def probe_key(system: list[dict], tools: list | None, kwargs: dict) -> str:
    return json.dumps([system, tools, kwargs], sort_keys=True, default=str)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
