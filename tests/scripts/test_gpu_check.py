"""scripts/gpu_check.py: which checks run where and how they are reported (fast), and a real reduced
CPU run of scripts/gpu_check.sh (slow)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


gc = _load()
CPU = gc.Machine(cuda=False, cuda_why="no CUDA device (torch is a CPU build)", flash_attn=False,
                 flash_attn_why="flash_attn not installed", liger=True, liger_why="ok")
H200 = gc.Machine(cuda=True, cuda_why="NVIDIA H200", flash_attn=False, flash_attn_why="flash_attn not installed",
                  liger=False, liger_why="liger_kernel not installed")
FULL = gc.Machine(cuda=True, cuda_why="NVIDIA H200", flash_attn=True, flash_attn_why="ok", liger=True, liger_why="ok")
GPU_ONLY = {"fsdp1_sdpa", "fsdp1_flash_attn", "fsdp2_flash_attn", "liger"}


def names(checks):
    return [c.name for c in checks]


def test_every_machine_lists_the_same_checks():
    assert names(gc.checks_for(CPU)) == names(gc.checks_for(FULL)) == gc.CHECK_NAMES
    assert len(gc.CHECK_NAMES) == 9


def test_cpu_runs_the_portable_checks_and_says_why_not_the_others():
    todo, preset = gc.plan(CPU, None)
    assert names(todo) == ["fsdp2_sdpa", "remove_padding", "gen_eval", "lora_export", "textcraft_hf"]
    assert set(preset) == GPU_ONLY
    for name in GPU_ONLY:
        assert preset[name]["status"] == gc.NOT_POSSIBLE
        assert preset[name]["detail"].startswith("not possible here: no CUDA device")
    assert "flash_attn not installed" in preset["fsdp2_flash_attn"]["detail"]  # every reason, not just the first
    assert "fsdp2" in preset["fsdp1_sdpa"]["detail"]
    by = {c.name: c for c in gc.checks_for(CPU)}
    assert by["remove_padding"].reference == "fsdp2_sdpa" and by["fsdp2_sdpa"].reference is None


def test_gpu_without_flash_or_liger_names_the_missing_package():
    todo, preset = gc.plan(H200, None)
    assert "fsdp1_sdpa" in names(todo) and "fsdp2_sdpa" in names(todo)
    assert preset["fsdp1_flash_attn"]["detail"] == "not possible here: flash_attn not installed"
    assert preset["liger"]["detail"] == "not possible here: liger_kernel not installed"
    by = {c.name: c for c in gc.checks_for(H200)}
    assert by["remove_padding"].reference == "fsdp1_sdpa"  # users' default strategy on GPU is FSDP1
    assert by["fsdp2_sdpa"].reference == "fsdp1_sdpa"
    assert gc.default_strategy(H200) == "fsdp" and gc.default_strategy(CPU) == "fsdp2"


def test_only_pulls_in_references_and_skips_the_rest():
    todo, preset = gc.plan(FULL, ["liger", "fsdp2_flash_attn"])
    assert names(todo) == ["fsdp1_sdpa", "fsdp2_sdpa", "fsdp2_flash_attn", "liger"]
    assert preset["gen_eval"]["status"] == gc.SKIPPED and "--only" in preset["gen_eval"]["detail"]
    # not possible wins over not selected: a GPU-only check always says why it cannot run here
    todo, preset = gc.plan(CPU, ["lora_export"])
    assert names(todo) == ["lora_export"]
    assert preset["liger"]["status"] == gc.NOT_POSSIBLE and preset["fsdp2_sdpa"]["status"] == gc.SKIPPED


def test_unknown_only_name_is_an_error():
    with pytest.raises(SystemExit, match="unknown check"):
        gc.parse_only("fsdp2_sdpa,fsdp3")
    assert gc.parse_only("fsdp2_sdpa, lora_export") == ["fsdp2_sdpa", "lora_export"]
    assert gc.parse_only("") is None


def test_settings_from_env_and_defaults():
    s = gc.Settings.from_env(False, None, env={})
    assert (s.steps, s.hidden, s.jobs) == (3, 64, 1)
    g = gc.Settings.from_env(True, None, env={"GPU_CHECK_HIDDEN": "1024", "GPU_CHECK_LOSS_RTOL": "0.05"})
    assert (g.steps, g.hidden, g.loss_rtol) == (10, 1024, 0.05)
    assert gc.Settings.from_env(True, 2, env={"GPU_CHECK_STEPS": "7"}).steps == 2  # --steps wins


def _runner(tmp_path, rtol=1e-2):
    s = gc.Settings.from_env(False, 3, env={"GPU_CHECK_LOSS_RTOL": str(rtol)})
    return gc.Runner(tmp_path, s, CPU, "python", {})


def test_compare_step1_loss_within_tolerance(tmp_path):
    r = _runner(tmp_path)
    check = {c.name: c for c in gc.checks_for(CPU)}["remove_padding"]
    r.results["fsdp2_sdpa"] = {"status": gc.PASSED, "losses": {1: 11.90}}
    ok = r.compare(check, {"status": gc.PASSED, "detail": "ran", "losses": {1: 11.95}})
    assert ok["status"] == gc.PASSED and ok["loss_step1_vs"]["reference"] == "fsdp2_sdpa"
    bad = r.compare(check, {"status": gc.PASSED, "detail": "ran", "losses": {1: 12.5}})
    assert bad["status"] == gc.FAILED and "differs from fsdp2_sdpa" in bad["detail"]
    r.results["fsdp2_sdpa"] = {"status": gc.FAILED, "losses": {}}
    assert r.compare(check, {"status": gc.PASSED, "detail": "ran", "losses": {1: 11.9}})["status"] == gc.FAILED


def test_judge_train(tmp_path):
    r = _runner(tmp_path)
    check = gc.checks_for(CPU)[1]
    ok = {"rc": 0, "losses": {1: 12.0, 2: 11.0, 3: 10.0}, "log": ""}
    assert r.judge_train(check, ok)[0] == gc.PASSED
    assert r.judge_train(check, {**ok, "rc": 1})[1] == "exit code 1"
    assert "expected 1..3" in r.judge_train(check, {**ok, "losses": {1: 12.0}})[1]
    assert "did not fall" in r.judge_train(check, {**ok, "losses": {1: 1.0, 2: 1.0, 3: 2.0}})[1]
    assert "non-finite" in r.judge_train(check, {**ok, "losses": {1: 12.0, 2: float("nan"), 3: 1.0}})[1]
    flash = {c.name: c for c in gc.checks_for(FULL)}["fsdp2_flash_attn"]
    fell_back = {**ok, "log": "[verl-ext] flash-attention unavailable (x): using sdpa attention"}
    assert "fell back" in r.judge_train(flash, fell_back)[1]


def test_reporting_lines_summary_and_error_tail():
    rec = gc.record(gc.checks_for(CPU)[0], gc.NOT_POSSIBLE, "not possible here: no CUDA device")
    assert gc.line_for(rec).split()[:3] == ["gpu_check", "fsdp1_sdpa", "NOT_POSSIBLE"]
    assert gc.summarize([rec, {**rec, "status": gc.PASSED}])[gc.PASSED] == 1
    log = "noise\nTraceback (most recent call last):\n  File x\nValueError: boom"
    assert gc.error_tail(log).startswith("Traceback") and gc.error_tail(log).endswith("boom")


def test_ray_stub_imports_what_verl_needs(tmp_path):
    stub = tmp_path / "ray"
    stub.mkdir()
    (stub / "__init__.py").write_text(gc.RAY_STUB)
    code = ("import ray, ray.util.placement_group as pg\n"
            "from ray.experimental.state.api import list_actors\n"
            "assert ray.STUB and ray.is_initialized() is False\n"
            "@ray.remote\nclass A: pass\n"
            "@ray.remote(num_cpus=1)\ndef f(): return 1\n"
            "assert f() == 1 and isinstance(ray.ObjectRef, type)\n"
            "class B(ray.actor.ActorHandle): pass\n"
            "try:\n    ray.get(1)\nexcept RuntimeError as e:\n    assert 'not installed' in str(e)\nelse:\n    raise SystemExit(1)\n")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.serial
def test_reduced_cpu_run_reports_every_check(tmp_path):
    """The script itself on CPU: one check runs for real (a training through verl's path with Ray stubbed
    out), the GPU-only ones say why they cannot, the rest say they were not selected. (LoRA training and
    merge run for real in tests/e2e/test_train_cpu.py.)"""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test asserts the CPU-only outcome")
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--out", str(out), "--only",
                           "fsdp2_sdpa", "--steps", "2"], capture_output=True, text=True, timeout=800,
                          env={**os.environ, "GPU_CHECK_RAY_STUB": "1"})
    result = json.loads((out / "gpu_check.json").read_text())
    by = {c["name"]: c for c in result["checks"]}
    assert list(by) == gc.CHECK_NAMES, proc.stdout[-3000:]
    for c in by.values():
        assert c["status"] in (gc.PASSED, gc.FAILED, gc.NOT_POSSIBLE, gc.SKIPPED) and c["detail"]
    assert by["fsdp2_sdpa"]["status"] == gc.PASSED, by["fsdp2_sdpa"]
    assert sorted(by["fsdp2_sdpa"]["losses"], key=int) == ["1", "2"]
    for name in GPU_ONLY:
        assert by[name]["status"] == gc.NOT_POSSIBLE
        assert by[name]["detail"].startswith("not possible here: no CUDA device")
    for name in ("remove_padding", "gen_eval", "lora_export", "textcraft_hf"):
        assert by[name]["status"] == gc.SKIPPED
    assert any("ray" in n and "stub" in n for n in result["notes"])  # verl's path ran with ray stubbed out
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [x for x in proc.stdout.splitlines() if x.startswith("gpu_check ")]
    assert len(lines) == len(gc.CHECK_NAMES)


@pytest.mark.parametrize("prefix", ["val-gen/", "val-gen/math/"])
def test_gen_eval_judge_accepts_both_metric_namings(tmp_path, prefix):
    r = _runner(tmp_path)
    (tmp_path / "ckpt" / "gen_eval").mkdir(parents=True)
    (tmp_path / "ckpt" / "gen_eval" / "step_3.jsonl").write_text("{}\n")
    recs = [{"step": 3, "data": {"val/loss": 9.0, prefix + "accuracy": 0.0, prefix + "format_rate": 0.5,
                                 prefix + "response_length": 16.0}}]
    status, detail = r._judge_gen_eval({"records": recs, "dir": tmp_path}, "ran")
    assert status == gc.PASSED and "accuracy 0" in detail and "step 3" in detail
    status, detail = r._judge_gen_eval({"records": [{"step": 3, "data": {"val/loss": 9.0}}], "dir": tmp_path}, "ran")
    assert status == gc.FAILED and "no val-gen" in detail
