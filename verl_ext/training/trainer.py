"""verl's FSDP SFT trainer, run with verl-ext's datasets, CPU platform, stage log and generation eval.

This is what ``verl-ext train`` runs under torchrun (``torchrun -m verl_ext.training.trainer <overrides>``).
The config is verl's ``sft_trainer_engine.yaml`` plus verl-ext's keys (``verl_ext/training/config/sft.yaml``);
the training loop is verl's own ``SFTTrainer.fit``: the subclass only times its build stages and adds
generation evaluation at the validation steps.
"""
from __future__ import annotations

import time

_T0 = time.monotonic()

import logging  # noqa: E402
import os  # noqa: E402

import hydra  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402

from verl_ext.launch.stages import StageLog  # noqa: E402

logger = logging.getLogger(__name__)

def resolve_dataset(config: DictConfig) -> None:
    """``data.dataset=<short name>`` -> ``data.custom_cls`` (unless the user set custom_cls)."""
    from verl_ext.data.datasets import DATASETS

    name = config.data.get("dataset", "chat")
    if config.data.custom_cls.get("path") or name in (None, "verl"):
        return
    if name not in DATASETS:
        raise ValueError(f"data.dataset={name!r}; choose one of {', '.join([*DATASETS, 'verl'])}")
    with open_dict(config):
        config.data.custom_cls.path = "pkg://verl_ext.datasets"  # the public path (a re-export of verl_ext.data.datasets)
        config.data.custom_cls.name = DATASETS[name].__name__


def load_evaluator(config: DictConfig):
    """The generation evaluator named by ``gen_eval.evaluator``: a dotted path (loaded with verl's
    ``load_class_from_fqn``) to ``attach(trainer)``, which wires it into the built trainer and
    returns a wrapper for verl's ``Tracking`` class, or None when disabled. The core never imports
    an evaluator; the default (``verl_ext.apps.gen_eval.attach``) lives in ``config/sft.yaml``."""
    node = config.get("gen_eval") or {}
    path = node.get("evaluator")
    if not path:
        if node.get("enable"):
            logger.warning("[verl-ext] gen_eval.enable=true but gen_eval.evaluator is unset: no generation eval")
        return None
    from verl.utils.import_utils import load_class_from_fqn

    return load_class_from_fqn(str(path), description="gen_eval.evaluator")


def _trainer_class(base=None):
    """verl-ext's trainer over ``base``: verl's torchrun ``SFTTrainer`` by default; ``verl_ext.training.trainer_ray``
    passes verl's Ray ``SFTTrainer`` (same build methods, same resume bug), so both share one subclass."""
    if base is None:
        from verl.trainer.sft_trainer import SFTTrainer as base

    class VerlExtSFTTrainer(base):
        """verl's SFTTrainer with each build stage timed (and watched)."""

        def __init__(self, config, stages: StageLog):
            self.stages = stages
            super().__init__(config)
            step = self.resume_global_step
            if step > 0 and self.steps_per_epoch and step % self.steps_per_epoch == 0:
                # verl #7401: a checkpoint from the last step of an epoch restores an exhausted loader,
                # so verl iterates nothing for the next epoch and silently skips it. Start that epoch
                # from a fresh loader, exactly as the uninterrupted run does (fit() sets its epoch).
                self._build_dataloader()
                self.ckpt_handler.train_dataloader = self.train_dataloader
                logger.warning("[verl-ext] resumed at the end of epoch %d: next epoch starts fresh (verl #7401)",
                               step // self.steps_per_epoch)

        def _build_config(self):
            with self.stages.stage("tokenizer + model config"):
                super()._build_config()
            mc = self.model_config
            if mc.custom_chat_template is not None and mc.processor is not None:
                # verl sets it on the processor only when there is one; our datasets render with the tokenizer
                mc.tokenizer.chat_template = mc.custom_chat_template

        def _build_dataset(self):
            with self.stages.stage("dataset (read, validate, tokenize)"):
                super()._build_dataset()

        def _build_engine(self):
            with self.stages.stage("engine"):
                super()._build_engine()

        def _build_dataloader(self):
            with self.stages.stage("dataloader"):
                super()._build_dataloader()

        def _init_engine(self):
            with self.stages.stage("model load + FSDP wrap + optimizer"):
                super()._init_engine()
            self._wrap_train_batch()
            self.forward_dtypes = watch_forward_dtypes(self.engine.module, self.stages.say)

        def _build_ckpt_handler(self):
            with self.stages.stage("checkpoint handler + resume"):
                super()._build_ckpt_handler()

        def _wrap_train_batch(self):
            """Time the first step; count steps (generation eval labels its files with them); end the run
            early at ``trainer.time_budget_s``."""
            client = self.training_client
            original = client.train_batch
            self.global_step_seen = 0
            budget = TimeBudget.from_config(self.config)

            def train_batch(*args, **kwargs):
                self.global_step_seen = max(self.global_step_seen, self.resume_global_step) + 1
                budget.step_started()
                if self.global_step_seen == self.resume_global_step + 1:
                    with self.stages.stage("first step"):
                        out = original(*args, **kwargs)
                else:
                    out = original(*args, **kwargs)
                if budget.step_done() and self.global_step_seen < self.total_training_steps:
                    # verl reads total_training_steps at every step: this one becomes its last
                    self.stages.say(f"[verl-ext] {budget.why()}: step {self.global_step_seen} is the last "
                                    f"(of {self.total_training_steps} planned); verl's last-step checkpoint (and validation) follow")
                    self.total_training_steps = self.global_step_seen
                return out

            client.train_batch = train_batch

        def fit(self):
            from verl_ext.seam import patches

            attach = load_evaluator(self.config)
            wrap_tracking = attach(self) if attach is not None else None
            if wrap_tracking is None:
                return super().fit()
            with patches.sft_tracking(wrap_tracking):
                return super().fit()

    return VerlExtSFTTrainer


class TimeBudget:
    """``trainer.time_budget_s``: after each step, whether another step (projected at the mean step time
    so far, the first step's warm-up left out once there are others) would end past the budget. Every
    rank of a torchrun job takes the same decision (a max all-reduce: ranks must stop at the same step);
    a Ray driver is one process and decides alone."""

    def __init__(self, budget_s: float | None, clock=time.monotonic):
        self.budget_s, self.clock = budget_s, clock
        self.t0: float | None = None
        self.step_t0 = 0.0
        self.steps: list[float] = []

    @classmethod
    def from_config(cls, config: DictConfig) -> "TimeBudget":
        value = config.trainer.get("time_budget_s")
        return cls(float(value) if value is not None else None)

    def step_started(self) -> None:
        self.step_t0 = self.clock()
        if self.t0 is None:
            self.t0 = self.step_t0

    def step_done(self) -> bool:
        """True when the run should end after this step."""
        if self.budget_s is None:
            return False
        self.steps.append(self.clock() - self.step_t0)
        return _any_rank(self.clock() - self.t0 + self.step_s() > self.budget_s)

    def step_s(self) -> float:
        recent = self.steps[1:] or self.steps
        return sum(recent) / len(recent)

    def why(self) -> str:
        mean = self.step_s()
        return (f"time budget {self.budget_s:.0f}s (trainer.time_budget_s): {self.clock() - self.t0:.0f}s trained, "
                f"a step takes ~{mean:.1f}s")


def _any_rank(flag: bool) -> bool:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    from verl.utils.device import get_device_name

    t = torch.tensor([1.0 if flag else 0.0], device=get_device_name())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def watch_forward_dtypes(module, say) -> dict:
    """Record, once, what the first training forward really computes in: the dtypes of the first
    ``nn.Linear``'s weight, input and output as FSDP's mixed precision and autocast leave them (the
    config says what was asked for; this says what ran). Filled in and said on that forward."""
    import torch

    seen: dict = {}
    name, linear = next(((n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Linear)), (None, None))
    if linear is None:
        return seen

    def hook(mod, inputs, output):
        handle.remove()
        seen.update(layer=name, weight=str(mod.weight.dtype), input=str(inputs[0].dtype), output=str(output.dtype))
        say(f"[verl-ext] forward dtypes (first step, {name}): weight {seen['weight']}, input {seen['input']}, "
            f"output {seen['output']}")

    handle = linear.register_forward_hook(hook)
    return seen


def prepare(config: DictConfig, rank: int = 0) -> StageLog:
    """What every launcher does before building the trainer: device fallbacks, dataset class, custom
    chat template (as text), file logger path, stage log (started). ``verl_ext.training.trainer_ray``
    runs the same steps in its driver."""
    from verl_ext.chat_template import inline_custom_chat_template
    from verl_ext.seam import plugin  # noqa: F401  (registers the CPU platform even if entry points are off)
    from verl_ext.seam.devices import apply_device_defaults

    stages = StageLog(watchdog_s=float(config.get("verl_ext", {}).get("stage_watchdog_s", 120)), rank=rank)
    stages.records.append(("imports", time.monotonic() - _T0))
    if rank == 0:
        logger.warning("[verl-ext] stage imports done in %.1fs", time.monotonic() - _T0)
    stages.start_watchdog()
    for line in apply_device_defaults(config).lines():
        if rank == 0:
            logger.warning("[verl-ext] %s", line)
    resolve_dataset(config)
    inline_custom_chat_template(config)  # a .jinja path -> its text: verl (and every Ray worker) takes inline Jinja
    if "file" in list(config.trainer.logger) and not os.environ.get("VERL_FILE_LOGGER_PATH"):
        # verl's default is ./<project>/<experiment>.jsonl in the working directory; keep it with the run
        os.environ["VERL_FILE_LOGGER_PATH"] = os.path.join(os.path.expanduser(str(config.trainer.default_local_dir)), "metrics.jsonl")
        os.makedirs(os.path.dirname(os.environ["VERL_FILE_LOGGER_PATH"]), exist_ok=True)
    from verl.utils.device import auto_set_device

    auto_set_device(config)
    return stages


def fit_unless_done(trainer, rank: int = 0) -> None:
    if trainer.resume_global_step >= trainer.total_training_steps:
        # verl would train one step past the end (it checks "last step" only after a step)
        if rank == 0:
            logger.warning("[verl-ext] checkpoint step %d >= total steps %d: nothing left to train",
                           trainer.resume_global_step, trainer.total_training_steps)
        return
    trainer.fit()


def run(config: DictConfig) -> None:
    import verl.utils.distributed as vdist

    rank = int(os.environ.get("RANK", 0))
    stages = prepare(config, rank)
    with stages.stage("process group"):
        vdist.initialize_global_process_group()
    try:
        fit_unless_done(_trainer_class()(config=config, stages=stages), rank)
    finally:
        stages.close()
        vdist.destroy_global_process_group()


@hydra.main(config_path="config", config_name="sft", version_base=None)
def main(config: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(config)


if __name__ == "__main__":
    main()
