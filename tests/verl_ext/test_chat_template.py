"""``model.custom_chat_template``: inline or a .jinja file, resolved in one place, used by the datasets
(and so the cache fingerprint), preflight's tokenizer and the trainer's config."""
import json

import pytest
from omegaconf import OmegaConf

from verl_ext.chat_template import (ChatTemplateError, inline_custom_chat_template, load_tokenizer,
                                    resolve_chat_template)
from verl_ext.data.datasets import ChatSFTDataset

# a template no model ships: its markers prove it is the one rendered
TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}### User:\n{{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}### Assistant:\n{{ m['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}### Assistant:\n{% endif %}"
)


@pytest.fixture
def jinja_file(tmp_path):
    path = tmp_path / "custom.jinja"
    path.write_text(TEMPLATE, encoding="utf-8")
    return path


def test_resolve_inline_file_none_and_errors(jinja_file, tmp_path):
    assert resolve_chat_template(None) is None
    assert resolve_chat_template(TEMPLATE) == TEMPLATE
    assert resolve_chat_template(str(jinja_file)) == TEMPLATE
    with pytest.raises(ChatTemplateError, match=r"model.custom_chat_template='/nope/r1.jinja': no such file"):
        resolve_chat_template("/nope/r1.jinja")
    with pytest.raises(ChatTemplateError, match="empty; set it to null"):
        resolve_chat_template("  ")
    (tmp_path / "empty.jinja").write_text("\n")
    with pytest.raises(ChatTemplateError, match="the file is empty"):
        resolve_chat_template(str(tmp_path / "empty.jinja"))


def test_config_gets_the_text_for_verl(jinja_file):
    """verl's HFModelConfig sets model.custom_chat_template on the tokenizer as is: a path must become text."""
    config = OmegaConf.create({"model": {"path": "m", "custom_chat_template": str(jinja_file)}})
    inline_custom_chat_template(config)
    assert config.model.custom_chat_template == TEMPLATE
    dollar = jinja_file.with_name("dollar.jinja")  # "${" in a template is text, not an OmegaConf interpolation
    dollar.write_text("{{ '${price}' }}" + TEMPLATE)
    config = OmegaConf.create({"model": {"path": "m", "custom_chat_template": str(dollar)}})
    inline_custom_chat_template(config)
    assert config.model.custom_chat_template == dollar.read_text()
    assert OmegaConf.to_container(config, resolve=True)["model"]["custom_chat_template"] == dollar.read_text()
    unset = OmegaConf.create({"model": {"path": "m", "custom_chat_template": None}})
    inline_custom_chat_template(unset)
    assert unset.model.custom_chat_template is None


@pytest.mark.parametrize("how", ["inline", "file"])
def test_load_tokenizer_applies_it(tiny_model_dir, jinja_file, how):
    value = TEMPLATE if how == "inline" else str(jinja_file)
    tok = load_tokenizer(OmegaConf.create({"path": str(tiny_model_dir), "custom_chat_template": value}))
    assert tok.chat_template == TEMPLATE
    assert load_tokenizer(OmegaConf.create({"path": str(tiny_model_dir)})).chat_template != TEMPLATE


def test_dataset_renders_it_and_the_cache_fingerprint_follows_it(tmp_path, tiny_model_dir, jinja_file):
    rows = [{"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"answer {i}"}]}
            for i in range(3)]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = OmegaConf.create({"max_length": 128, "cache_dir": str(tmp_path / "cache")})

    def dataset(value):
        return ChatSFTDataset(str(path), load_tokenizer(OmegaConf.create(
            {"path": str(tiny_model_dir), "custom_chat_template": value})), data)

    own, inline, from_file = dataset(None), dataset(TEMPLATE), dataset(str(jinja_file))
    tok = inline.tokenizer
    text = tok.decode(inline[0]["input_ids"])
    assert text.startswith("### User:\nq0\n### Assistant:\nanswer 0<|im_end|>")
    assert "<|im_start|>" not in text and "<|im_start|>" in tok.decode(own[0]["input_ids"])
    trained = tok.decode([t for t, m in zip(inline[0]["input_ids"].tolist(), inline[0]["loss_mask"].tolist()) if m])
    assert trained.startswith("answer 0") and "<|im_end|>" in trained and "###" not in trained
    assert inline.cache_path != own.cache_path  # the fingerprint hashes the template the rows were rendered with
    assert from_file.cache_path == inline.cache_path  # same text, whichever way it was given


def test_verl_model_config_gets_the_file_text_after_inlining(tiny_model_dir, jinja_file):
    """What the trainer does: prepare() inlines the file, then verl's HFModelConfig (built in
    SFTTrainer._build_config) sets it on the tokenizer the datasets and the checkpoints use."""
    from verl.utils.config import omega_conf_to_dataclass

    from verl_ext.launch.preflight import compose

    config = compose([f"model.path={tiny_model_dir}", f"model.custom_chat_template={jinja_file}"])
    inline_custom_chat_template(config)
    model_config = omega_conf_to_dataclass(config.model)
    assert model_config.processor is None and model_config.tokenizer.chat_template == TEMPLATE


def test_a_path_that_reached_verl_unread_is_named(tmp_path, qwen3_tokenizer, jinja_file):
    """Under verl's own entry point (no verl-ext prepare) verl would set the path itself as the template."""
    import copy

    from verl_ext.rows import DataError

    tok = copy.deepcopy(qwen3_tokenizer)
    tok.chat_template = str(jinja_file)
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}) + "\n")
    with pytest.raises(DataError, match="not Jinja: a model.custom_chat_template path reached verl unread"):
        ChatSFTDataset(str(path), tok, OmegaConf.create({"cache": "off"}))
