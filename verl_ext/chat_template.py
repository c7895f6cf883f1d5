"""``model.custom_chat_template``: the one place its value becomes template text, and the one loader
of a tokenizer with it applied.

verl 0.9.1's key takes inline Jinja (``HFModelConfig`` sets it on the tokenizer, or on the processor
of a multimodal model, when the trainer loads them); verl-ext also accepts a path to a ``.jinja``
file and turns it into the text before verl reads the key (``inline_custom_chat_template``, run by
the trainer's ``prepare``). Everything in verl-ext that renders with a tokenizer gets its template
from here: the datasets (so the tokenized cache's fingerprint hashes the override), preflight,
``verl-ext prepare``, gen_eval, the eval backends and ``verl-ext export``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

KEY = "model.custom_chat_template"
NO_TEMPLATE_FIX = (
    f"set {KEY}=<inline Jinja or a .jinja file> to give it one, or train the raw text of column rows with "
    "data.dataset=prompt_response data.prompt_format=plain"
)


class ChatTemplateError(ValueError):
    """A custom chat template cannot be read; the message names the value and the fix."""


def resolve_chat_template(value: Any, key: str = KEY) -> str | None:
    """The template text of ``value``: None (keep the tokenizer's), inline Jinja (returned as is), or a
    path to a file (its text). A value with no ``{{``/``{%`` is a path; a missing file is an error."""
    if value is None:
        return None
    text = str(value)
    if "{%" in text or "{{" in text or "{#" in text:
        return text
    if not text.strip():
        raise ChatTemplateError(f"{key} is empty; set it to null to keep the tokenizer's chat template")
    path = Path(os.path.expanduser(text.strip()))
    if not path.is_file():
        raise ChatTemplateError(
            f"{key}={text!r}: no such file, and not a Jinja template (it has no '{{%' or '{{{{'); give the path "
            "of a .jinja file or the template inline"
        )
    body = path.read_text(encoding="utf-8")
    if not body.strip():
        raise ChatTemplateError(f"{key}={path}: the file is empty")
    return body


def apply_chat_template_override(tokenizer, value: Any, key: str = KEY):
    """Set ``tokenizer.chat_template`` to the resolved ``value`` (unchanged when None); returns it."""
    text = resolve_chat_template(value, key)
    if text is not None:
        tokenizer.chat_template = text
    return tokenizer


def inline_custom_chat_template(config) -> None:
    """Replace a ``.jinja`` path in ``config.model.custom_chat_template`` by the file's text, so that
    verl (which takes inline Jinja only) and every Ray worker see the template itself."""
    from omegaconf import open_dict

    model = config.get("model") or {}
    value = model.get("custom_chat_template")
    text = resolve_chat_template(value)
    if text is not None and text != value:
        with open_dict(config):  # "\${" keeps a literal "${" in the file from being read as an interpolation
            config.model.custom_chat_template = text.replace("${", "\\${")


def load_tokenizer(model_config):
    """The tokenizer as verl's SFT trainer builds it (``verl.utils.hf_tokenizer`` on
    ``model.tokenizer_path`` or ``model.path``, then ``model.custom_chat_template``), so preflight and
    ``verl-ext prepare`` fingerprint the same tokenizer as the training run."""
    from verl.utils import hf_tokenizer

    path = model_config.get("tokenizer_path") or model_config.get("path")
    tokenizer = hf_tokenizer(os.path.expanduser(str(path)),
                             trust_remote_code=bool(model_config.get("trust_remote_code", False)))
    return apply_chat_template_override(tokenizer, model_config.get("custom_chat_template"))


def chat_template_problem(tokenizer, why: str = "data.dataset=chat renders every row with it") -> str | None:
    """Why ``tokenizer`` cannot render where a chat template is needed (None: it can): it has none
    (both ways out), or its template is a ``.jinja`` path that reached verl unread."""
    name = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return f"the tokenizer of {name} has no chat template ({why}): {NO_TEMPLATE_FIX}"
    if isinstance(template, str) and not any(m in template for m in ("{%", "{{", "{#")):
        return (f"the chat template of {name} is {template[:120]!r}, not Jinja: a {KEY} path reached verl unread "
                "(verl takes inline Jinja); launch with verl-ext train/check/prepare, which read the file")
    return None
