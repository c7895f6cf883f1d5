"""Reading and normalising training rows, however users wrote their files.

Parquet written by pandas/pyarrow comes back with struct columns whose fields are the union over all
rows (missing keys become ``None``), numpy arrays for lists, and ``tools`` as a list or a JSON
string. Everything here turns that into plain Python messages in one schema, and raises
``DataError`` naming the file, row and field for anything that cannot be trained on.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

ROLES = ("system", "user", "assistant", "tool")
# Role names seen in the wild (ShareGPT / AgentGym / LLaMA-Factory) mapped onto chat-template roles.
ROLE_ALIASES = {
    "human": "user",
    "gpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "function": "tool",
    "ipython": "tool",
    "observation": "tool",
    "environment": "user",
}


class DataError(ValueError):
    """A row cannot be used; the message names file, row, field and what to do."""


@dataclass(frozen=True)
class RowRef:
    path: str
    row: int

    def __str__(self) -> str:
        return f"{self.path}, row {self.row}"


def read_rows(path: str, columns: Sequence[str] | None = None, limit: int | None = None) -> list[dict]:
    """Rows of a Parquet, JSONL or JSON-list file as plain Python dicts (no numpy, no pandas);
    ``limit`` reads only the first rows (preflight samples big files cheaply)."""
    rows: list[dict] = []
    for batch in iter_row_batches(path, columns=columns, batch_size=min(limit or 4096, 4096)):
        rows.extend(row for _, row in batch)
        if limit is not None and len(rows) >= limit:
            return rows[:limit]
    return rows


def iter_row_batches(
    path: str, columns: Sequence[str] | None = None, batch_size: int = 1024
) -> Iterator[list[tuple[int, dict]]]:
    """Stream ``(row index, row)`` pairs of a Parquet, JSONL or JSON-list file in batches, with
    bounded memory (``verl_ext.io``, the project's one reader). Row indexes are 0-based (the JSONL
    line number minus one for files without blank lines), as ``RowRef`` prints them."""
    from verl_ext import io

    path = os.path.expanduser(str(path))
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found (check data.train_files / data.val_files)")
    is_json = path.lower().endswith((".jsonl", ".ndjson", ".json"))
    start = 0
    try:
        for chunk in io.iter_chunks(path, batch_size, columns, on_bad_line=_bad_line, kind=None if is_json else "parquet"):
            rows = chunk.records
            if not is_json:
                rows = unpad_parquet_rows(rows)
            yield list(enumerate(rows, start))
            start += len(rows)
    except io.ReadError as e:
        raise DataError(str(e)) from None


def unpad_parquet_rows(rows: list[dict]) -> list[dict]:
    """Parquet rows as written: struct columns hold the union of keys over all rows, None where a row
    had none; drop that padding (an explicit null inside a Parquet struct cannot be told apart; JSON
    keeps its nulls)."""
    return [{k: _drop_none(v) for k, v in row.items()} for row in rows]


def _bad_line(file: str, line: int, error, text: str) -> None:
    raise DataError(f"{file}, line {line}: {error.describe()} ({error.short})")


def _drop_none(value: Any) -> Any:
    """Remove the ``None`` fields that struct columns add for keys a row never had."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _maybe_json(value: Any, ref: RowRef, field: str) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{ref}: field {field!r} is a string but not valid JSON ({e.msg})") from None
    return value


def normalize_tools(value: Any, ref: RowRef) -> list[dict] | None:
    """``tools`` as a list of JSON schemas, from a list, a JSON string, or null."""
    value = _maybe_json(value, ref, "tools")
    if value is None:
        return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise DataError(f"{ref}: field 'tools' must be a list of tool schemas (or a JSON string of one)")
    return value or None


def _normalize_tool_calls(value: Any, ref: RowRef, i: int) -> list[dict] | None:
    """Tool calls in the OpenAI shape, keeping every field the row gives (``id``: Mistral templates
    refuse calls without one; ``type``: DeepSeek prints it)."""
    value = _maybe_json(value, ref, f"messages[{i}].tool_calls")
    if not value:
        return None
    if isinstance(value, dict):
        value = [value]
    calls = []
    for call in value:
        if not isinstance(call, dict):
            raise DataError(f"{ref}: messages[{i}].tool_calls must be a list of objects")
        fn = call.get("function", call)
        if not isinstance(fn, dict) or not fn.get("name"):
            raise DataError(f"{ref}: messages[{i}].tool_calls entry has no function name")
        # a string is kept verbatim (the template prints it as the model wrote it); a mapping is
        # rendered by the template's tojson
        args = fn.get("arguments", {})
        if args is None:
            args = {}
        if "function" in call:  # OpenAI shape: keep the call's and the function's other fields
            extra = {k: v for k, v in call.items() if k != "function" and v is not None}
            function = {**fn, "name": fn["name"], "arguments": args}
        else:  # flat {name, arguments, id}
            extra = {k: call[k] for k in ("id", "type") if call.get(k) is not None}
            function = {"name": fn["name"], "arguments": args}
        calls.append({"type": "function", **extra, "function": function})
    return calls


# message fields read and rewritten here; any other field a row gives is passed to the template as is
_OWN_FIELDS = ("role", "from", "content", "value", "reasoning_content", "tool_calls", "loss")


def normalize_messages(value: Any, ref: RowRef) -> list[dict]:
    """Validate one conversation and return clean message dicts.

    Keeps ``role``, ``content`` (str; ``None`` kept on an assistant turn with tool calls, as some
    templates render ``None`` and ``""`` differently), and where present ``reasoning_content``,
    ``tool_calls`` (with their ``id``), ``loss`` (``False`` = context only, never trained) and every
    other field the row gives (``name``, ``tool_call_id``, ...), for the template to read.
    """
    value = _maybe_json(value, ref, "messages")
    if value is None:
        raise DataError(f"{ref}: 'messages' is missing or empty; every row needs a list of messages")
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{ref}: 'messages' must be a list of {{role, content}} objects, got {type(value).__name__}")
    out: list[dict] = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise DataError(f"{ref}: messages[{i}] must be an object with 'role' and 'content'")
        raw_role = msg.get("role", msg.get("from"))
        role = ROLE_ALIASES.get(str(raw_role).lower(), str(raw_role).lower()) if raw_role is not None else None
        if role not in ROLES:
            raise DataError(
                f"{ref}: messages[{i}] has role {raw_role!r}; allowed: {', '.join(ROLES)} "
                f"(aliases: {', '.join(sorted(ROLE_ALIASES))})"
            )
        content = msg.get("content", msg.get("value"))
        if content is not None and not isinstance(content, str):
            raise DataError(f"{ref}: messages[{i}].content must be a string, got {type(content).__name__}")
        calls = _normalize_tool_calls(msg.get("tool_calls"), ref, i)
        if calls and role != "assistant":
            raise DataError(f"{ref}: messages[{i}] has tool_calls but role {role!r}; only assistant turns call tools")
        clean: dict = {"role": role, "content": content if content is not None or calls else ""}
        clean.update((k, v) for k, v in msg.items() if k not in _OWN_FIELDS and v is not None)
        reasoning = msg.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning.strip():
            clean["reasoning_content"] = reasoning
        if calls:
            clean["tool_calls"] = calls
        loss = msg.get("loss")
        if loss is not None:
            if not isinstance(loss, (bool, int)):
                raise DataError(f"{ref}: messages[{i}].loss must be true, false or null")
            clean["loss"] = bool(loss)
        if role == "assistant" and not content and not calls and "reasoning_content" not in clean:
            raise DataError(f"{ref}: messages[{i}] is an empty assistant turn (no content, reasoning or tool_calls)")
        out.append(clean)
    if not any(m["role"] == "assistant" and m.get("loss", True) for m in out):
        raise DataError(
            f"{ref}: conversation has no trained assistant turn (all assistant turns missing or loss=false); "
            "drop the row or set loss on one assistant message"
        )
    if out[0]["role"] == "assistant":
        raise DataError(f"{ref}: conversation starts with an assistant turn; add the user/system message before it")
    return out


def is_trained(message: dict) -> bool:
    return message["role"] == "assistant" and message.get("loss", True) is not False


def normalize_bool(value: Any, ref: RowRef, field: str) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise DataError(f"{ref}: field {field!r} must be a boolean, got {value!r}")


def iter_files(paths: Any) -> Iterable[str]:
    """verl passes a path, a list or a ListConfig."""
    if isinstance(paths, (str, os.PathLike)):
        return [str(paths)]
    return [str(p) for p in paths]
