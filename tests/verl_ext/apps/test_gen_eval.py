from types import SimpleNamespace

from omegaconf import OmegaConf

from verl_ext.apps.gen_eval import GenEvalConfig, _grade, tracking_class


class _Base:
    def __init__(self):
        self.logged = []

    def log(self, data, step):
        self.logged.append((step, data))


def test_config_defaults_and_data_template():
    cfg = OmegaConf.create({"gen_eval": {"enable": True, "num_samples": None}, "data": {"prompt_template": "Q: {prompt}"}})
    g = GenEvalConfig.from_config(cfg)
    assert g.enable and g.num_samples == 16 and g.prompt_template == "Q: {prompt}"


def test_grading_counts_right_answers(tmp_path):
    problems = [SimpleNamespace(id=str(i), answer=str(i * 2)) for i in range(4)]
    outputs = [("so \\boxed{0}", 3), ("it is \\boxed{2}", 4), ("\\boxed{5}", 2), ("no idea", 2)]
    trainer = SimpleNamespace(global_step_seen=3, config=OmegaConf.create({"trainer": {"default_local_dir": str(tmp_path)}}))
    m = _grade(trainer, GenEvalConfig(enable=True), ["p"] * 4, problems, outputs)
    assert m["val-gen/math/accuracy"] == 0.5
    assert m["val-gen/math/format_rate"] == 0.75
    assert m["val-gen/math/response_length"] == 11 / 4
    assert (tmp_path / "gen_eval" / "step_3.jsonl").read_text().count("\n") == 4


def test_tracking_merges_pending_metrics_into_val_log_once():
    trainer = SimpleNamespace(_gen_eval_pending={"val-gen/math/accuracy": 0.25}, _gen_eval_samples=None)
    t = tracking_class(trainer, _Base)()
    t.log({"train/loss": 1.0}, 1)
    t.log({"val/loss": 2.0}, 2)
    t.log({"val/loss": 1.5}, 4)
    assert t.logged == [(1, {"train/loss": 1.0}), (2, {"val/loss": 2.0, "val-gen/math/accuracy": 0.25}), (4, {"val/loss": 1.5})]


class _EchoModule:
    """Records the input ids generate() gets; "generates" one token (the tokenizer's eos)."""

    def __init__(self, eos):
        self.eos, self.inputs = eos, []

    def generate(self, input_ids, attention_mask, **kw):
        import torch

        self.inputs += [row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask)]
        return torch.cat([input_ids, torch.full((len(input_ids), 1), self.eos)], dim=1)


def test_plain_format_prompts_are_training_prompts(qwen3_tokenizer):
    """data.prompt_format=plain: raw prompts (no chat template), fed as the plain format's prompt ids."""
    from verl_ext.apps.gen_eval import build_prompts, check, generate_shard
    from verl_ext.data.prompt_format import MATH_PLAIN_TEMPLATE, prompt_ids

    data = {"prompt_format": "plain", "prompt_template": MATH_PLAIN_TEMPLATE}
    g = GenEvalConfig.from_config(OmegaConf.create({"gen_eval": {"enable": True, "num_samples": 3}, "data": data}))
    assert g.prompt_format == "plain"
    assert GenEvalConfig.from_config(OmegaConf.create({"gen_eval": {}, "data": {}})).prompt_format == "chat"
    prompts, problems = build_prompts(g, qwen3_tokenizer)
    assert prompts == [f"Solve this math problem:\n\n{p.problem}\n\nAnswer:" for p in problems]
    module = _EchoModule(qwen3_tokenizer.eos_token_id)
    generate_shard(module, qwen3_tokenizer, prompts, g, "cpu")
    assert module.inputs == [prompt_ids(qwen3_tokenizer, p) for p in prompts]
    chat = GenEvalConfig.from_config(OmegaConf.create({"gen_eval": {"enable": True, "num_samples": 2}, "data": {}}))
    chat_prompts, _ = build_prompts(chat, qwen3_tokenizer)
    assert chat_prompts[0].startswith("<|im_start|>user\n")
    module = _EchoModule(qwen3_tokenizer.eos_token_id)
    generate_shard(module, qwen3_tokenizer, chat_prompts, chat, "cpu")
    assert module.inputs == [qwen3_tokenizer(p, add_special_tokens=False)["input_ids"] for p in chat_prompts]
    problems = check(OmegaConf.create({"gen_eval": {"enable": True, "backend": "server", "tasks": ["math", "textcraft"],
                                                    "base_url": "http://x"}, "data": data}))
    assert any("data.prompt_format=plain trains no chat template" in p for p in problems)
