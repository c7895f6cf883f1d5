"""Smoke test of bench.dataset_build: runs end to end on 20 conversations and prints its ratio."""
import re

import numpy as np
import torch

from bench import dataset_build as bench


def test_main_prints_ratio_and_exactness(capsys):
    assert bench.main(["--n", "20", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    ratio = re.search(r"ratio \(verl / verl-ext time, nulls filled, like for like\): (\d+\.\d+)x", out)
    assert ratio and float(ratio.group(1)) > 0
    assert re.search(r"ids == full template render\s+\d+\.\d%", out)
    assert "20 conversations" in out


def test_filled_rows_render_like_the_originals(qwen3_tokenizer):
    """The like-for-like timing relies on this: filling nulls for verl changes no token."""
    rows = bench.make_conversations(40, seed=5)
    assert any(r["tools"] for r in rows) and any(r["enable_thinking"] is None for r in rows)
    for row in rows:
        filled = bench.verl_compatible(row)
        assert filled["enable_thinking"] is not None and filled["tools"] is not None
        assert bench.reference_ids(qwen3_tokenizer, filled) == bench.reference_ids(qwen3_tokenizer, row)


def test_exactness_catches_a_shifted_mask(qwen3_tokenizer):
    row = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
           "tools": None, "enable_thinking": False, "item_id": "t"}
    ids = bench.reference_ids(qwen3_tokenizer, row)
    expected = bench.expected_trained(qwen3_tokenizer, row)
    assert expected == ["4<|im_end|>"]
    text_ids = qwen3_tokenizer("4<|im_end|>", add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(ids)) if ids[i : i + len(text_ids)] == text_ids)
    mask = np.zeros(len(ids), dtype=np.int64)
    mask[start : start + len(text_ids)] = 1
    good = {"input_ids": torch.tensor(ids), "loss_mask": torch.tensor(mask)}
    shifted = {"input_ids": torch.tensor(ids), "loss_mask": torch.tensor(np.roll(mask, 1))}
    result = bench.exactness(qwen3_tokenizer, [(ids, expected)] * 3, [good, shifted, ValueError("boom")])
    assert result["ids"] == 2 / 3 and result["trained"] == 1 / 3
    assert [k for k, _ in result["failures"]] == [1, 2]
