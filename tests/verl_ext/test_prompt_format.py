"""The plain prompt/response format (base models, no chat template): exact ids and mask, BOS rule,
prompt template rendering, option checks, cache fingerprint."""
import copy

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from verl_ext.data.datasets import ChatSFTDataset, PromptResponseDataset
from verl_ext.data.prompt_format import MATH_PLAIN_TEMPLATE, PlainEncoder, format_prompt, prompt_ids
from verl_ext.rows import DataError

ROWS = [
    {"problem": "What is $1+1$?", "solution": " We add: $1+1=2$. The answer is $\\boxed{2}$.", "level": 1},
    {"problem": "Compute 3*4.", "solution": "\n3*4 = 12, so \\boxed{12}.", "level": 2},
]


def bos_tokenizer():
    """A word-level tokenizer that starts every encoding with its BOS (as Llama 3 / Gemma do)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<s>", "</s>", "<pad>", "[UNK]", *"solve this math problem : answer what is 1 + 2 ?".split()]
    t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    t.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="[UNK]")


@pytest.fixture
def base_tokenizer(qwen3_tokenizer):
    """The Qwen tokenizer without a chat template (a base model's), which must never be called."""
    tok = copy.deepcopy(qwen3_tokenizer)
    tok.chat_template = None

    def no_template(*a, **k):
        raise AssertionError("the plain format must not call the chat template")

    tok.apply_chat_template = no_template
    return tok


def cfg(tmp_path, **kw):
    return OmegaConf.create({"max_length": 256, "prompt_key": "problem", "response_key": "solution",
                             "prompt_format": "plain", "cache_dir": str(tmp_path / "cache"), **kw})


def write(tmp_path, rows=ROWS):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_ids_are_prompt_then_response_then_eos_and_mask_is_response_and_eos(tmp_path, base_tokenizer):
    tok = base_tokenizer
    assert tok.bos_token_id is None  # Qwen: no BOS, so no prefix
    ds = PromptResponseDataset(write(tmp_path), tok, cfg(tmp_path, prompt_template=MATH_PLAIN_TEMPLATE))
    assert len(ds) == 2
    for i, row in enumerate(ROWS):
        prompt = f"Solve this math problem:\n\n{row['problem']}\n\nAnswer:"
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        r = tok(row["solution"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        item = ds[i]
        assert item["input_ids"].tolist() == p + r
        assert item["loss_mask"].tolist() == [0] * len(p) + [1] * len(r)
        assert item["position_ids"].tolist() == list(range(len(p) + len(r)))


def test_bos_is_kept_when_the_tokenizer_adds_one():
    tok = bos_tokenizer()
    enc = PlainEncoder(tok).encode([{"role": "user", "content": "what is 1 + 1 ?"}, {"role": "assistant", "content": "2"}])
    body = tok("what is 1 + 1 ?", add_special_tokens=False)["input_ids"]
    assert enc.input_ids.tolist() == [tok.bos_token_id, *body, tok.convert_tokens_to_ids("2"), tok.eos_token_id]
    assert enc.loss_mask.tolist() == [0] * (1 + len(body)) + [1, 1]


@pytest.mark.parametrize("make", ["qwen", "bos"])
def test_prompt_ids_are_what_the_tokenizer_gives_a_raw_completion_prompt(make, qwen3_tokenizer):
    """Inference (hf backend complete(), SGLang /v1/completions) tokenizes the raw prompt with the
    tokenizer's defaults: training's prompt ids must be the same."""
    tok = qwen3_tokenizer if make == "qwen" else bos_tokenizer()
    text = "what is 1 + 2 ?"
    assert prompt_ids(tok, text) == tok(text)["input_ids"]


def test_format_prompt_aliases_columns_and_literal_braces():
    assert format_prompt(MATH_PLAIN_TEMPLATE, "1+1?") == "Solve this math problem:\n\n1+1?\n\nAnswer:"
    assert format_prompt("{problem} | {question} | {level}", "Q", {"level": 3}) == "Q | Q | 3"
    assert format_prompt("{prompt} in \\boxed{{}}", "Q") == "Q in \\boxed{}"
    with pytest.raises(KeyError):
        format_prompt("{nope}", "Q")


def test_bad_template_names_the_row(tmp_path, base_tokenizer):
    with pytest.raises(DataError, match=r"row 0.*data.prompt_template='\{prompt\} \{missing\}'"):
        PromptResponseDataset(write(tmp_path), base_tokenizer, cfg(tmp_path, prompt_template="{prompt} {missing}"))


@pytest.mark.parametrize("extra, cls, match", [
    ({"system_prompt": "Be brief."}, PromptResponseDataset, "data.system_prompt has no place in data.prompt_format=plain"),
    ({"prompt_format": "raw"}, PromptResponseDataset, "data.prompt_format='raw'; choose one of chat, plain"),
    ({}, ChatSFTDataset, "data.prompt_format=plain trains column rows"),
])
def test_option_errors(tmp_path, base_tokenizer, extra, cls, match):
    with pytest.raises(DataError, match=match):
        cls(write(tmp_path), base_tokenizer, cfg(tmp_path, **extra))


def test_chat_format_without_a_template_names_both_ways_out(tmp_path, base_tokenizer):
    with pytest.raises(DataError, match="has no chat template") as e:
        PromptResponseDataset(write(tmp_path), base_tokenizer, cfg(tmp_path, prompt_format="chat"))
    assert "model.custom_chat_template=" in str(e.value)
    assert "data.dataset=prompt_response data.prompt_format=plain" in str(e.value)


def test_plain_and_chat_have_their_own_cache(tmp_path, qwen3_tokenizer):
    path = write(tmp_path)
    plain = PromptResponseDataset(path, qwen3_tokenizer, cfg(tmp_path))
    chat = PromptResponseDataset(path, qwen3_tokenizer, cfg(tmp_path, prompt_format="chat"))
    assert plain.cache_path != chat.cache_path
    assert plain[0]["input_ids"].tolist() != chat[0]["input_ids"].tolist()
