import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from verl_ext.data.datasets import ChatSFTDataset, PromptResponseDataset
from verl_ext.rows import DataError

TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}


def cfg(**kw):
    return OmegaConf.create({"max_length": 512, "truncation": "error", "pad_mode": "no_padding", **kw})


def test_pandas_nullable_columns_and_json_tools(tmp_path, qwen3_tokenizer):
    """Heterogeneous message dicts -> struct columns padded with None; tools as JSON string in one
    row, a list in another, null in a third; enable_thinking nullable."""
    rows = [
        {"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2", "reasoning_content": "easy"}],
         "tools": json.dumps([TOOL]), "enable_thinking": True},
        {"messages": [{"role": "user", "content": "add"}, {"role": "assistant", "content": "",
                       "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": json.dumps({"a": 1})}}]},
                      {"role": "tool", "content": "1"}, {"role": "assistant", "content": "done", "loss": True}],
         "tools": None, "enable_thinking": None},
        {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
         "tools": None, "enable_thinking": False},
    ]
    df = pd.DataFrame(rows).convert_dtypes()
    path = tmp_path / "train.parquet"
    df.to_parquet(path)
    ds = ChatSFTDataset(str(path), qwen3_tokenizer, cfg())
    assert len(ds) == 3
    item = ds[1]
    assert set(item) == {"input_ids", "position_ids", "loss_mask"}
    assert item["input_ids"].shape == item["loss_mask"].shape == item["position_ids"].shape
    text = qwen3_tokenizer.decode(item["input_ids"])
    assert '"arguments": {"a": 1}' in text and "null" not in text  # no None-padding leaked into the render


def test_list_tools_column(tmp_path, qwen3_tokenizer):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.Table.from_pylist([{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}], "tools": [TOOL]}]), path)
    ds = ChatSFTDataset(str(path), qwen3_tokenizer, cfg())
    assert "<tools>" in qwen3_tokenizer.decode(ds[0]["input_ids"])


@pytest.mark.parametrize(
    "row, match",
    [
        ({"conversation": []}, "no 'messages' column"),
        ({"messages": [{"role": "user", "content": "q"}]}, "no trained assistant turn"),
        ({"messages": [{"role": "wizard", "content": "q"}, {"role": "assistant", "content": "a"}]}, "role 'wizard'"),
    ],
)
def test_bad_file_names_file_and_row(tmp_path, qwen3_tokenizer, row, match):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [good, good, row]) + "\n")
    with pytest.raises(DataError, match=match) as e:
        ChatSFTDataset(str(path), qwen3_tokenizer, cfg())
    assert f"{path}, row 2" in str(e.value)


def _long_row():
    return {"messages": [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "answer " * 30}]}


def test_truncation_policies(tmp_path, qwen3_tokenizer):
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps(_long_row()) + "\n")
    with pytest.raises(DataError, match=r"row 0: \d+ tokens > data.max_length=64"):
        ChatSFTDataset(str(path), qwen3_tokenizer, cfg(max_length=64))
    left = ChatSFTDataset(str(path), qwen3_tokenizer, cfg(max_length=64, truncation="left"))
    assert len(left[0]["input_ids"]) == 64 and left.stats["truncated"] == 1
    assert qwen3_tokenizer.decode(left[0]["input_ids"]).endswith("<|im_end|>\n")
    # right truncation keeps the prompt only: no target left, the row is skipped and counted
    path2 = tmp_path / "two.jsonl"
    path2.write_text(json.dumps(_long_row()) + "\n" + json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    right = ChatSFTDataset(str(path2), qwen3_tokenizer, cfg(max_length=64, truncation="right"))
    assert len(right) == 1 and right.stats["dropped_no_target"] == 1


def test_prompt_response_dataset_trains_response_and_eos(tmp_path, qwen3_tokenizer):
    path = tmp_path / "pr.parquet"
    pq.write_table(pa.Table.from_pylist([{"problem": "1+1?", "solution": "It is \\boxed{2}."}]), path)
    ds = PromptResponseDataset(
        str(path), qwen3_tokenizer,
        cfg(prompt_key="problem", response_key="solution", prompt_template="{prompt}\nReason step by step.", enable_thinking_default="false"),
    )
    item = ds[0]
    trained = [t for t, m in zip(item["input_ids"].tolist(), item["loss_mask"].tolist()) if m]
    assert qwen3_tokenizer.decode(trained) == "It is \\boxed{2}.<|im_end|>"
    assert "Reason step by step." in qwen3_tokenizer.decode(item["input_ids"])
    with pytest.raises(DataError, match="no 'question' column"):
        PromptResponseDataset(str(path), qwen3_tokenizer, cfg(prompt_key="question", response_key="solution"))


def test_right_padding_mode(tmp_path, qwen3_tokenizer):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    item = ChatSFTDataset(str(path), qwen3_tokenizer, cfg(max_length=32, pad_mode="right"))[0]
    assert item["input_ids"].shape == (32,) and int(item["attention_mask"].sum()) < 32
    assert int(item["loss_mask"][item["attention_mask"] == 0].sum()) == 0
