"""Agent trajectories (AgentGym ``conversations`` or OpenAI-style ``messages``) → our chat schema.

AgentGym turns ``{"from": "human"|"gpt", "loss": null|false|true, "value": ...}`` become
``{"role": "user"|"assistant", "content": ..., "loss": ...}``: the per-message ``loss`` is carried
(the opening acknowledgement with ``loss: false`` stays as context, never trained), environment
observations are ``user`` turns (masked by role), ``item_id`` is kept. Conversations that break
the role order are rejected with the index of the first bad turn.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from data_converters.parquet_io import Reject
from data_converters.pipeline import (
    Kept, Outcome, convert_files, expand_inputs, make_parser, progress_bar, run_main,
)

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
         "system": "system", "tool": "tool"}
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string()), ("loss", pa.bool_())])
SCHEMA = pa.schema([("messages", pa.list_(MESSAGE_TYPE)), ("item_id", pa.string()), ("data_source", pa.string())])


@dataclass(frozen=True)
class Options:
    system_prompt: str | None = None  # prepended unless the conversation has its own
    data_source: str = "textcraft"


def _turn(turn: object, i: int) -> dict | Reject:
    if not isinstance(turn, dict):
        return Reject("wrong_type:message", f"message[{i}] is {type(turn).__name__}, expected an object")
    source = turn.get("from", turn.get("role"))
    text_key = "value" if "from" in turn else "content"  # ShareGPT names the text "value"
    content = turn.get(text_key, turn.get("content"))
    loss = turn.get("loss")
    if source not in ROLES:
        return Reject("unknown_role", f"message[{i}] role {source!r}; known: {sorted(ROLES)}")
    if content is None:
        return Reject(f"missing_field:{text_key}", f"message[{i}] ({ROLES[source]}) has no {text_key!r}; "
                      f"keys: {sorted(turn)}")
    if not isinstance(content, str):
        return Reject("wrong_type:content", f"message[{i}] content is {type(content).__name__}, expected str")
    if not content.strip():
        return Reject("empty_text:content", f"message[{i}] ({ROLES[source]}) is empty")
    if loss is not None and not isinstance(loss, bool):
        return Reject("wrong_type:loss", f"message[{i}] loss is {loss!r}, expected true/false/null")
    return {"role": ROLES[source], "content": content, "loss": loss}


def check_order(messages: Sequence[dict]) -> Reject | None:
    """System only first; then user first; assistant never twice in a row; user never twice in a
    row; tool only after assistant or tool; the last turn is the assistant's."""
    start = 1 if messages and messages[0]["role"] == "system" else 0
    prev = None
    for i, m in enumerate(messages[start:], start=start):
        role = m["role"]
        bad = (role == "system" or (prev is None and role != "user")
               or (role == prev and role in ("user", "assistant"))
               or (role == "tool" and prev not in ("assistant", "tool")))
        if bad:
            return Reject("roles_out_of_order", f"message[{i}] is {role!r} after {prev or 'the start'!r}")
        prev = role
    if prev != "assistant":
        return Reject("last_turn_not_assistant", f"conversation ends with {prev!r}")
    if not any(m["role"] == "assistant" and m["loss"] is not False for m in messages):
        return Reject("nothing_to_train", "every assistant turn has loss: false")
    return None


def convert_record(record: object, opts: Options) -> Outcome:
    """One trajectory → a chat row, or a Reject."""
    if not isinstance(record, dict):
        return Reject("not_an_object", f"got {type(record).__name__}")
    turns = record.get("conversations", record.get("messages"))
    if turns is None:
        return Reject("missing_field:conversations", f"no 'conversations' or 'messages'; keys: {sorted(record)[:12]}")
    if not isinstance(turns, list):
        return Reject("wrong_type:conversations", f"got {type(turns).__name__}, expected a list")
    if not turns:
        return Reject("empty_conversation", "no turns")
    messages = []
    for i, turn in enumerate(turns):
        m = _turn(turn, i)
        if isinstance(m, Reject):
            return m
        messages.append(m)
    notes = []
    if opts.system_prompt is not None:
        if messages[0]["role"] == "system":
            notes.append("own_system_prompt_kept")
        else:
            messages.insert(0, {"role": "system", "content": opts.system_prompt, "loss": None})
    bad = check_order(messages)
    if bad is not None:
        return bad
    item_id = record.get("item_id", record.get("id"))
    if item_id is None:
        notes.append("no_item_id")
    row = {"messages": messages, "item_id": None if item_id is None else str(item_id), "data_source": opts.data_source}
    return Kept(row, "train", tuple(notes))


EXAMPLE = """  python -m data_converters.textcraft_traj textcraft_train.json --out data/textcraft
  → data/textcraft/train.parquet, rejects.jsonl, summary.json"""


def build_parser():
    p = make_parser("data_converters.textcraft_traj", __doc__.split("\n\n")[0], EXAMPLE)
    p.add_argument("inputs", nargs="+", type=Path, help="JSON list / JSONL / Parquet files")
    p.add_argument("--system-prompt", default=None, help="system message to prepend (text, or @file)")
    p.add_argument("--data-source", default="textcraft", help="value of the data_source column")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        system = args.system_prompt
        if system is not None and system.startswith("@"):
            system = Path(system[1:]).read_text(encoding="utf-8")
        opts = Options(system, args.data_source)
        inputs = expand_inputs(args.inputs)
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        with progress_bar(inputs, "textcraft", args.no_progress) as bar:
            return convert_files("textcraft", inputs, lambda c: [convert_record(r, opts) for r in c.records],
                                 args.out, SCHEMA, ("train",), args.batch_size, bar.update, config)

    return run_main(body)


if __name__ == "__main__":
    raise SystemExit(main())
