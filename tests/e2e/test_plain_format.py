"""A base model without a chat template: 2 SFT steps of the plain format (MATH seed prompt + solution
+ EOS) through verl-ext train, then ``verl-ext export --chat-template`` gives the folder a template."""
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.helpers import FP32, base_args, losses, train
from verl_ext.data.prompt_format import MATH_PLAIN_TEMPLATE

pytestmark = [pytest.mark.slow, pytest.mark.serial]

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def test_plain_format_trains_a_base_model_and_export_adds_a_template(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from verl_ext.launch.export import export

    base = tmp_path / "base-model"  # the tiny model as a base model ships: no chat template
    base.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.name != "chat_template.jinja":
            (base / f.name).symlink_to(f)
    assert not AutoTokenizer.from_pretrained(str(base)).chat_template
    rows = [{"problem": f"What is {i} + {i}?", "solution": f" {i} + {i} = {2 * i}. The answer is {2 * i}."}
            for i in range(8)]
    data = tmp_path / "train.parquet"
    pq.write_table(pa.Table.from_pylist(rows), data)
    log = tmp_path / "log.jsonl"
    proc = train(base_args(base, data, tmp_path / "ckpt", 2, FP32, "data.dataset=prompt_response",
                           "data.prompt_format=plain", "data.prompt_key=problem", "data.response_key=solution",
                           f"data.prompt_template='{MATH_PLAIN_TEMPLATE}'", "trainer.save_freq=2"), log)
    out = proc.stdout + proc.stderr
    assert "preflight: ok" in out
    ls = losses(log)
    assert sorted(ls) == [1, 2] and all(math.isfinite(v) and v > 0 for v in ls.values()), ls
    template = tmp_path / "chatml.jinja"
    template.write_text(TEMPLATE)
    folder = export(tmp_path / "ckpt", tmp_path / "hf", chat_template=str(template))
    reloaded = AutoTokenizer.from_pretrained(str(folder))
    assert reloaded.chat_template == TEMPLATE
    messages = [{"role": "user", "content": "What is 1 + 1?"}]
    assert reloaded.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == \
        "<|im_start|>user\nWhat is 1 + 1?<|im_end|>\n<|im_start|>assistant\n"
