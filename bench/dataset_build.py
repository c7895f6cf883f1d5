"""Dataset build time and exactness: verl-ext ``ChatSFTDataset`` vs verl 0.9.1 ``MultiTurnSFTDataset``.

Both get the same seeded multi-turn conversations (2-8 turns; system prompts, Qwen3 reasoning,
tool calls with a ``tools`` column, enable_thinking true/false/null, up to ~2k tokens) in one
Parquet file, the real Qwen3 tokenizer and the same data config. "Build" is the same work for both:
construct the dataset and materialise every item (verl tokenizes lazily in ``__getitem__``, ours in
``__init__``). Rows on which verl raises are counted, not fatal. As such rows cost verl nothing,
the file is also written a second time with its nulls filled by values the Qwen3 template renders
identically (enable_thinking null -> true, tools null -> [], tool-call arguments as their ``tojson``
string), and both datasets are timed on that too: the like-for-like ratio.

Exactness, per conversation: ids equal to the template's own full render
(``apply_chat_template(messages, tools=..., enable_thinking=..., tokenize=True)``), and trained tokens
(loss_mask == 1) decoding to exactly what the assistant produced: each trained turn's text after the
assistant header (and after the empty think block the prompt holds when enable_thinking is false),
up to and including ``<|im_end|>``.

    python -m bench.dataset_build --repeat 3           # 2,000 conversations (~70 s on 2 cores)
    python -m bench.dataset_build --n 200 --repeat 3 --failures /tmp/fail.jsonl
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

IM_START, IM_END = "<|im_start|>", "<|im_end|>"
ASSISTANT_HEADER = "assistant\n"
NO_THINK = "<think>\n\n</think>\n\n"  # what the Qwen3 generation prompt adds when enable_thinking=false

WORDS = ("the a of to and in is that for it as with on by this we be are from at or an which can one "
         "value result function number step check data model answer first then so if not all each "
         "error file list count total since because however note let compute sum product case").split()
EXTRAS = ["café", "naïve", "日本語の文章", "数学题", "🙂", "→", "≤", "$x^2+1$", "\\frac{a}{b}", "`x`",
          "**bold**", "e.g.", "(see above)", "3.14159", "2024-05-01", "https://example.com/a?b=1", '"quoted"']
CODE = "```python\ndef f(x):\n    return x * 2  # double\n\nprint(f(21))\n```"
CITIES = ["Paris", "Tokyo", "São Paulo", "New York", "Zürich", "Lagos"]


def _tool(name: str, desc: str, props: dict[str, tuple[str, str]], required: list[str]) -> dict:
    properties = {k: {"type": t, "description": d} for k, (t, d) in props.items()}
    return {"type": "function", "function": {"name": name, "description": desc,
            "parameters": {"type": "object", "properties": properties, "required": required}}}


TOOLS = [
    _tool("get_weather", "Current weather for a city.", {"city": ("string", "City name"), "unit": ("string", "celsius or fahrenheit")}, ["city"]),
    _tool("search", "Search the web.", {"query": ("string", "Search terms"), "top_k": ("integer", "How many results")}, ["query"]),
    _tool("calculator", "Evaluate an arithmetic expression.", {"expression": ("string", "The expression")}, ["expression"]),
    _tool("run_python", "Run Python code and return stdout.", {"code": ("string", "Python source")}, ["code"]),
]


def _arguments(rng: np.random.Generator, name: str) -> dict:
    """Arguments with a fixed key order per tool (Parquet structs keep the first-seen order)."""
    if name == "get_weather":
        args = {"city": str(rng.choice(CITIES))}
        return args | ({"unit": str(rng.choice(["celsius", "fahrenheit"]))} if rng.random() < 0.5 else {})
    if name == "search":
        args = {"query": _text(rng, int(rng.integers(2, 8)))}
        return args | ({"top_k": int(rng.integers(1, 10))} if rng.random() < 0.5 else {})
    if name == "calculator":
        return {"expression": f"{rng.integers(2, 999)} * ({rng.integers(1, 99)} + {rng.integers(1, 99)}) / 7"}
    return {"code": 'import math\nprint("ok", math.sqrt(%d))\n' % rng.integers(2, 500)}


def _text(rng: np.random.Generator, n_words: int) -> str:
    """Prose with punctuation, paragraphs, some non-ASCII, LaTeX, lists and code."""
    parts, sentence = [], []
    for i in range(max(1, n_words)):
        sentence.append(str(rng.choice(EXTRAS)) if rng.random() < 0.06 else str(rng.choice(WORDS)))
        if len(sentence) >= rng.integers(6, 20) or i == n_words - 1:
            s = " ".join(sentence)
            parts.append(s[0].upper() + s[1:] + str(rng.choice([".", ".", "?", "!", ":"])))
            sentence = []
            r = rng.random()
            parts.append("\n\n" if r < 0.2 else "\n- " if r < 0.25 else f"\n\n{CODE}\n\n" if r < 0.27 else " ")
    return "".join(parts).strip()


def make_conversations(n: int, seed: int, quirks: float = 0.0) -> list[dict]:
    """``n`` seeded rows in the verl-ext chat schema (``messages``, ``tools``, ``enable_thinking``, extras);
    a ``quirks`` share of them gets one real-world oddity (same rows otherwise)."""
    rng, qrng = np.random.default_rng(seed), np.random.default_rng([seed, 1])
    rows = [_conversation(rng, i) for i in range(n)]
    return [_with_quirk(qrng, r) if qrng.random() < quirks else r for r in rows]


def _with_quirk(rng: np.random.Generator, row: dict) -> dict:
    """One oddity seen in real data: a pydantic-style ``"default": null`` in a tool schema, an explicit
    null tool argument, or an earlier assistant turn whose content starts with newlines."""
    msgs = [dict(m) for m in row["messages"]]
    calls = [m for m in msgs if m.get("tool_calls")]
    kind = int(rng.integers(0, 3)) if calls else 2
    if kind == 0:
        tools = json.loads(json.dumps(row["tools"]))
        prop = next(iter(tools[0]["function"]["parameters"]["properties"].values()))
        prop["default"] = None
        return {**row, "tools": tools, "quirk": "schema default null"}
    if kind == 1:
        m = calls[0]
        first = m["tool_calls"][0]
        fn = first["function"]
        m["tool_calls"] = [{**first, "function": {**fn, "arguments": {**fn["arguments"], "cursor": None}}}] + m["tool_calls"][1:]
        return {**row, "messages": msgs, "quirk": "null tool argument"}
    earlier = [m for m in msgs if m["role"] == "assistant"][:-1]
    if not earlier:
        return row
    earlier[0]["content"] = "\n\n" + earlier[0]["content"]
    return {**row, "messages": msgs, "quirk": "leading newlines"}


def _conversation(rng: np.random.Generator, i: int) -> dict:
    thinking = [True, False, None][int(rng.integers(0, 3))]
    reasoning = thinking is not False and rng.random() < 0.6
    inline_think = reasoning and rng.random() < 0.15
    use_tools = rng.random() < 0.35
    budget = float(np.clip(rng.lognormal(np.log(420), 0.75), 40, 1100)) / 1.4  # words, ~1.4 tokens each
    msgs: list[dict] = []
    if rng.random() < 0.4:
        msgs.append({"role": "system", "content": "You are a careful assistant. " + _text(rng, int(rng.integers(5, 40)))})
    tools = [TOOLS[k] for k in sorted(rng.choice(len(TOOLS), size=int(rng.integers(1, 4)), replace=False))] if use_tools else None

    def words(share: float) -> int:
        return max(2, int(budget * share * rng.uniform(0.5, 1.5)))

    def assistant(content: str, calls: list | None = None) -> dict:
        m: dict = {"role": "assistant", "content": content + ("\n" if rng.random() < 0.1 else "")}
        if reasoning:
            thought = _text(rng, words(0.25))
            if inline_think:
                m["content"] = f"<think>\n{thought}\n</think>\n\n{m['content']}"
            else:
                m["reasoning_content"] = thought
        if calls:
            m["tool_calls"] = calls
        return m

    n_turns = int(rng.integers(2, 9))  # messages after the system prompt
    while len([m for m in msgs if m["role"] != "system"]) < n_turns - 1:
        msgs.append({"role": "user", "content": _text(rng, words(0.12))})
        if tools and rng.random() < 0.7:
            calls = []
            for _ in range(int(rng.integers(1, 3))):
                name = tools[int(rng.integers(0, len(tools)))]["function"]["name"]
                calls.append({"id": f"call_{len(msgs)}_{len(calls)}", "type": "function",
                              "function": {"name": name, "arguments": _arguments(rng, name)}})
            msgs.append(assistant(_text(rng, words(0.05)) if rng.random() < 0.5 else "", calls))
            for c in calls:
                result = json.dumps({"ok": True, "result": _text(rng, words(0.05))}, ensure_ascii=False)
                msgs.append({"role": "tool", "content": result, "name": c["function"]["name"], "tool_call_id": c["id"]})
        msgs.append(assistant(_text(rng, words(0.2))))
    assistants = [m for m in msgs if m["role"] == "assistant"]
    if len(assistants) > 1 and rng.random() < 0.1:
        assistants[0]["loss"] = False  # context only
    return {"messages": msgs, "tools": tools, "enable_thinking": thinking,
            "data_source": "tools" if tools else "chat", "item_id": f"bench-{i}", "quirk": None}


def verl_compatible(row: dict) -> dict:
    """The same conversation with its nulls filled by values the Qwen3 template renders identically."""
    msgs = []
    for m in row["messages"]:
        if m.get("tool_calls"):
            calls = [{**c, "function": {**c["function"], "arguments": json.dumps(c["function"]["arguments"], ensure_ascii=False)}}
                     for c in m["tool_calls"]]
            m = {**m, "tool_calls": calls}
        msgs.append(m)
    thinking = True if row["enable_thinking"] is None else row["enable_thinking"]
    return {**row, "messages": msgs, "tools": row["tools"] or [], "enable_thinking": thinking}


def write_parquet(rows: list[dict], path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    pq.write_table(pa.Table.from_pylist(rows), tmp)
    os.replace(tmp, path)


def data_config(max_length: int = 32768):
    from omegaconf import OmegaConf

    return OmegaConf.create({"max_length": max_length, "truncation": "error", "pad_mode": "no_padding",
                             "ignore_input_ids_mismatch": True, "messages_key": "messages", "tools_key": "tools",
                             "enable_thinking_key": "enable_thinking"})


@dataclass(frozen=True)
class Build:
    seconds: float  # wall
    cpu: float  # this process's CPU seconds (steadier than wall on a shared machine)
    items: list  # dict per row, or the exception that row raised
    crashes: int


def build(cls, path: str, tokenizer, config) -> Build:
    """Construct + materialise every item; per-item exceptions are kept, not raised."""
    from tqdm import tqdm

    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):  # verl prints "dataset len: N"
        ds = cls(parquet_files=[path], tokenizer=tokenizer, config=config, processor=None, max_samples=-1)
    items: list = []
    for i in tqdm(range(len(ds)), desc=cls.__name__, unit="row", leave=False, mininterval=1.0):
        try:
            items.append(ds[i])
        except Exception as e:  # verl raises on nullable columns; keep counting
            items.append(e)
    return Build(time.perf_counter() - start, time.process_time() - cpu, items, sum(isinstance(x, Exception) for x in items))


def _template_kwargs(row: dict) -> dict:
    return {} if row["enable_thinking"] is None else {"enable_thinking": bool(row["enable_thinking"])}


def reference_ids(tokenizer, row: dict) -> list[int]:
    """Ids of the template's own full render."""
    ids = tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=True, **_template_kwargs(row))
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def expected_trained(tokenizer, row: dict) -> list[str]:
    """Text of each trained assistant turn in the template's full render: after the assistant header
    (and after the empty think block that the prompt holds when enable_thinking=false), through <|im_end|>."""
    kw = _template_kwargs(row)
    text = tokenizer.apply_chat_template(row["messages"], tools=row["tools"], tokenize=False, **kw)
    bodies = [b[len(ASSISTANT_HEADER):] for b in text.split(IM_START)[1:] if b.startswith(ASSISTANT_HEADER)]
    turns = [m for m in row["messages"] if m["role"] == "assistant"]
    if len(bodies) != len(turns):
        raise RuntimeError(f"{row['item_id']}: {len(turns)} assistant messages but {len(bodies)} assistant blocks")
    expected = []
    for m, body in zip(turns, bodies):
        body = body[: body.index(IM_END) + len(IM_END)]
        if kw.get("enable_thinking") is False and body.startswith(NO_THINK):
            body = body[len(NO_THINK):]
        if m.get("loss", True) is not False:
            expected.append(body)
    return expected


def trained_texts(tokenizer, ids, mask) -> list[str]:
    """Decoded runs of consecutive trained tokens."""
    ids, mask = np.asarray(ids), np.asarray(mask).astype(bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [tokenizer.decode(ids[a:b].tolist(), skip_special_tokens=False, clean_up_tokenization_spaces=False)
            for a, b in zip(edges[::2], edges[1::2])]


def exactness(tokenizer, refs: list, items: list) -> dict:
    """Shares of rows that are token-exact / trained-text exact (strict, and ignoring a trained '\\n' after <|im_end|>)."""
    exact_ids, exact_mask, lenient, failures = 0, 0, 0, []
    for k, ((ref_ids, expected), item) in enumerate(zip(refs, items)):
        if isinstance(item, Exception):
            failures.append((k, f"crashed: {type(item).__name__}: {item}"))
            continue
        ids = item["input_ids"].tolist()
        got = trained_texts(tokenizer, ids, item["loss_mask"])
        ok_ids, ok_mask = ids == ref_ids, got == expected
        exact_ids += ok_ids
        exact_mask += ok_mask
        lenient += [g[:-1] if g.endswith(IM_END + "\n") else g for g in got] == expected
        if not (ok_ids and ok_mask):
            failures.append((k, {"ids_equal": ok_ids, "trained": got, "expected": expected}))
    n = max(1, len(items))
    return {"ids": exact_ids / n, "trained": exact_mask / n, "lenient": lenient / n, "failures": failures}


def failure_kind(why) -> str:
    """Short diagnosis of an inexact row."""
    if isinstance(why, str):
        return "crashed"
    if not why["ids_equal"]:
        return "ids differ from the template render"
    got, expected = why["trained"], why["expected"]
    if len(got) == len(expected) and all(e.endswith(g) and not e[: len(e) - len(g)].strip() for g, e in zip(got, expected)):
        return "whitespace at a turn start untrained (token straddles the assistant header)"
    return "trained text differs"


def _describe(rows: list[dict], refs: list) -> str:
    lengths = np.array([len(ids) for ids, _ in refs])
    share = lambda f: 100.0 * sum(map(f, rows)) / max(1, len(rows))  # noqa: E731
    return (f"tokens/conversation: median {int(np.median(lengths))}, p95 {int(np.percentile(lengths, 95))}, "
            f"max {lengths.max()}; tools {share(lambda r: bool(r['tools'])):.0f}%, "
            f"reasoning {share(lambda r: any('reasoning_content' in m or '</think>' in m['content'] for m in r['messages'])):.0f}%, "
            f"system {share(lambda r: r['messages'][0]['role'] == 'system'):.0f}%, enable_thinking "
            f"true/false/null {share(lambda r: r['enable_thinking'] is True):.0f}/"
            f"{share(lambda r: r['enable_thinking'] is False):.0f}/{share(lambda r: r['enable_thinking'] is None):.0f}%")


def _crash_kinds(b: Build) -> str:
    kinds = Counter(f"{type(x).__name__}: {str(x).splitlines()[0][:60]}" for x in b.items if isinstance(x, Exception))
    return "; ".join(f"{v} x {k}" for k, v in kinds.most_common())


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.dataset_build", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  python -m bench.dataset_build --n 200 --repeat 3 --failures /tmp/fail.jsonl")
    p.add_argument("--n", type=int, default=2000, help="conversations (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--repeat", type=int, default=1, help="time each build k times, report the best")
    p.add_argument("--quirks", type=float, default=0.0,
                   help="share of rows given one real-world oddity (null in a tool schema or argument, leading newlines)")
    p.add_argument("--workdir", default=None, help="keep the Parquet files here (default: a temp folder)")
    p.add_argument("--failures", default=None, help="write verl-ext's inexact conversations to this JSONL file")
    return p


def _floor(tokenizer, rows: list[dict]) -> Build:
    """The least any exact dataset does: one template render + tokenize per row, no mask."""
    start, cpu = time.perf_counter(), time.process_time()
    items = [reference_ids(tokenizer, r) for r in rows]
    return Build(time.perf_counter() - start, time.process_time() - cpu, items, 0)


def _best(runs: list[Build]) -> Build:
    """Best time of the repeats; items and crashes of the first."""
    return Build(min(b.seconds for b in runs), min(b.cpu for b in runs), runs[0].items, runs[0].crashes)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    from verl_ext.assets import load_qwen3_tokenizer
    from verl_ext.data.datasets import ChatSFTDataset

    tok = load_qwen3_tokenizer()
    rows = make_conversations(args.n, args.seed, args.quirks)
    reference_ids(tok, rows[0])  # warm: tokenizer + compiled template
    cfg = data_config()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or tmp
        os.makedirs(folder, exist_ok=True)
        given, filled = os.path.join(folder, "conversations.parquet"), os.path.join(folder, "conversations_filled.parquet")
        write_parquet(rows, given)
        write_parquet([verl_compatible(r) for r in rows], filled)
        runs: dict[str, list[Build]] = {}
        for _ in range(max(1, args.repeat)):  # interleaved, so load drift hits all alike
            for key, fn in [("ours", lambda: build(ChatSFTDataset, given, tok, cfg)),
                            ("verl", lambda: build(MultiTurnSFTDataset, given, tok, cfg)),
                            ("ours_f", lambda: build(ChatSFTDataset, filled, tok, cfg)),
                            ("verl_f", lambda: build(MultiTurnSFTDataset, filled, tok, cfg)),
                            ("floor", lambda: _floor(tok, rows))]:
                runs.setdefault(key, []).append(fn())
    ours, verl, ours_f, verl_f, floor_b = (_best(runs[k]) for k in ("ours", "verl", "ours_f", "verl_f", "floor"))
    refs = list(zip(floor_b.items, (expected_trained(tok, r) for r in rows)))
    n = len(rows)
    print(f"dataset build: {n} conversations (seed {args.seed}, quirks {args.quirks:g}), Qwen3 tokenizer, "
          f"best of {args.repeat}, construct + all items, one process")
    print("  " + _describe(rows, refs))
    print(f"  {'':48}{'wall s':>9}{'rows/s':>9}{'CPU s':>9}  crashed rows")
    for name, b in [("verl-ext ChatSFTDataset, file as given", ours), ("verl MultiTurnSFTDataset, file as given", verl),
                    ("verl-ext ChatSFTDataset, nulls filled", ours_f), ("verl MultiTurnSFTDataset, nulls filled", verl_f)]:
        crashes = f"{b.crashes}" + (f" ({_crash_kinds(b)})" if b.crashes else "")
        print(f"  {name:48}{b.seconds:9.2f}{n / b.seconds:9.1f}{b.cpu:9.2f}  {crashes}")
    print(f"  {'floor: apply_chat_template(tokenize=True) only':48}{floor_b.seconds:9.2f}{n / floor_b.seconds:9.1f}"
          f"{floor_b.cpu:9.2f}  (no mask, no file)")
    print(f"ratio (verl / verl-ext time, nulls filled, like for like): {verl_f.seconds / ours_f.seconds:.2f}x  (target >= 5x; "
          f"CPU time {verl_f.cpu / ours_f.cpu:.2f}x; the most any one-render dataset could reach, verl / floor: "
          f"{verl_f.seconds / floor_b.seconds:.2f}x)")
    print(f"ratio (file as given; verl's crashed rows cost it ~nothing): {verl.seconds / ours.seconds:.2f}x")
    tables = [("verl-ext", exactness(tok, refs, ours.items)), ("verl as given", exactness(tok, refs, verl.items)),
              ("verl nulls filled", exactness(tok, refs, verl_f.items))]
    print(f"\nexactness over {n} conversations{'':26}" + "".join(f"{name:>20}" for name, _ in tables))
    for key, label in [("ids", "ids == full template render"), ("trained", "trained text == assistant output"),
                       ("lenient", "  same, ignoring a trained '\\n' after <|im_end|>")]:
        print(f"  {label:56}" + "".join(f"{100 * t[key]:19.1f}%" for _, t in tables))
    ours_fail = tables[0][1]["failures"]
    kinds = Counter(f"{rows[k]['quirk'] or 'no quirk'}: {failure_kind(why)}" for k, why in ours_fail)
    if ours_fail:
        print(f"verl-ext inexact rows: {len(ours_fail)}")
        for kind, count in sorted(kinds.items()):
            print(f"  {count:5d}  {kind}")
    if args.failures and ours_fail:
        _write_failures(args.failures, [rows[k] | {"why": why} for k, why in ours_fail])
        print(f"wrote {len(ours_fail)} inexact conversations to {args.failures}")
    return 0


def _write_failures(path: str, records: list[dict]) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
