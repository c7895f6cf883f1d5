"""Fast exact "is this text within N tokens?" for large batches.

Counting tokens of long reasoning traces is the slow step of a conversion, so two things make it
fast: the Rust tokenizer's batched ``encode_batch_fast`` (parallel, no offsets), and a proof that
skips it: for a byte-level BPE (Qwen, Llama 3, GPT-2 style) every token covers at least one byte of
the NFC-normalised UTF-8 text, so a text of at most N bytes has at most N tokens. Only texts longer
than the limit in bytes are tokenized. Counts are without special tokens (Qwen adds none).
"""
from __future__ import annotations

import json
import logging
import unicodedata
from pathlib import Path
from typing import Sequence

from data_converters.parquet_io import ConversionError

logger = logging.getLogger(__name__)


class TokenizerLoadError(ConversionError):
    """The tokenizer folder/file could not be loaded."""


def default_tokenizer_dir() -> Path:
    """The Qwen3 tokenizer shipped offline (``verl_ext.assets``)."""
    from verl_ext.assets import qwen3_tokenizer_dir

    return qwen3_tokenizer_dir()


def _byte_bound_holds(spec: dict) -> bool:
    """True when tokens <= NFC UTF-8 bytes is guaranteed: BPE over a ByteLevel pre-tokenizer,
    with no normalizer or NFC only (other normalizers may lengthen text)."""
    model = (spec.get("model") or {}).get("type")
    pre = spec.get("pre_tokenizer") or {}
    pres = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    norm = spec.get("normalizer")
    return (model == "BPE" and any(p.get("type") == "ByteLevel" for p in pres)
            and (norm is None or norm.get("type") == "NFC"))


class TokenCounter:
    """Counts tokens of texts with a ``tokenizers`` tokenizer (``tokenizer.json``)."""

    def __init__(self, path: Path | str | None = None) -> None:
        from tokenizers import Tokenizer

        folder = Path(path) if path is not None else default_tokenizer_dir()
        file = folder / "tokenizer.json" if folder.is_dir() else folder
        if not file.exists():
            raise TokenizerLoadError(f"{file} not found: pass --tokenizer a folder with tokenizer.json "
                                     "(a Hugging Face fast tokenizer) or the tokenizer.json file itself")
        self.path = file
        self._tok = Tokenizer.from_file(str(file))
        self.byte_bound = _byte_bound_holds(json.loads(self._tok.to_str()))
        if not self.byte_bound:
            logger.info("%s is not a byte-level BPE: every text is tokenized", file)

    def count(self, texts: Sequence[str]) -> list[int]:
        """Exact token counts (no special tokens added), batched and parallel."""
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return [len(e.ids) for e in encode(list(texts), add_special_tokens=False)]

    def over_limit(self, texts: Sequence[str], limit: int) -> list[int | None]:
        """For each text its token count when it exceeds ``limit``, else None. Texts that provably
        fit (bytes <= limit) are not tokenized."""
        result: list[int | None] = [None] * len(texts)
        todo = [i for i, t in enumerate(texts) if not (self.byte_bound and _nfc_bytes_at_most(t, limit))]
        if todo:
            for i, n in zip(todo, self.count([texts[i] for i in todo])):
                if n > limit:
                    result[i] = n
        return result


def _nfc_bytes_at_most(text: str, limit: int) -> bool:
    if len(text) > limit:  # every character is at least one byte
        return False
    if text.isascii():
        return True
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    return len(text.encode("utf-8")) <= limit
