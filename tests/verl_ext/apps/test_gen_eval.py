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
