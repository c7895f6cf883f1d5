"""Chat-template families for the mask tests, built in code.

Each family is a template written for these tests (``templates/<name>.jinja``) with the structural
traits of a public model family's template, annotated with ``{% generation %}`` around what the model
writes: the reference mask is transformers' ``return_assistant_tokens_mask`` on the annotated
template; verl-ext encodes with the same template, tags removed. The tokenizer is the Qwen3 BPE
with the family's markers added as special tokens (as they are in the real families) and the
family's BOS/EOS.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken

TEMPLATES = Path(__file__).parent / "templates"
_GENERATION_TAG = re.compile(r"\{%-?\s*(end)?generation\s*-?%\}")


@dataclass(frozen=True)
class Family:
    name: str
    markers: tuple[str, ...] = ()  # added as special tokens
    bos: str | None = None
    eos: str = "<|im_end|>"
    tools: bool = True
    max_calls: int = 2  # tool calls one turn may make
    string_args: bool = False  # the template concatenates arguments: rows carry JSON strings
    call_content: str | None = ""  # content of a turn that only calls tools
    inline_reasoning: bool = False  # reasoning written as <think>...</think> in the content
    marker_text: str = "<|im_end|>"  # a piece of the family's markup, to put inside an answer
    variants: tuple[dict, ...] = ()  # template kwargs to run the conversations under too

    @property
    def annotated(self) -> str:
        return (TEMPLATES / f"{self.name}.jinja").read_text()

    @property
    def template(self) -> str:
        return _GENERATION_TAG.sub("", self.annotated)


FAMILIES = {f.name: f for f in [
    Family("llama3", ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>",
                      "<|python_tag|>"), bos="<|begin_of_text|>", eos="<|eot_id|>", max_calls=1, marker_text="<|eot_id|>"),
    Family("qwen25"),
    Family("qwen3", variants=({"enable_thinking": True}, {"enable_thinking": False})),
    Family("deepseek_r1", ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>",
                           "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
                           "<｜tool▁sep｜>", "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>",
                           "<｜tool▁output▁end｜>"), bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>",
           string_args=True, call_content=None, inline_reasoning=True, marker_text="<｜Assistant｜>"),
    Family("mistral", ("<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
                       "[TOOL_RESULTS]", "[/TOOL_RESULTS]"), bos="<s>", eos="</s>", marker_text="[/INST] and </s>"),
    Family("gemma", ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"), bos="<bos>", eos="<eos>", tools=False,
           marker_text="<end_of_turn>"),
    Family("phi", ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|tool|>", "<|/tool|>", "<|tool_call|>",
                   "<|/tool_call|>", "<|tool_response|>"), eos="<|endoftext|>", marker_text="<|end|>"),
    Family("granite", ("<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>", "<|tool_call|>"),
           eos="<|end_of_text|>", marker_text="<|end_of_text|>"),
    Family("olmo", eos="<|endoftext|>"),
    Family("smollm3", inline_reasoning=True, variants=({"enable_thinking": False},)),
    Family("harmony", ("<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|call|>", "<|return|>"),
           eos="<|return|>", marker_text="<|end|>"),
]}

_TOKENIZERS: dict[str, object] = {}


def family_tokenizer(base, family: Family):
    """A copy of ``base`` (the Qwen3 tokenizer) with the family's markers, BOS/EOS and template."""
    if family.name not in _TOKENIZERS:
        tok = copy.deepcopy(base)
        specials = [t for t in (*family.markers, family.bos, family.eos) if t]
        tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True)
        tok.eos_token = family.eos
        if family.bos:
            tok.bos_token = family.bos
        tok.chat_template = family.template
        _TOKENIZERS[family.name] = tok
    return _TOKENIZERS[family.name]


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SEARCH = {"type": "function", "function": {
    "name": "brave_search", "description": "Web search",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}


def _call(family: Family, k: int, name: str, **args) -> dict:
    return {"id": f"call{k:05d}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args) if family.string_args else args}}


def _answer(family: Family, reasoning: str, answer: str) -> dict:
    if family.inline_reasoning:
        return {"role": "assistant", "content": f"<think>\n{reasoning}\n</think>\n\n{answer}"}
    return {"role": "assistant", "content": answer, "reasoning_content": reasoning}


def conversations(family: Family) -> list[tuple[str, list[dict], list | None, dict]]:
    """``(name, messages, tools, template kwargs)``: every structural trait, for this family."""
    system = {"role": "system", "content": "You are a precise assistant."}
    out = [
        ("three_turns", [
            system,
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "  Hello there!  \n"},
            {"role": "user", "content": "Say something in unicode."},
            {"role": "assistant", "content": "Ünïcödé ✓ — 東京 🚀"},
            {"role": "user", "content": "3+4?"},
            {"role": "assistant", "content": "7"},
        ], None, {}),
        ("reasoning", [
            system,
            {"role": "user", "content": "What is 12*3?"},
            _answer(family, "12*3 = 36.", "36."),
            {"role": "user", "content": "And divided by 4?"},
            _answer(family, "36/4 = 9.", "9."),
            {"role": "user", "content": "Squared?"},
            _answer(family, "9*9 = 81.", "81."),
        ], None, {}),
        ("ends_with_user", [
            {"role": "user", "content": "Name a prime."},
            {"role": "assistant", "content": "2"},
            {"role": "user", "content": "Another?"},
            {"role": "assistant", "content": "3"},
            {"role": "user", "content": "Thanks!"},
        ], None, {}),
        ("edge_contents", [
            system,
            {"role": "user", "content": "Say nothing."},
            {"role": "assistant", "content": "   "},
            {"role": "user", "content": "Say ok."},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "Again."},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "Quote your markup."},
            {"role": "assistant", "content": f"It looks like {family.marker_text} here."},
            {"role": "user", "content": "Wrong answer next."},
            {"role": "assistant", "content": "a bad answer", "loss": False},
            {"role": "user", "content": "Try again."},
            {"role": "assistant", "content": "a good answer"},
        ], None, {}),
    ]
    if family.tools:
        first = [_call(family, 1, "get_weather", city="Paris")]
        if family.max_calls > 1:
            first.append(_call(family, 2, "get_weather", city="Zürich"))
        messages = [system, {"role": "user", "content": "Weather in Paris, Zürich and Rome?"},
                    {"role": "assistant", "content": family.call_content, "tool_calls": first}]
        for call, result in zip(first, ['{"temp": 21}', '{"temp": 12}']):
            messages.append({"role": "tool", "content": result, "tool_call_id": call["id"], "name": "get_weather"})
        messages += [
            {"role": "assistant", "content": "Now Rome.", "tool_calls": [_call(family, 3, "get_weather", city="Rome")]},
            {"role": "tool", "content": '{"temp": 25}', "tool_call_id": "call00003", "name": "get_weather"},
            {"role": "assistant", "content": "Paris 21 °C, Zürich 12 °C, Rome 25 °C."},
        ]
        out.append(("tools", messages, [WEATHER], {}))
    for kwargs in family.variants:
        out += [(f"{name}[{','.join(f'{k}={v}' for k, v in kwargs.items())}]", m, t, {**kw, **kwargs})
                for name, m, t, kw in list(out) if name in ("reasoning", "tools", "three_turns")]
    if family.name == "smollm3":  # the mode switched by the system prompt's text
        out.append(("no_think_system", [{"role": "system", "content": "Be brief. /no_think"}] + out[0][1][1:], None, {}))
    if family.name == "llama3":  # a builtin tool: <|python_tag|> call, closed by <|eom_id|>
        out.append(("builtin_tool", [
            system, {"role": "user", "content": "Search the news."},
            {"role": "assistant", "content": "", "tool_calls": [_call(family, 4, "brave_search", query="news today")]},
            {"role": "tool", "content": "Nothing new.", "tool_call_id": "call00004"},
            {"role": "assistant", "content": "Nothing new today."},
        ], [SEARCH], {"builtin_tools": ["brave_search"]}))
    return out


def reference(tok, family: Family, messages: list[dict], tools, kwargs: dict) -> tuple[list[int], list[int], str]:
    """(ids, assistant mask, text) of the annotated template: transformers' own assistant mask."""
    out = tok.apply_chat_template(messages, tools=tools, chat_template=family.annotated, tokenize=True,
                                  return_dict=True, return_assistant_tokens_mask=True, **kwargs)
    text = tok.apply_chat_template(messages, tools=tools, chat_template=family.annotated, tokenize=False, **kwargs)
    return list(out["input_ids"]), list(out["assistant_masks"]), text


def trained_text(tok, ids, mask) -> list[str]:
    """Decoded runs of consecutive trained tokens."""
    runs, cur = [], []
    for t, m in zip(list(ids), list(mask)):
        if m:
            cur.append(int(t))
        elif cur:
            runs.append(tok.decode(cur))
            cur = []
    if cur:
        runs.append(tok.decode(cur))
    return runs
