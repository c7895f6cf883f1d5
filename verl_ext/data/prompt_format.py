"""Prompt/response rows outside the chat template: ``data.prompt_template`` rendering and the plain
format (``data.prompt_format=plain``) for base models without a chat template.

Shared with the math evaluator (``verl_ext_eval.math``: ``prompt.mode=complete``) and gen_eval, so
what is trained is what is evaluated: the same template rendering, the same prompt tokens.

The plain format's contract (pure, no template call)::

    ids  = prompt_ids(prompt) + tokenize(response) + [eos_token_id]
    mask = 0 on the prompt, 1 on the response and the EOS
    prompt_ids(text) = bos_prefix + tokenize(text)

``tokenize`` is the tokenizer without special tokens. ``bos_prefix`` is ``[bos_token_id]`` when the
tokenizer itself starts every encoding with its BOS (Llama 3, Gemma, Mistral: their models expect
it, and a server tokenizing a raw completion prompt adds it too), else empty (Qwen2.5/Qwen3 base:
no BOS). Prompt and response are tokenized apart, as at inference (the prompt is encoded, the model
writes the rest): the separator between them belongs to the template's end or the response's start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from verl_ext.rows import DataError

PROMPT_FORMATS = ("chat", "plain")
# The MATH seed's format for base models: prompt.mode=complete's default template in the math evaluator.
MATH_PLAIN_TEMPLATE = "Solve this math problem:\n\n{prompt}\n\nAnswer:"
# names a template may use for the prompt besides {prompt} (MATH rows: problem, GSM8K rows: question)
PROMPT_ALIASES = ("problem", "question")


def format_prompt(template: str, prompt: str, fields: Mapping[str, Any] | None = None) -> str:
    """``template`` (``str.format``: literal braces doubled) with ``{prompt}`` = ``prompt``; other
    names come from ``fields`` (a training row's columns), ``{problem}``/``{question}`` default to
    the prompt. Raises ``KeyError``/``IndexError``/``ValueError`` as ``str.format`` does."""
    values = dict.fromkeys(PROMPT_ALIASES, prompt)
    values.update({k: v for k, v in (fields or {}).items() if isinstance(k, str)})
    values["prompt"] = prompt
    return template.format(**values)


def bos_prefix(tokenizer) -> list[int]:
    """``[bos_token_id]`` if the tokenizer starts its own encodings with its BOS, else ``[]``."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return []
    return [bos] if tokenizer("a")["input_ids"][:1] == [bos] else []


def tokenize(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def prompt_ids(tokenizer, text: str) -> list[int]:
    """Token ids of a raw-text prompt, exactly as the plain format puts them before the response."""
    return bos_prefix(tokenizer) + tokenize(tokenizer, text)


@dataclass
class PlainEncoder:
    """``encode([user, assistant])`` in the plain format, with the interface of
    ``verl_ext.data.masks.ChatEncoder`` (``encode``, ``prompt``) so the datasets use either."""

    tokenizer: Any

    def __post_init__(self) -> None:
        tok = self.tokenizer
        if tok.eos_token_id is None:
            raise DataError(f"the tokenizer of {getattr(tok, 'name_or_path', '?')} has no eos_token: "
                            "data.prompt_format=plain ends every response with it; set eos_token in its "
                            "tokenizer_config.json")
        self._bos = bos_prefix(tok)
        self._bos_text = tok.bos_token if self._bos else ""

    def prompt(self, messages: list[dict], tools: list | None = None, enable_thinking: bool | None = None) -> str:
        """The text before the response (the last message's content, after the BOS if any)."""
        return self._bos_text + messages[-1]["content"]

    def encode(self, messages: list[dict], tools: list | None = None, enable_thinking: bool | None = None):
        from verl_ext.data.masks import Encoded

        roles = [m.get("role") for m in messages]
        if roles != ["user", "assistant"]:
            raise DataError(f"data.prompt_format=plain encodes one prompt and one response, got roles {roles}")
        prompt, response = messages[0]["content"], messages[1]["content"]
        p = self._bos + tokenize(self.tokenizer, prompt)
        r = tokenize(self.tokenizer, response) + [self.tokenizer.eos_token_id]
        mask = np.zeros(len(p) + len(r), dtype=np.int8)
        mask[len(p):] = 1
        head = self._bos_text + prompt
        text = head + response + self.tokenizer.eos_token
        return Encoded(input_ids=np.asarray(p + r, dtype=np.int64), loss_mask=mask, text=text,
                       spans=((len(head), len(text)),))
