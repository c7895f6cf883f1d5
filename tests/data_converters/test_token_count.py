import random
import unicodedata

import pytest

from data_converters.token_count import TokenCounter, TokenizerLoadError

# ASCII, LaTeX, CJK, emoji, combining marks, and characters NFC changes (U+0958 expands, U+2126 shrinks)
ALPHABET = list("abc xyz 0123 \\{}^_$\n\t") + ["数学", "😀", "é", "e\u0301", "\u0958", "\u2126", "<think>", "</think>",
                                           "<|im_end|>", "    ", "ﬁ"]


@pytest.fixture(scope="module")
def counter():
    return TokenCounter()


def _texts(n, seed=0):
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 300))) for _ in range(n)]


def test_qwen3_is_byte_level(counter):
    assert counter.byte_bound


def test_tokens_never_exceed_nfc_bytes(counter):
    texts = _texts(300)
    for text, n in zip(texts, counter.count(texts)):
        assert n <= len(unicodedata.normalize("NFC", text).encode())


def test_over_limit_matches_full_count(counter):
    texts = _texts(200, seed=1)
    counts = counter.count(texts)
    for limit in (0, 5, 40, 120, 400):
        expected = [n if n > limit else None for n in counts]
        assert counter.over_limit(texts, limit) == expected


def test_missing_tokenizer_names_the_fix(tmp_path):
    with pytest.raises(TokenizerLoadError, match="tokenizer.json"):
        TokenCounter(tmp_path)
