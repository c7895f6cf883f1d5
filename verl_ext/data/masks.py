"""Conversation -> token ids + assistant-only loss mask, from ONE render of the real chat template.

Why not per-message rendering (verl's ``MultiTurnSFTDataset``): templates look ahead (Qwen3 drops
reasoning of turns before the last user query and adds an empty ``<think>`` block to the last turn
when thinking is off), so concatenated per-message renders are token sequences the model never sees
(verl #3477, #7378, #7807). Here the trained sequence is exactly ``apply_chat_template(messages)``.

How the mask is found, for any template, without template-specific code:
1. Render the conversation (F), and once more with every assistant *content* replaced by a unique
   sentinel (F_s). The text between sentinels is identical in both, so aligning the two gives each
   assistant content's character span in F.
2. The generation prompt G (what ``add_generation_prompt=True`` appends) is found from a probe. The
   trained span of a turn starts where the longest prefix of G ends before its content (so an
   empty think block that the template injects, which the model never produces, is masked) and
   ends after the template's end-of-turn marker that follows the content (tool calls included).
3. Tokens are trained when their character span lies inside a trained span.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from verl_ext.rows import is_trained

# ASCII so that it survives ``tojson`` (tool-call names) unescaped
_SENT = "@@verl-ext-sentinel-{}@@"
_SENT_RE = re.compile("@@verl-ext-sentinel-(\\d+)@@")
_THINK_CLOSE = "</think>"


class TemplateAlignmentError(RuntimeError):
    """The chat template transforms assistant content in a way the span alignment cannot follow."""


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

    # -- template rendering -------------------------------------------------------------
    def render(self, messages: list[dict], tools: list | None, kwargs: dict, generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation_prompt, **kwargs
        )

    def _gen_prompt(self, messages: list[dict], tools: list | None, kwargs: dict) -> str:
        bare = self.render(messages, tools, kwargs)
        with_gen = self.render(messages, tools, kwargs, generation_prompt=True)
        return with_gen[_common_prefix(bare, with_gen) :]

    def _probes(self, tools: list | None, kwargs: dict) -> tuple[str, str, list[int]]:
        """(generation prompt, end-of-turn marker, prefix lengths of the prompt that may start a
        trained span) of this template under these kwargs."""
        key = (json.dumps(tools, sort_keys=True, default=str), json.dumps(kwargs, sort_keys=True, default=str))
        if key not in self._probe_cache:
            user = [{"role": "user", "content": "\ue002"}]
            gen = self._gen_prompt(user, tools, kwargs)
            sent = _SENT.format(0)
            closed = self.render(user + [{"role": "assistant", "content": sent}], tools, kwargs)
            tail = closed[closed.rindex(sent) + len(sent) :]
            # The turn's header is what the generation prompt has under every thinking setting
            # ("<|im_start|>assistant\n" for Qwen3); past it, the prompt may inject text the model
            # never writes (the empty think block when thinking is off). A turn is trained from the
            # end of the full generation prompt where the render has it, else from the header's end.
            variants = [gen] + [
                self._gen_prompt(user, tools, {**kwargs, "enable_thinking": flag}) for flag in (True, False)
            ]
            header = gen[: min(_common_prefix(gen, v) for v in variants)]
            offsets = self.tokenizer(gen, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            header_cut = max([int(e) for _, e in offsets if int(e) <= len(header)] or [0])
            cuts = sorted({len(gen), header_cut} - {0}, reverse=True)
            if not cuts or not gen[: cuts[-1]].strip():
                raise TemplateAlignmentError("the chat template has no assistant header in its generation prompt")
            self._probe_cache[key] = (gen, tail.rstrip(), cuts)
        return self._probe_cache[key]

    def prompt(self, messages: list[dict], tools: list | None = None, enable_thinking: bool | None = None) -> str:
        """What inference renders before the model's next turn (``add_generation_prompt=True``)."""
        return self.render(messages, tools, self._kwargs(enable_thinking), generation_prompt=True)

    def _kwargs(self, enable_thinking: bool | None) -> dict:
        kwargs = dict(self.template_kwargs)
        if enable_thinking is not None:
            kwargs["enable_thinking"] = enable_thinking
        return kwargs

    # -- encoding -------------------------------------------------------------------------
    def encode(self, messages: list[dict], tools: list | None = None, enable_thinking: bool | None = None) -> Encoded:
        kwargs = self._kwargs(enable_thinking)
        text = self.render(messages, tools, kwargs)
        content_spans = self._content_spans(messages, tools, kwargs, text)
        if self.reasoning_in_history:
            rewritten = _inline_dropped_reasoning(messages, text, content_spans)
            if rewritten is not None:
                messages = rewritten
                text = self.render(messages, tools, kwargs)
                content_spans = self._content_spans(messages, tools, kwargs, text)
        gen, eot, cuts = self._probes(tools, kwargs)
        spans: list[tuple[int, int]] = []
        appended_eos = False
        prev_end = 0
        for i, (c_start, c_end) in sorted(content_spans.items()):
            start = _gen_prompt_end(text, gen, cuts, prev_end, c_start)
            if eot:
                at = text.find(eot, c_end)
                if at < 0:
                    raise TemplateAlignmentError(f"end-of-turn marker {eot!r} not found after assistant message {i}")
                end = at + len(eot)
            else:  # template closes no turn: train an appended EOS on the final turn (verl #3562)
                end = c_end
            if is_trained(messages[i]):
                spans.append((start, end))
            prev_end = end
        if not eot:
            eos = self.tokenizer.eos_token
            if eos and spans and spans[-1][1] == len(text.rstrip()):
                text = text[: spans[-1][1]] + eos
                spans[-1] = (spans[-1][0], len(text))
                appended_eos = True
        return self._tokenize(text, spans, appended_eos)

    def _content_spans(self, messages, tools, kwargs, text) -> dict[int, tuple[int, int]]:
        """Character span in ``text`` of every assistant message's content."""
        sentinel_msgs = [_with_sentinel(m, i) if m["role"] == "assistant" else m for i, m in enumerate(messages)]
        marked = self.render(sentinel_msgs, tools, kwargs)
        parts = _SENT_RE.split(marked)
        # parts = [X0, idx1, X1, idx2, X2, ...]; the X segments appear verbatim in ``text``
        if not text.startswith(parts[0]):
            raise TemplateAlignmentError("template output before the first assistant turn depends on its content")
        pos = len(parts[0])
        spans = {}
        n = (len(parts) - 1) // 2
        for k in range(n):
            idx, seg = int(parts[1 + 2 * k]), parts[2 + 2 * k]
            if k == n - 1:
                if not text.endswith(seg) or len(text) - len(seg) < pos:
                    raise TemplateAlignmentError("template output after the last assistant turn depends on its content")
                end = len(text) - len(seg)
            else:
                end = text.find(seg, pos) if seg else pos
                if end < 0:
                    raise TemplateAlignmentError(f"cannot align assistant message {idx} with the rendered template")
            spans[idx] = (pos, end)
            pos = end + len(seg)
        missing = [i for i, m in enumerate(messages) if m["role"] == "assistant" and i not in spans]
        if missing:
            raise TemplateAlignmentError(f"the chat template did not render assistant messages {missing}")
        return spans

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


def _straddling(starts: np.ndarray, ends: np.ndarray, spans: list[tuple[int, int]]) -> int:
    return sum(int(np.sum((starts < c) & (ends > c))) for span in spans for c in span)


def _with_sentinel(m: dict, i: int) -> dict:
    """Mark an assistant message with sentinel ``i`` without changing how the template treats it:
    in the content when it has any (after inline reasoning, which templates split off), else in the
    first tool call's name (Qwen3 renders an empty content differently from a non-empty one)."""
    content = m.get("content") or ""
    j = content.rfind(_THINK_CLOSE)
    head = ""
    if j >= 0:  # keep inline reasoning so the template splits it the same way
        k = j + len(_THINK_CLOSE)
        while k < len(content) and content[k].isspace():
            k += 1
        head, content = content[:k], content[k:]
    if content.strip() or not m.get("tool_calls"):
        return {**m, "content": head + _SENT.format(i)}
    first, *rest = m["tool_calls"]
    fn = {**first["function"], "name": _SENT.format(i)}
    return {**m, "tool_calls": [{**first, "function": fn}, *rest]}


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _gen_prompt_end(text: str, gen: str, cuts: list[int], lo: int, hi: int) -> int:
    """End of the longest token-aligned prefix of the generation prompt that occurs in text[lo:hi]."""
    for k in cuts:
        at = text.rfind(gen[:k], lo, hi)
        if at >= 0:
            return at + k
    raise TemplateAlignmentError("could not find the assistant header (generation prompt) before an assistant turn")


def _reasoning_of(message: dict) -> str:
    if message.get("reasoning_content"):
        return message["reasoning_content"].strip("\n")
    content = message.get("content") or ""
    if _THINK_CLOSE in content:
        return content.split(_THINK_CLOSE)[0].split("<think>")[-1].strip("\n")
    return ""


def _inline_dropped_reasoning(messages: list[dict], text: str, spans: dict) -> list[dict] | None:
    """Rewrite turns whose reasoning the template dropped so it renders inline, as the model wrote it."""
    out, changed, prev = [], False, 0
    for i, m in enumerate(messages):
        if i in spans:
            reasoning = _reasoning_of(m)
            start = spans[i][0]
            if reasoning and reasoning.strip() not in text[prev:start]:
                content = m.get("content") or ""
                if _THINK_CLOSE in content:
                    content = content.split(_THINK_CLOSE)[-1]
                # a string reasoning_content stops templates (Qwen3) from re-splitting the content
                m = {**m, "content": f"<think>\n{reasoning}\n</think>\n\n{content.lstrip()}", "reasoning_content": ""}
                changed = True
            prev = spans[i][1]
        out.append(m)
    return out if changed else None
