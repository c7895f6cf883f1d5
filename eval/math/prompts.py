"""Prompt templates for math eval: the template used at training time, or an inline one.

Rendering is training's (``verl_ext.data.prompt_format.format_prompt``), so literal braces are
written doubled (``\\boxed{{}}``); ``{problem}`` and ``{question}`` are aliases of ``{prompt}``.
``prompt.mode=complete`` sends the rendered text raw, tokenized as ``data.prompt_format=plain``
trains it; its default template is the MATH seed's (``MATH_PLAIN_TEMPLATE``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from verl_ext.data.prompt_format import MATH_PLAIN_TEMPLATE, format_prompt

logger = logging.getLogger(__name__)

# Qwen2.5-Math / Qwen3 style
DEFAULT_TEMPLATE = "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}."
RAW_TEMPLATE = "{prompt}"
CONFIG_KEYS = ("prompt_template", "data.prompt_template", "gen_eval.prompt_template")
SYSTEM_KEYS = ("system_prompt", "data.system_prompt", "gen_eval.system_prompt")


class PromptError(ValueError):
    """A template cannot be read or rendered; the message names the file/template and the fix."""


@dataclass(frozen=True)
class PromptSpec:
    template: str
    system: str | None = None
    origin: str = "default"  # where the template came from (reported in the summary)
    trained_format: str | None = None  # data.prompt_format of the training config (from_config), if set


def render_prompt(template: str, problem: str) -> str:
    """The user prompt (chat) or the raw prompt (complete) for ``problem``: training's renderer."""
    try:
        return format_prompt(template, problem)
    except (KeyError, IndexError, ValueError) as e:
        raise PromptError(
            f"prompt template {template!r} cannot be rendered ({type(e).__name__}: {e}); use {{problem}} "
            f"(or {{prompt}}) for the problem and double literal braces, e.g. \\boxed{{{{}}}}") from None


def check_template(template: str) -> None:
    """A template must place the problem somewhere and render."""
    marker = "\u0000PROBLEM\u0000"
    if marker not in render_prompt(template, marker):
        raise PromptError(f"prompt template {template!r} has no {{problem}} / {{prompt}} placeholder")


def _select(cfg, key: str) -> tuple[bool, object]:
    node = cfg
    for part in key.split("."):
        if not hasattr(node, "keys") or part not in node:
            return False, None
        node = node[part]
    return True, node


def template_from_config(path: str | Path) -> PromptSpec:
    """The training prompt template in a YAML config: the first of ``prompt_template``,
    ``data.prompt_template``, ``gen_eval.prompt_template`` that is set. A key that is present
    but null means training used the raw problem (``{prompt}``)."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        raise PromptError(f"prompt.from_config={path}: no such file")
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as e:  # noqa: BLE001 - yaml errors of all kinds
        raise PromptError(f"prompt.from_config={path}: cannot read YAML ({e})") from None
    present = False
    template = None
    for key in CONFIG_KEYS:
        found, value = _select(cfg, key)
        present = present or found
        if found and value is not None:
            if not isinstance(value, str):
                raise PromptError(f"{path}: {key} must be a string, got {type(value).__name__}")
            template = value
            origin = f"{path}:{key}"
            break
    if template is None:
        if not present:
            raise PromptError(f"{path}: none of {', '.join(CONFIG_KEYS)} is there; give the template inline "
                              "with prompt.template='...{problem}...'")
        template, origin = RAW_TEMPLATE, f"{path} (prompt_template null: raw problem)"
    system = None
    for key in SYSTEM_KEYS:
        found, value = _select(cfg, key)
        if found and isinstance(value, str) and value:
            system = value
            break
    check_template(template)
    found, trained_format = _select(cfg, "data.prompt_format")
    return PromptSpec(template, system, origin, trained_format if found and trained_format else None)


def resolve_prompt(template: str | None, from_config: str | None, system: str | None,
                   mode: str = "chat") -> PromptSpec:
    """``prompt.*`` settings to one spec: ``from_config`` and ``template`` exclude each other; an
    explicit ``system`` wins over the config file's. The default template: ``DEFAULT_TEMPLATE``
    (chat), the MATH seed's plain format (complete). A training config's ``data.prompt_format``
    must match ``mode`` (plain is evaluated with complete, chat with chat)."""
    if template and from_config:
        raise PromptError("give prompt.template or prompt.from_config, not both")
    if from_config:
        spec = template_from_config(from_config)
        wanted = {"plain": "complete", "chat": "chat"}.get(str(spec.trained_format))
        if wanted and wanted != mode:
            raise PromptError(f"{from_config} trains data.prompt_format={spec.trained_format}: evaluate it with "
                              f"prompt.mode={wanted} (what is trained is what is evaluated)")
        return PromptSpec(spec.template, system or spec.system, spec.origin, spec.trained_format)
    if template:
        check_template(template)
        return PromptSpec(template, system, "inline")
    if mode == "complete":
        return PromptSpec(MATH_PLAIN_TEMPLATE, system, "default (plain: the MATH seed's format)")
    return PromptSpec(DEFAULT_TEMPLATE, system, "default")


def build_messages(spec: PromptSpec, problem: str) -> list[dict]:
    """Chat messages (our schema) for one problem."""
    user = {"role": "user", "content": render_prompt(spec.template, problem)}
    return ([{"role": "system", "content": spec.system}] if spec.system else []) + [user]
