"""Fast-Math-R1 SFT (``RabotniKuma/Fast-Math-R1-SFT`` and users' cleaned copies) → verl-ready Parquet.

Per row: normalise the think tags to ``<think>``/``</think>``, put exactly four newlines after
``</think>``, optionally unwrap ``\\boxed{}`` (an unclosed ``\\boxed{`` stays as written), keep the
trace's boxed answer (read as the grader reads it: several boxes listing one answer are one)
beside the source answer, drop rows over ``--max-tokens`` (problem + "\\n" + solution, target
tokenizer), and route each row to train/validation by a stable hash of its problem (re-runs and
appended data keep their split). Output has ``prompt``/``response`` and ``messages`` columns.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pyarrow as pa

from data_converters.parquet_io import ConversionError, Reject
from data_converters.pipeline import (
    Kept, Outcome, convert_files, expand_inputs, make_parser, progress_bar, run_main,
)
from data_converters.token_count import TokenCounter
from verl_ext.io import Chunk
from verl_ext_eval.math.boxes import boxed_answer, strip_boxed
from verl_ext_eval.math.extract import final_segment

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
AFTER_THINK = "\n\n\n\n"
KNOWN_SOLUTION_KEYS = ("generation", "solution")

# <think>, </think> with full-width brackets/slash, any case, spaces inside
_TAG = re.compile(r"[<＜]\s*([/／]?)\s*think\s*[>＞]", re.IGNORECASE)
_CLOSE_AND_SPACE = re.compile(re.escape(THINK_CLOSE) + r"\s*")


@dataclass(frozen=True)
class Options:
    solution_key: str | None = None  # None: the first of KNOWN_SOLUTION_KEYS present in the row
    unwrap_boxed: bool = False
    max_tokens: int | None = 24000
    messages_reasoning: str = "inline"  # "inline": <think>…</think> in content; "split": reasoning_content
    val_ratio: float = 0.0  # 0: no validation split
    seed: int = 0
    data_source: str = "fast_math_r1"


def normalize_think(text: str) -> tuple[str | None, str]:
    """(normalised text, note) or (None, reject reason). Tag variants become ``<think>``/
    ``</think>``; a missing opening tag is added when a closing one exists; the text after
    ``</think>`` starts after exactly four newlines. Rows without tags pass unchanged."""
    note = ""
    text = _TAG.sub(lambda m: THINK_CLOSE if m.group(1) else THINK_OPEN, text)
    opens, closes = text.count(THINK_OPEN), text.count(THINK_CLOSE)
    if opens == 0 and closes == 0:
        return text, "no_think_tags"
    if closes == 0:
        return None, "think_unclosed"
    if opens > 1 or closes > 1:
        return None, "think_tags_repeated"
    if opens == 0:
        text, note = f"{THINK_OPEN}\n{text.lstrip()}", "think_open_tag_added"
    if text.index(THINK_OPEN) > text.index(THINK_CLOSE):
        return None, "think_tags_out_of_order"
    if not text.lstrip().startswith(THINK_OPEN):
        return None, "text_before_think"
    text = _CLOSE_AND_SPACE.sub(THINK_CLOSE + AFTER_THINK, text.lstrip(), count=1)
    return text, note


def normalize_problem(problem: str) -> str:
    """The split key: NFKC, whitespace collapsed (so re-formatted copies keep their split)."""
    return " ".join(unicodedata.normalize("NFKC", problem).split())


def split_of(problem: str, val_ratio: float, seed: int) -> str:
    """``validation`` for a stable ``val_ratio`` share of problems, else ``train``."""
    if val_ratio <= 0:
        return "train"
    digest = hashlib.blake2b(f"{seed}\0{normalize_problem(problem)}".encode(), digest_size=8).digest()
    return "validation" if int.from_bytes(digest, "big") / 2**64 < val_ratio else "train"


def _field(record: dict, key: str, required: bool = True) -> str | Reject | None:
    value = record.get(key)
    if value is None:
        return Reject(f"missing_field:{key}", f"no {key!r}; columns: {sorted(record)[:12]}") if required else None
    if not isinstance(value, str):
        if not required and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # numeric answers are common in re-saved copies
        return Reject(f"wrong_type:{key}", f"{key} is {type(value).__name__}, expected str")
    if required and not value.strip():
        return Reject(f"empty_text:{key}", f"{key} is empty")
    return value


def convert_record(record: object, opts: Options) -> Outcome:
    """One source row → a kept row (no token check yet) or a Reject."""
    if not isinstance(record, dict):
        return Reject("not_an_object", f"got {type(record).__name__}")
    key = opts.solution_key or next((k for k in KNOWN_SOLUTION_KEYS if k in record), KNOWN_SOLUTION_KEYS[0])
    problem, solution = _field(record, "problem"), _field(record, key)
    answer_source = _field(record, "answer", required=False)
    for value in (problem, solution, answer_source):
        if isinstance(value, Reject):
            return value
    text, note = normalize_think(solution)
    if text is None:
        return Reject(note, "think tags cannot be normalised")
    notes = [note] if note else []
    segment = final_segment(text) if THINK_CLOSE in text else text
    if not segment.strip():
        return Reject("empty_text:after_think", "nothing after </think>")
    extracted = boxed_answer(segment)
    if extracted is None and segment is not text:
        extracted = boxed_answer(text)
        if extracted is not None:
            notes.append("answer_from_think")
    extracted = extracted.strip() if extracted is not None else None
    if opts.unwrap_boxed:  # an unclosed "\boxed{12" (a cut trace) stays as written
        text = strip_boxed(text)
    answer = extracted if extracted is not None else answer_source
    if extracted is None:
        notes.append("answer_from_source" if answer_source is not None else "no_answer")
    row = {
        "prompt": problem, "response": text, "messages": _messages(problem, text, opts.messages_reasoning),
        "answer": answer, "answer_extracted": extracted, "answer_source": answer_source,
        "data_source": opts.data_source,
    }
    return Kept(row, split_of(problem, opts.val_ratio, opts.seed), tuple(notes))


def _messages(problem: str, solution: str, mode: str) -> list[dict]:
    if mode == "split" and THINK_CLOSE in solution:
        think, _, final = solution.partition(THINK_CLOSE)
        assistant = {"role": "assistant", "content": final.strip("\n"),
                     "reasoning_content": think.replace(THINK_OPEN, "", 1).strip("\n")}
    else:
        assistant = {"role": "assistant", "content": solution}
    return [{"role": "user", "content": problem}, assistant]


def make_transform(opts: Options, counter: TokenCounter | None):
    """The batch transform: rows converted one by one, then token-checked in one batch."""

    def transform(chunk: Chunk) -> list[Outcome]:
        outcomes = [convert_record(r, opts) for r in chunk.records]
        if counter is None or opts.max_tokens is None:
            return outcomes
        idx = [i for i, o in enumerate(outcomes) if isinstance(o, Kept)]
        texts = [outcomes[i].row["prompt"] + "\n" + outcomes[i].row["response"] for i in idx]
        for i, n in zip(idx, counter.over_limit(texts, opts.max_tokens)):
            if n is not None:
                outcomes[i] = Reject("too_many_tokens", f"{n} tokens > --max-tokens {opts.max_tokens}")
        return outcomes

    return transform


def schema(messages_reasoning: str) -> pa.Schema:
    fields = [pa.field("role", pa.string()), pa.field("content", pa.string())]
    if messages_reasoning == "split":
        fields.append(pa.field("reasoning_content", pa.string()))
    return pa.schema([
        ("prompt", pa.string()), ("response", pa.string()), ("messages", pa.list_(pa.struct(fields))),
        ("answer", pa.string()), ("answer_extracted", pa.string()), ("answer_source", pa.string()),
        ("data_source", pa.string()),
    ])


EXAMPLE = """  python -m data_converters.fast_math_r1 fast_math_r1_sft.cleaned.json --out data/fmr1 \\
      --unwrap-boxed --max-tokens 24000 --split-validation --val-ratio 0.1 --seed 0
  → data/fmr1/{train,validation}.parquet, rejects.jsonl, summary.json"""


def build_parser():
    p = make_parser("data_converters.fast_math_r1", __doc__.split("\n\n")[0], EXAMPLE)
    p.add_argument("inputs", nargs="+", type=Path, help="JSON list / JSONL / Parquet files (or folders)")
    p.add_argument("--solution-key", default=None, help="trace column (default: 'generation' or 'solution')")
    p.add_argument("--unwrap-boxed", action="store_true", help="replace \\boxed{x} by x in the response")
    p.add_argument("--max-tokens", type=int, default=24000, help="drop rows over this many tokens (0: no limit)")
    p.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder/tokenizer.json (default Qwen3)")
    p.add_argument("--messages-reasoning", choices=["inline", "split"], default="inline",
                   help="think part inline in content, or split into reasoning_content")
    p.add_argument("--split-validation", action="store_true", help="write validation.parquet too")
    p.add_argument("--val-ratio", type=float, default=0.1, help="validation share (with --split-validation)")
    p.add_argument("--seed", type=int, default=0, help="split hash seed")
    p.add_argument("--data-source", default="fast_math_r1", help="value of the data_source column")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body():
        if args.split_validation and not 0 < args.val_ratio < 1:
            raise ConversionError(f"--val-ratio {args.val_ratio}: must be between 0 and 1")
        inputs = expand_inputs(args.inputs)
        opts = Options(args.solution_key, args.unwrap_boxed, args.max_tokens or None, args.messages_reasoning,
                       args.val_ratio if args.split_validation else 0.0, args.seed, args.data_source)
        counter = TokenCounter(args.tokenizer) if opts.max_tokens else None
        config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        with progress_bar(inputs, "fast_math_r1", args.no_progress) as bar:
            return convert_files("fast_math_r1", inputs, make_transform(opts, counter), args.out,
                                 schema(opts.messages_reasoning), ("train", "validation"), args.batch_size,
                                 bar.update, config)

    return run_main(body)


if __name__ == "__main__":
    raise SystemExit(main())
