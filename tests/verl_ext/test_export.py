"""``verl-ext export``'s chat template: written as transformers saves it, reloaded identically."""
import pytest
from transformers import AutoTokenizer

from verl_ext.launch.export import main, write_chat_template

TEMPLATE = ("{% for m in messages %}<<{{ m['role'] }}>>{{ m['content'] }}<|im_end|>{% endfor %}"
            "{% if add_generation_prompt %}<<assistant>>{% endif %}")
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}]


@pytest.fixture
def hf_folder(tmp_path, tiny_model_dir):
    """An exported folder's tokenizer files (no weights needed to test the template)."""
    d = tmp_path / "hf"
    d.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json"):
        (d / name).write_bytes((tiny_model_dir / name).read_bytes())
    return d


@pytest.mark.parametrize("how", ["inline", "file"])
def test_template_is_written_and_reloads_rendering_identically(hf_folder, tmp_path, qwen3_tokenizer, how):
    value = TEMPLATE
    if how == "file":
        value = tmp_path / "custom.jinja"
        value.write_text(TEMPLATE)
    assert write_chat_template(hf_folder, str(value)) == TEMPLATE
    assert (hf_folder / "chat_template.jinja").read_text() == TEMPLATE  # what SGLang's transformers reads
    reloaded = AutoTokenizer.from_pretrained(str(hf_folder))
    expected = qwen3_tokenizer.apply_chat_template(MESSAGES, chat_template=TEMPLATE, tokenize=False, add_generation_prompt=True)
    assert reloaded.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True) == expected
    assert expected.endswith("<<user>>and 3+3?<|im_end|><<assistant>>")


def test_without_a_value_the_trained_template_stays(hf_folder, tiny_model_dir):
    assert write_chat_template(hf_folder, None) == (tiny_model_dir / "chat_template.jinja").read_text()


def test_bad_template_path_fails_before_any_merge(tmp_path, capsys):
    assert main([str(tmp_path / "no-ckpt"), "--chat-template", str(tmp_path / "missing.jinja")]) == 1
    assert "--chat-template=" in capsys.readouterr().err


@pytest.mark.parametrize("native, expect", [(False, "float32"), (True, "bfloat16")])
def test_auto_dtype_follows_the_machine(monkeypatch, native, expect):
    from verl_ext.launch.export import export_dtype
    from verl_ext.seam import precision

    monkeypatch.setenv(precision.ENV, "native" if native else "none")
    precision.cpu_bf16.cache_clear()
    try:
        assert export_dtype("auto") == expect
        assert export_dtype("bfloat16") == "bfloat16" and export_dtype("float32") == "float32"
    finally:
        precision.cpu_bf16.cache_clear()


def test_cast_folder_stores_weights_and_config_in_the_dtype(tmp_path, tiny_model_dir):
    import json
    import shutil

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from verl_ext.launch.export import cast_folder

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    before = load_file(str(d / "model.safetensors"))
    assert cast_folder(d, "bfloat16") > 0
    after = load_file(str(d / "model.safetensors"))
    assert set(after) == set(before)
    assert all(v.dtype == torch.bfloat16 for v in after.values() if v.is_floating_point())
    assert json.loads((d / "config.json").read_text())["dtype"] == "bfloat16"
    assert AutoModelForCausalLM.from_pretrained(str(d), dtype="auto").dtype == torch.bfloat16
    assert cast_folder(d, "bfloat16") == 0  # nothing left to do
    assert cast_folder(d, "float32") == len(after)
    back = load_file(str(d / "model.safetensors"))
    key = "model.layers.0.self_attn.q_proj.weight"
    assert back[key].dtype == torch.float32 and torch.equal(back[key], after[key].float())  # bf16 -> fp32 is exact
    assert AutoModelForCausalLM.from_pretrained(str(d), dtype="auto").dtype == torch.float32
