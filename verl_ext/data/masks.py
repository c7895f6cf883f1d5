"""Conversation -> token ids + assistant-only loss mask, from ONE render of the real chat template.

Why not per-message rendering (verl's ``MultiTurnSFTDataset``): templates look ahead (Qwen3 drops
reasoning of turns before the last user query and adds an empty ``<think>`` block to the last turn
when thinking is off; Mistral moves the system prompt and tools to the last user message), so
concatenated per-message renders are token sequences the model never sees (verl #3477, #7378, #7807).
Here the trained sequence is exactly ``apply_chat_template(messages)``.

How the mask is found, for any template, without template-specific code (``template_probe``):
1. Render the conversation (F), and once more with sentinels in every assistant message's content,
   ``reasoning_content`` and last tool call (F_s). Aligning the two gives where each message's own
   fields landed in F: found from the render itself, whether the template renders a header or not,
   drops content next to tool calls (OLMo), or trims it.
2. A turn is trained from where the model starts writing: after the *lead-in*, what inference renders
   between the previous message's content and the turn (``add_generation_prompt=True``: the rest of
   the previous message, the assistant header, text the prompt injects). A history turn may render
   only part of it (DeepSeek-R1 history has ``<｜Assistant｜>`` without the injected ``<think>\\n``;
   Mistral has no header, only ``[/INST]``): the longest token-aligned part that probe renders show
   turns really start after, found last before the turn's first field.
3. It is trained up to its end-of-turn marker: what the template closes such a turn with (learned
   from probes of the same shape followed by the same kind of message), found first after its last
   field; text appended only after the last message (Phi's trailing EOS) and the next message's header
   are not trained, nor is anything after the last assistant turn (a final user turn).
   A turn the template lays out unlike the same turn in a fresh conversation (DeepSeek-R1 drops the
   header and changes the closing of a later tool-calling turn) is placed from two renders of its own
   conversation instead (cut after it, its neighbours' text replaced by markers).
4. Tokens are trained when their character span lies inside a trained span. Where one token crosses
   a boundary (the header's newline + leading newlines of the answer), the text is tokenized at the
   boundaries instead, as inference does (``straddling_tokens`` counts them): a deliberate choice,
   the one place where ids differ from ``apply_chat_template(tokenize=True)``.
A template that cannot be aligned raises ``TemplateAlignmentError`` naming the turn and what failed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from verl_ext.data.template_probe import (
    THINK_CLOSE,
    Anchor,
    TemplateAlignmentError,
    TemplateProbe,
    align,
    mark,
    probe_key,
)
from verl_ext.rows import is_trained

__all__ = ["ChatEncoder", "Encoded", "TemplateAlignmentError"]

_FIX = "set model.custom_chat_template to a template that renders assistant turns as inference sees them"
_PROBES_KEPT = 256  # probe contexts cached per encoder (system prompts x tool sets x kwargs)


@dataclass(frozen=True)
class Encoded:
    input_ids: np.ndarray  # int64 [T]
    loss_mask: np.ndarray  # int8 [T], 1 = token is a training target
    text: str
    spans: tuple[tuple[int, int], ...]  # character spans of trained text in ``text``
    straddling_tokens: int = 0  # tokens of the full-text tokenization crossing a turn boundary (re-split)
    appended_eos: bool = False


@dataclass
class ChatEncoder:
    """Encodes conversations with one tokenizer + template; caches template probes."""

    tokenizer: Any
    template_kwargs: dict = field(default_factory=dict)
    reasoning_in_history: bool = False
    _probe_cache: dict = field(default_factory=dict, repr=False)
    _none_ok: bool | None = field(default=None, repr=False)

    def __getstate__(self) -> dict:  # probes hold the render as a closure: workers probe again
        return {**self.__dict__, "_probe_cache": {}}

    # -- template rendering -------------------------------------------------------------
    def render(self, messages: list[dict], tools: list | None, kwargs: dict, generation_prompt: bool = False) -> str:
        """The template's render. ``content: None`` is passed as the row has it (DeepSeek-R1 renders
        a tool-call turn differently with ``None`` and ``""``), unless the template cannot render it
        (Qwen3 tests ``'</think>' in content``): then ``""``, as before."""
        if any(m.get("content", "") is None for m in messages) and not self._renders_none():
            messages = [{**m, "content": ""} if m.get("content", "") is None else m for m in messages]
        return self.tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt, **kwargs
        )

    def _renders_none(self) -> bool:
        """Whether the template renders a tool-calling turn whose content is None (decided once, by a
        probe, so that every conversation is rendered the same way)."""
        if self._none_ok is None:
            call = {"id": "vx0000001", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": None, "tool_calls": [call]}]
            try:
                self.tokenizer.apply_chat_template(probe, tokenize=False, **self.template_kwargs)
                self._none_ok = True
            except Exception as e:  # only a failure on the None itself says the template cannot take it
                self._none_ok = "NoneType" not in str(e)
        return self._none_ok

    def prompt(self, messages: list[dict], tools: list | None = None, enable_thinking: bool | None = None) -> str:
        """What inference renders before the model's next turn (``add_generation_prompt=True``)."""
        return self.render(messages, tools, self._kwargs(enable_thinking), generation_prompt=True)

    def _kwargs(self, enable_thinking: bool | None) -> dict:
        kwargs = dict(self.template_kwargs)
        if enable_thinking is not None:
            kwargs["enable_thinking"] = enable_thinking
        return kwargs

    def _probe(self, messages: list[dict], tools: list | None, kwargs: dict) -> TemplateProbe:
        """Probes of this template in this context: the conversation's system messages (modes
        switched by their text), tools and kwargs."""
        system = [m for m in messages if m["role"] == "system"]
        key = probe_key(system, tools, kwargs)
        probe = self._probe_cache.get(key)
        if probe is None:
            if len(self._probe_cache) >= _PROBES_KEPT:
                self._probe_cache.pop(next(iter(self._probe_cache)))
            probe = TemplateProbe(lambda msgs, gen: self.render(msgs, tools, kwargs, gen), self.tokenizer, system)
            self._probe_cache[key] = probe
        return probe

    # -- encoding -------------------------------------------------------------------------
    def encode(self, messages: list[dict], tools: list | None = None, enable_thinking: bool | None = None) -> Encoded:
        kwargs = self._kwargs(enable_thinking)
        text, anchors, forced = self._render_aligned(messages, tools, kwargs)
        if self.reasoning_in_history:
            rewritten = _inline_dropped_reasoning(messages, text, anchors)
            if rewritten is not None:
                messages = rewritten
                text, anchors, forced = self._render_aligned(messages, tools, kwargs)
        probe = self._probe(messages, tools, kwargs)
        spans, closing = self._trained_spans(messages, text, anchors, forced, probe)
        appended_eos = False
        if closing is not None:  # the template leaves the final turn open: close it (verl #3562)
            text = text[: spans[-1][1]] + closing
            spans[-1] = (spans[-1][0], len(text))
            appended_eos = True
        return self._tokenize(text, spans, appended_eos)

    def _render_aligned(self, messages: list[dict], tools: list | None, kwargs: dict) -> tuple[str, dict[int, Anchor], set[int]]:
        """The conversation's render, where each assistant message's fields landed in it, and the
        messages whose empty content had to carry a sentinel (nothing else of theirs rendered)."""
        assistant = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        forced: set[int] = set()
        retried = False
        while True:
            text = self.render(messages, tools, kwargs)
            marked = [mark(m, i, i in forced)[0] if m["role"] == "assistant" else m for i, m in enumerate(messages)]
            try:
                anchors = align(text, self.render(marked, tools, kwargs))
            except TemplateAlignmentError:
                if retried:  # one retry: a render that changed between two calls (a date at midnight)
                    raise
                retried = True
                continue
            missing = {i for i in assistant if i not in anchors}
            if not missing:
                return text, anchors, forced
            if missing <= forced:
                raise TemplateAlignmentError(
                    f"the chat template renders nothing of assistant messages {sorted(missing)} (no content, "
                    "reasoning or tool call of theirs appears in the render); drop them or give them content")
            forced |= missing  # nothing of theirs rendered (reasoning dropped, content empty): mark the content

    def _trained_spans(self, messages, text, anchors, forced, probe) -> tuple[list[tuple[int, int]], str | None]:
        """Character spans of the trained turns, and the closing to append to the last one if the
        template leaves the final turn open."""
        order = sorted(anchors)
        spans: list[tuple[int, int]] = []
        lo = 0
        closing_append = None
        for n, i in enumerate(order):
            anchor = anchors[i]
            hi = anchors[order[n + 1]].first if n + 1 < len(order) else len(text)
            prev, nxt = _role_before(messages, i), _role_after(messages, i)
            shape = mark(messages[i], i, i in forced)[1]
            try:
                start = self._turn_start(text, lo, anchor, probe, prev, shape, nxt, i)
                end, marker = self._turn_end(text, anchor, hi, probe, prev, shape, nxt, i)
            except TemplateAlignmentError as error:
                # laid out unlike the same turn in a fresh conversation: learn its layout from its own
                placed = probe.place_in_context(text, anchor, hi, messages, i, i in forced, prev)
                if placed is None and is_trained(messages[i]):
                    raise error
                if placed is None:
                    lo = anchor.last_end
                    continue
                start, end, marker = placed
            if is_trained(messages[i]):
                spans.append((start, end))
            lo = end
            if not marker and nxt is None and not text[end:].strip() and is_trained(messages[i]):
                closing_append = probe.closing(prev, shape, "user") or self.tokenizer.eos_token or None
        return spans, closing_append

    @staticmethod
    def _turn_start(text, lo, anchor: Anchor, probe: TemplateProbe, prev, shape, nxt, i) -> int:
        lead = probe.lead_in(prev) or (probe.lead_in("user") if prev != "user" else None)
        if lead is None:
            raise TemplateAlignmentError(
                f"assistant message {i}: the template refuses to render a generation prompt after a {prev!r} "
                f"message, so where the model starts writing is unknown; {_FIX}")
        if not lead.text:  # nothing between the previous message and the turn: it starts with its fields
            return anchor.first
        at = text.rfind(lead.text, lo, anchor.first)
        if at >= 0:
            return at + len(lead.text)
        for cut in probe.shorter_lead_ins(prev, shape, nxt):
            at = text.rfind(lead.text[:cut], lo, anchor.first)
            if at >= 0:
                return at + cut
        raise TemplateAlignmentError(
            f"assistant message {i}: could not find where the model starts writing: neither the generation "
            f"prompt's lead-in {lead.text!r} nor the part of it history turns render comes before the turn "
            f"(the template renders this turn without its assistant header); {_FIX}")

    @staticmethod
    def _turn_end(text, anchor: Anchor, hi, probe: TemplateProbe, prev, shape, nxt, i) -> tuple[int, str]:
        marker = probe.closing(prev, shape, nxt)
        if marker is None:
            marker = probe.closing(prev, shape, None) if nxt is not None else None
        if marker is None:
            raise TemplateAlignmentError(
                f"assistant message {i}: the template refuses probe conversations shaped like this turn "
                f"({shape.calls} tool calls, followed by {nxt or 'nothing'}), so its end-of-turn marker is unknown; {_FIX}")
        if not marker:
            return anchor.last_end, marker
        at = text.find(marker, anchor.last_end, hi)
        if at < 0:
            raise TemplateAlignmentError(
                f"assistant message {i}: its end-of-turn marker {marker!r} does not follow it in the render "
                f"(the template closes this turn differently from probe turns of the same shape); {_FIX}")
        return at + len(marker), marker

    # -- tokens ---------------------------------------------------------------------------
    def _tokenize(self, text: str, spans: list[tuple[int, int]], appended_eos: bool) -> Encoded:
        ids, starts, ends = self._encode_piece(text, 0)
        straddling = _straddling(starts, ends, spans)
        if straddling:
            # A token crosses a turn boundary (e.g. "\n\n\n" = the header's newline + the model's
            # leading newlines): tokenize at the boundaries instead, as inference does (the prompt
            # ends at the header, the model writes the rest), so the whole turn is trained.
            cuts = sorted({0, len(text), *[c for span in spans for c in span]})
            parts = [self._encode_piece(text[a:b], a) for a, b in zip(cuts, cuts[1:]) if b > a]
            ids, starts, ends = (np.concatenate(x) for x in zip(*parts))
        mask = np.zeros(len(ids), dtype=np.int8)
        for a, b in spans:
            mask[(starts >= a) & (ends <= b) & (ends > starts)] = 1
        return Encoded(ids, mask, text, tuple(spans), straddling, appended_eos)

    def _encode_piece(self, text: str, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2) + offset
        return np.asarray(enc["input_ids"], dtype=np.int64), offsets[:, 0], offsets[:, 1]


def _role_before(messages: list[dict], i: int) -> str:
    role = messages[i - 1]["role"] if i else "user"
    return role if role in ("tool", "assistant") else "user"


def _role_after(messages: list[dict], i: int) -> str | None:
    if i + 1 >= len(messages):
        return None
    role = messages[i + 1]["role"]
    return role if role in ("tool", "assistant") else "user"


def _straddling(starts: np.ndarray, ends: np.ndarray, spans: list[tuple[int, int]]) -> int:
    return sum(int(np.sum((starts < c) & (ends > c))) for span in spans for c in span)


def _reasoning_of(message: dict) -> str:
    if message.get("reasoning_content"):
        return message["reasoning_content"].strip("\n")
    content = message.get("content") or ""
    if THINK_CLOSE in content:
        return content.split(THINK_CLOSE)[0].split("<think>")[-1].strip("\n")
    return ""


def _inline_dropped_reasoning(messages: list[dict], text: str, anchors: dict[int, Anchor]) -> list[dict] | None:
    """Rewrite turns whose reasoning the template dropped so it renders inline, as the model wrote it."""
    out, changed, prev = [], False, 0
    for i, m in enumerate(messages):
        if i in anchors:
            reasoning = _reasoning_of(m)
            if reasoning and reasoning.strip() not in text[prev : anchors[i].last_end]:
                content = m.get("content") or ""
                if THINK_CLOSE in content:
                    content = content.split(THINK_CLOSE)[-1]
                # a string reasoning_content stops templates (Qwen3) from re-splitting the content
                m = {**m, "content": f"<think>\n{reasoning}\n</think>\n\n{content.lstrip()}", "reasoning_content": ""}
                changed = True
            prev = anchors[i].last_end
        out.append(m)
    return out if changed else None

