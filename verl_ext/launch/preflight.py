"""Preflight: every problem with a training config found at once, before any model loads.

``check(args, nproc)`` composes the config exactly as the trainer will (verl's YAML + verl-ext's
keys + the overrides), applies the device fallbacks, and returns a ``Report``: ``errors`` (the run
would fail or silently do the wrong thing: each says what to change), ``notes`` (fallbacks taken),
and the ``Plan`` (``verl_ext.launch.plan``). Pure apart from reading the config, model config, data samples
and the checkpoint folder. Modelled on torchtune's ``config/_validate.py``: collect, raise once.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

from verl_ext.overrides import find_duplicates, parse_overrides
from verl_ext.rows import DataError, iter_files

CONFIG_DIR = Path(__file__).parents[1] / "training" / "config"


class PreflightError(RuntimeError):
    def __init__(self, report: "Report"):
        self.report = report
        super().__init__(report.render())


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # the run works but is likely not what you want
    notes: list[str] = field(default_factory=list)
    plan: object | None = None
    config: DictConfig | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def render(self) -> str:
        lines = [f"preflight: {len(self.errors)} problem(s)" if self.errors else "preflight: ok"]
        lines += [f"  ERROR {e}" for e in self.errors]
        lines += [f"  WARN  {w}" for w in self.warnings]
        lines += [f"  note  {n}" for n in self.notes]
        if self.plan is not None:
            lines.append(self.plan.render())
        return "\n".join(lines)


def compose(args: list[str]) -> DictConfig:
    """The config the trainer gets: ``verl_ext/training/config/sft.yaml`` (verl's + ours) with overrides."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return hydra_compose("sft", overrides=list(args))


def check(args: list[str], nproc: int | None = None, sample_rows: int = 256) -> Report:
    report = Report()
    dups = find_duplicates(parse_overrides(args))
    for key, first, second in dups:
        report.errors.append(f"{key} is given twice ({key}={first}, then {key}={second}); Hydra would silently use {second}: keep one")
    try:
        config = compose(args)
    except Exception as e:  # hydra's errors for unknown keys / bad syntax
        report.errors.append(f"config does not compose: {str(e).splitlines()[0]} (a new key needs a leading '+')")
        return report
    from verl_ext.seam.devices import apply_device_defaults
    from verl_ext.training.trainer import resolve_dataset

    device = apply_device_defaults(config)
    report.notes += device.notes
    report.warnings += device.warnings
    precision = f"{device.precision.compute} ({device.precision.why})" if device.precision else None
    try:
        resolve_dataset(config)
    except ValueError as e:
        report.errors.append(str(e))
    report.errors += _inline_chat_template(config)
    report.config = config
    nproc = nproc or int(config.trainer.n_gpus_per_node) * int(config.trainer.nnodes)
    _check_plugin(report)
    model_cfg = _check_model(config, report)
    _check_parallel(config, nproc, model_cfg, report)
    lengths, samples, val_samples = _check_data(config, report, sample_rows)
    _check_val_batches(config, nproc, val_samples, report)
    _check_resume(config, report)
    _check_time_budget(config, report)
    _check_launch(config, report)
    from verl_ext.launch.plan import count_params, make_plan

    if not report.errors or lengths:
        report.plan = make_plan(config, nproc, lengths, count_params(os.path.expanduser(str(config.model.path))),
                                samples=samples, precision=precision)
        _check_disk(config, report)
    return report


def _check_plugin(report: Report) -> None:
    try:
        from verl_ext.seam import plugin
    except Exception as e:
        report.errors.append(f"verl-ext's verl plugin failed to load ({e}); reinstall verl-ext (pip install -e .)")
        return
    from verl.plugin.platform.platform_manager import PlatformRegistry

    if plugin.CPU and PlatformRegistry.get("cpu") is None:
        report.errors.append("the CPU platform is not registered with verl; is VERL_USE_EXTERNAL_PLUGINS=none set?")


def _check_model(config: DictConfig, report: Report) -> dict | None:
    path = os.path.expanduser(str(config.model.path))
    cfg_file = Path(path) / "config.json"
    if not cfg_file.exists():
        if os.path.isdir(path) or path.startswith(("/", ".", "~")):
            report.errors.append(f"model.path={path}: no config.json there; point it at a Hugging Face model folder")
        else:
            report.notes.append(f"model.path={path} is not a local folder: it must be in the HF cache (hub id) to load")
        return None
    return json.loads(cfg_file.read_text())


def _check_parallel(config: DictConfig, nproc: int, model_cfg: dict | None, report: Report) -> None:
    sp = int(config.engine.get("ulysses_sequence_parallel_size", 1))
    gbs, micro = int(config.data.train_batch_size), int(config.data.micro_batch_size_per_gpu)
    if nproc % sp:
        report.errors.append(f"engine.ulysses_sequence_parallel_size={sp} does not divide the {nproc} processes")
        return
    dp = nproc // sp
    if gbs % dp:
        report.errors.append(
            f"data.train_batch_size={gbs} is global and is split over {dp} data-parallel ranks: not divisible "
            f"(verl would floor it to {gbs // dp * dp}); use a multiple of {dp}"
        )
    elif not config.data.use_dynamic_bsz and (gbs // dp) % micro:
        report.errors.append(
            f"per-rank batch {gbs // dp} (= data.train_batch_size {gbs} / {dp} dp ranks) is not a multiple of "
            f"data.micro_batch_size_per_gpu={micro}"
        )
    if config.data.use_dynamic_bsz and int(config.data.max_token_len_per_gpu) * sp < int(config.data.max_length):
        report.errors.append(
            f"data.max_token_len_per_gpu={config.data.max_token_len_per_gpu} x sp {sp} < data.max_length="
            f"{config.data.max_length}: a full-length row cannot fit one micro batch; raise max_token_len_per_gpu"
        )
    if sp > 1:
        if not config.model.use_remove_padding:
            report.errors.append("Ulysses sequence parallel needs model.use_remove_padding=True")
        if model_cfg:
            heads = int(model_cfg.get("num_attention_heads", 0) or 0)
            kv = int(model_cfg.get("num_key_value_heads", heads) or heads)
            if heads and heads % sp:
                report.errors.append(f"sequence parallel size {sp} does not divide num_attention_heads={heads}")
            if kv and kv % sp and sp % kv:
                report.errors.append(f"sequence parallel size {sp} and num_key_value_heads={kv}: one must divide the other")


def _check_data(config: DictConfig, report: Report,
                sample_rows: int) -> tuple[list[tuple[int, int]], int | None, int | None]:
    """Validate the data files; (tokens, trained tokens) per train sample; when the tokenized cache of
    the train files exists, their exact sample count (else ``None``: a sample of rows); the number of
    validation samples when known exactly (cached, or every row read), else ``None``."""
    name = config.data.custom_cls.get("name")
    from verl_ext.data import datasets
    from verl_ext.launch.plan import count_rows

    cls = getattr(datasets, name, None) if str(config.data.custom_cls.get("path", "")).endswith(("verl_ext.datasets", "verl_ext.data.datasets")) else None
    test_freq = config.trainer.test_freq
    if (test_freq == "after_each_epoch" or int(test_freq) > 0) and not config.data.val_files:
        report.errors.append("trainer.test_freq > 0 but data.val_files is not set: verl would crash at the first test step")
    if config.get("gen_eval", {}).get("enable") and not config.data.val_files:
        report.errors.append("gen_eval.enable=true needs data.val_files (generation eval runs at validation steps)")
    report.errors += _evaluator_problems(config)
    lengths: list[tuple[int, int]] = []
    samples = None
    groups = [("data.train_files", config.data.train_files, config.data.get("train_max_samples", -1))]
    if config.data.val_files:
        groups.append(("data.val_files", config.data.val_files, config.data.get("val_max_samples", -1)))
    tokenizer = None
    val_samples = None
    for key, paths, max_samples in groups:
        files = [os.path.abspath(os.path.expanduser(p)) for p in iter_files(paths)]
        missing = [p for p in files if not os.path.exists(p)]
        report.errors += [f"{key}: {p} does not exist" for p in missing]
        if cls is None or missing:
            continue
        if tokenizer is None:
            tokenizer = _tokenizer(config, report)
            if tokenizer is None:
                return lengths, samples, None
            try:  # the encoding options and the chat template (or the plain format's EOS), once for all files
                cls.row_encoder(tokenizer, config.data)
            except DataError as e:
                report.errors.append(str(e))
                return lengths, samples, None
        try:
            found = _from_cache(cls, files, tokenizer, config, max_samples, key, report)
            if found is None:
                sample = [x for p in files for x in cls.sample_lengths(p, tokenizer, config.data, limit=sample_rows)]
            else:
                sample = found
        except DataError as e:
            report.errors.append(f"{key}: {e}")
            continue
        if key == "data.train_files":
            lengths += sample
            samples = None if found is None else len(found)
        elif found is not None or all(count_rows(p) <= sample_rows for p in files):
            val_samples = len(sample)
            if max_samples is not None and int(max_samples) > 0:
                val_samples = min(val_samples, int(max_samples))
    if lengths:
        _check_lengths(config, report, lengths, exact=samples is not None)
    return lengths, samples, val_samples


def _check_val_batches(config: DictConfig, nproc: int, val_samples: int | None, report: Report) -> None:
    """verl validates in full batches of data.train_batch_size (each dp rank takes its share of whole
    batches, the remainder dropped): fewer validation samples than one batch log val/loss as NaN."""
    if not val_samples or not config.data.val_files:
        return
    sp = int(config.engine.get("ulysses_sequence_parallel_size", 1))
    dp = max(1, nproc // sp) if nproc % sp == 0 else 1
    per_rank = int(config.data.train_batch_size) // dp
    if per_rank <= 0:
        return
    batches = (val_samples // dp) // per_rank
    if batches == 0:
        report.warnings.append(
            f"data.val_files: {val_samples} validation samples make no full batch of data.train_batch_size="
            f"{config.data.train_batch_size} ({per_rank} per dp rank x {dp}); verl drops partial batches, so "
            f"val/loss would be NaN: give at least {per_rank * dp} validation samples or a smaller batch")
    elif batches * per_rank * dp < val_samples:
        report.notes.append(
            f"data.val_files: validation uses {batches * per_rank * dp} of {val_samples} samples "
            f"(whole batches of {per_rank * dp}; verl drops the rest)")


def _evaluator_problems(config: DictConfig) -> list[str]:
    """The generation evaluator's own checks: ``check(config)`` beside ``gen_eval.evaluator``."""
    node = config.get("gen_eval") or {}
    path = node.get("evaluator")
    if not node.get("enable") or not path:
        return []
    import importlib

    try:
        module = importlib.import_module(str(path).rsplit(".", 1)[0])
    except ImportError as e:
        return [f"gen_eval.evaluator={path}: cannot import it ({e})"]
    check_fn = getattr(module, "check", None)
    return list(check_fn(config)) if callable(check_fn) else []


def _from_cache(cls, files, tokenizer, config, max_samples, key: str, report: Report) -> list[tuple[int, int]] | None:
    """(length before truncation, trained tokens) of every sample in the existing cache, or None."""
    from verl_ext.data import cache

    folder = cache.find(cls, files, tokenizer, config.data, max_samples)
    if folder is None:
        report.notes.append(f"{key}: no tokenized cache yet; checked a sample of rows (it is built at start, "
                            "or ahead of time with verl-ext prepare)")
        return None
    meta = cache.read_meta(folder)
    store = cache.TokenStore.open(str(folder), meta["files"])
    st = meta["stats"]
    report.notes.append(
        f"{key}: tokenized cache {folder}: {st['samples']:,} samples from {st['rows']:,} rows, {st['tokens']:,} tokens "
        f"({st['trained_tokens']:,} trained), {st['truncated']:,} truncated, {st['dropped_no_target']:,} dropped"
    )
    return list(zip(store.table.column("length").to_numpy().tolist(), store.trained_counts().tolist()))


def _check_lengths(config: DictConfig, report: Report, lengths: list[tuple[int, int]], exact: bool) -> None:
    max_len = int(config.data.max_length)
    over = sum(1 for n, _ in lengths if n > max_len)
    if not over:
        return
    what = "samples" if exact else "sampled rows"
    share = f"{over}/{len(lengths)} {what} ({100 * over / len(lengths):.0f}%) exceed data.max_length={max_len}"
    if config.data.truncation == "error":
        report.errors.append(f"{share}; with data.truncation=error the run stops at them: raise max_length, filter, or truncate")
    else:
        report.notes.append(f"{share}; they will be truncated ({config.data.truncation}) or dropped if no target is left")


def _inline_chat_template(config: DictConfig) -> list[str]:
    """``model.custom_chat_template`` as text (a ``.jinja`` path read), as the trainer's ``prepare`` does."""
    from omegaconf import open_dict

    from verl_ext.chat_template import ChatTemplateError, inline_custom_chat_template

    try:
        inline_custom_chat_template(config)
    except ChatTemplateError as e:
        with open_dict(config):  # reported once; the other checks use the model's own template
            config.model.custom_chat_template = None
        return [str(e)]
    return []


def _tokenizer(config: DictConfig, report: Report):
    """The tokenizer as the trainer builds it (verl's loader + ``model.custom_chat_template``)."""
    from verl_ext.chat_template import load_tokenizer

    path = config.model.get("tokenizer_path") or config.model.path
    try:
        return load_tokenizer(config.model)
    except Exception as e:
        report.errors.append(f"cannot load the tokenizer from {path} ({type(e).__name__}); data rows cannot be checked")
        return None


def _check_launch(config: DictConfig, report: Report) -> None:
    """trainer.launcher/nnodes/rendezvous and, for Ray, the cluster's resources (``verl_ext.launch.launcher``)."""
    from verl_ext.launch.launcher import launch_problems

    report.errors += launch_problems(config, dict(os.environ))


def _check_resume(config: DictConfig, report: Report) -> None:
    mode = config.trainer.resume_mode
    if mode not in ("auto", "disable", "resume_path"):
        report.errors.append(f"trainer.resume_mode={mode!r}; choose auto, disable or resume_path")
    if mode == "resume_path":
        path = config.trainer.resume_from_path
        if not path or not os.path.isdir(os.path.expanduser(str(path))):
            report.errors.append(f"trainer.resume_mode=resume_path but trainer.resume_from_path={path!r} is not a folder")
        elif "global_step_" not in os.path.basename(str(path).rstrip("/")):
            report.errors.append(f"trainer.resume_from_path={path} should be a global_step_<N> checkpoint folder")


def _check_time_budget(config: DictConfig, report: Report) -> None:
    value = config.trainer.get("time_budget_s")
    if value is None:
        return
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:
        report.errors.append(f"trainer.time_budget_s={value!r}; give seconds > 0, or null for no limit")
    else:
        report.notes.append(f"trainer.time_budget_s={seconds:g}: training ends at the last step that fits in "
                            f"{seconds:g}s (at most the planned steps), with its checkpoint")


def _check_disk(config: DictConfig, report: Report) -> None:
    plan = report.plan
    target = Path(os.path.expanduser(str(config.trainer.default_local_dir)))
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not os.access(probe, os.W_OK):
        report.errors.append(f"trainer.default_local_dir={target}: {probe} is not writable")
        return
    need = plan.checkpoint_bytes_on_disk if plan is not None else None
    if need:
        free = shutil.disk_usage(probe).free
        if need > free:
            report.errors.append(
                f"checkpoints need about {need / 2**30:.1f} GiB in {target} but only {free / 2**30:.1f} GiB is free; "
                "set trainer.max_ckpt_to_keep or trainer.save_freq"
            )
