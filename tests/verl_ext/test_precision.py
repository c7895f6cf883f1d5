"""Compute dtype per machine: fp32 on a CPU without native bf16, bf16 with it, the user's setting wins
(with a warning that carries the measured cost), and every consumer (trainer config, plan, hf eval
backend, managed SGLang server) follows the one decision."""
import math

import pytest
import torch

from tests.e2e.helpers import with_overrides
from verl_ext.seam import precision
from verl_ext.seam.precision import FP32_MIXED_PRECISION, PrecisionError, cpu_bf16, training_precision


@pytest.fixture(autouse=True)
def fresh_detection(monkeypatch):
    """Each test decides anew (the detection is cached per process); nothing leaks out of it."""
    monkeypatch.delenv(precision.ENV, raising=False)
    cpu_bf16.cache_clear()
    yield
    cpu_bf16.cache_clear()


def fake_cpu(monkeypatch, *, machine="x86_64", onednn=True, amx=False, avx512_bf16=False, isa_cap=None):
    """This process sees the CPU described (torch's probes and the oneDNN cap), not the real one."""
    monkeypatch.setattr(precision.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    if isa_cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa_cap)


@pytest.mark.parametrize("kw, native, words", [
    (dict(amx=True, avx512_bf16=True), True, "AMX + AVX512-BF16"),
    (dict(avx512_bf16=True), True, "AVX512-BF16"),
    (dict(), False, "no AMX or AVX512-BF16"),  # AVX2-only EPYC; also AVX512 without BF16 (Skylake)
    (dict(onednn=False, amx=True, avx512_bf16=True, isa_cap="AVX2"), False, "capped at ONEDNN_MAX_CPU_ISA=AVX2"),
    (dict(machine="aarch64", onednn=True), True, "oneDNN bf16 on aarch64"),
    (dict(machine="aarch64", onednn=False), False, "no native bf16 on aarch64"),
])
def test_detection_per_cpu_kind(monkeypatch, kw, native, words):
    fake_cpu(monkeypatch, **kw)
    got = cpu_bf16()
    assert got.native is native and words in got.why


@pytest.mark.parametrize("value, native", [("none", False), ("0", False), ("native", True), ("1", True)])
def test_env_override_beats_the_flags(monkeypatch, value, native):
    fake_cpu(monkeypatch, amx=not native, avx512_bf16=not native)
    monkeypatch.setenv(precision.ENV, value)
    assert cpu_bf16().native is native and precision.ENV in cpu_bf16().why


def test_env_override_typo_is_an_error(monkeypatch):
    monkeypatch.setenv(precision.ENV, "sometimes")
    with pytest.raises(PrecisionError, match="use native, none or auto"):
        cpu_bf16()


def test_cpu_without_native_bf16_trains_in_fp32(monkeypatch):
    fake_cpu(monkeypatch)
    p = training_precision(None, "fp32", on_cpu=True)
    assert p.compute == "fp32" and p.mixed_precision == FP32_MIXED_PRECISION and p.warning is None
    assert "no native bf16" in p.note and "param_dtype=bf16 forces bf16" in p.note


def test_cpu_with_native_bf16_keeps_verls_bf16(monkeypatch):
    fake_cpu(monkeypatch, amx=True)
    p = training_precision(None, "fp32", on_cpu=True)
    assert p.compute == "bf16" and p.mixed_precision is None and p.warning is None and "natively (AMX)" in p.note


def test_bf16_request_on_a_cpu_without_it_is_kept_and_warned_with_the_cost(monkeypatch):
    fake_cpu(monkeypatch)
    monkeypatch.setattr(precision, "bf16_slowdown", lambda: 39.4)
    p = training_precision({"param_dtype": "bf16"}, "fp32", on_cpu=True)
    assert p.compute == "bf16" and p.mixed_precision is None  # the user's setting wins
    assert p.warning.startswith("engine.mixed_precision.param_dtype=bf16 on a CPU without native bf16")
    assert "measured 39x slower than fp32 here" in p.warning and "\n" not in p.warning
    # bf16 weights (engine.model_dtype) are named too
    p = training_precision(None, "bf16", on_cpu=True)
    assert p.compute == "fp32" and "engine.model_dtype=bf16" in p.warning


def test_fp32_request_and_native_bf16_request_are_silent(monkeypatch):
    fake_cpu(monkeypatch)
    assert training_precision({"param_dtype": "fp32"}, "fp32", on_cpu=True).warning is None
    cpu_bf16.cache_clear()
    fake_cpu(monkeypatch, amx=True)
    assert training_precision({"param_dtype": "bf16"}, "fp32", on_cpu=True).warning is None


def test_gpu_keeps_verls_defaults(monkeypatch):
    fake_cpu(monkeypatch)  # what the host CPU can do is irrelevant on an accelerator
    p = training_precision(None, "fp32", on_cpu=False)
    assert p.compute == "bf16" and p.mixed_precision is None and p.warning is None


def test_bf16_slowdown_is_a_measured_ratio():
    ratio = precision.bf16_slowdown.__wrapped__(n=64, budget_s=0.01)
    assert math.isfinite(ratio) and ratio > 0


def _config(model, tmp_path, *extra):
    from tests.e2e.helpers import write_rows
    from verl_ext.launch.preflight import compose

    rows = write_rows(tmp_path / "train.parquet", 8)
    return with_overrides([f"model.path={model}", f"data.train_files={rows}", "data.train_batch_size=4",
                           "trainer.n_gpus_per_node=2", f"trainer.default_local_dir={tmp_path / 'ck'}"], extra), compose


def test_device_defaults_write_fp32_into_verls_engine_config(monkeypatch, tiny_model_dir, tmp_path):
    from verl_ext.seam.devices import apply_device_defaults

    fake_cpu(monkeypatch)
    args, compose = _config(tiny_model_dir, tmp_path)
    config = compose(args)
    assert config.engine.get("mixed_precision") is None  # verl's default: bf16 compute
    report = apply_device_defaults(config)
    assert dict(config.engine.mixed_precision) == FP32_MIXED_PRECISION
    assert report.precision.compute == "fp32" and any(line.startswith("compute dtype fp32") for line in report.lines())


def test_preflight_warns_once_and_the_plan_names_the_dtype(monkeypatch, tiny_model_dir, tmp_path):
    from verl_ext.launch.preflight import check

    fake_cpu(monkeypatch)
    monkeypatch.setattr(precision, "bf16_slowdown", lambda: 39.4)
    args, _ = _config(tiny_model_dir, tmp_path)
    r = check(args)
    assert r.ok and not r.warnings
    assert "precision         fp32 (this CPU has no native bf16" in r.render()
    r = check(args + ["+engine.mixed_precision.param_dtype=bf16"])
    assert r.ok and len(r.warnings) == 1 and "39x slower" in r.warnings[0]
    assert "  WARN  engine.mixed_precision.param_dtype=bf16" in r.render()
    assert "precision         bf16 (engine.mixed_precision.param_dtype, set by you)" in r.render()


@pytest.mark.parametrize("native, expect", [(False, torch.float32), (True, torch.bfloat16)])
def test_hf_eval_backend_and_managed_server_follow_the_decision(monkeypatch, native, expect):
    from verl_ext_eval.backends.hf_local import _resolve_dtype
    from verl_ext_eval.backends.managed_server import LaunchSpec

    monkeypatch.setenv(precision.ENV, "native" if native else "none")
    assert _resolve_dtype("auto", "cpu") == expect
    cmd = LaunchSpec(model_path="/m", python="py").command(port=1)
    assert cmd[cmd.index("--dtype") + 1] == ("auto" if native else "float32")
    # a --dtype of the user's own is left alone
    cmd = LaunchSpec(model_path="/m", python="py", extra_args=("--dtype", "bfloat16")).command(port=1)
    assert cmd.count("--dtype") == 1 and cmd[cmd.index("--dtype") + 1] == "bfloat16"


def test_hf_backend_warns_on_an_explicit_bf16_without_native_support(monkeypatch, caplog):
    from verl_ext_eval.backends.hf_local import _resolve_dtype

    monkeypatch.setenv(precision.ENV, "none")
    monkeypatch.setattr(precision, "bf16_slowdown", lambda: 39.4)
    with caplog.at_level("WARNING"):
        assert _resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert "39x slower" in caplog.text and "dtype=auto picks float32" in caplog.text
