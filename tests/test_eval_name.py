"""A user's own ``eval/`` package in the working directory (common in ML repositories) must not
shadow ours: the ``eval/`` folder installs as ``verl_ext_eval``. Each command runs from a folder
holding a decoy ``eval/__init__.py`` that fails on import; the last test shows the decoy is live."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DECOY = "raise ImportError('decoy eval package imported from the working directory')\n"


@pytest.fixture(scope="module")
def decoy_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("user_repo")
    (d / "eval").mkdir()
    (d / "eval" / "__init__.py").write_text(DECOY)
    (d / "eval" / "math.py").write_text(DECOY)
    return d


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what an installed user has
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _verl_ext() -> str:
    script = Path(sys.executable).parent / "verl-ext"
    found = str(script) if script.exists() else shutil.which("verl-ext")
    if not found:
        pytest.skip("the verl-ext console script is not installed (pip install -e .)")
    return found


@pytest.mark.parametrize("cmd", [
    pytest.param(["verl-ext", "eval", "math", "--help"], id="verl-ext eval math"),
    pytest.param(["verl-ext", "eval", "textcraft", "--help"], id="verl-ext eval textcraft"),
    pytest.param([sys.executable, "-m", "verl_ext_eval.math", "--help"], id="python -m verl_ext_eval.math"),
    pytest.param([sys.executable, "-m", "verl_ext.launch.train", "--help"], id="python -m verl_ext.launch.train"),
])
def test_commands_ignore_a_decoy_eval(decoy_dir, cmd):
    cmd = [_verl_ext(), *cmd[1:]] if cmd[0] == "verl-ext" else cmd
    proc = _run(cmd, decoy_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "decoy" not in proc.stdout + proc.stderr
    assert "usage:" in proc.stdout


def test_trainer_process_loads_gen_eval_beside_a_decoy_eval(decoy_dir):
    """What a torchrun rank does with ``gen_eval.enable=true``: import the trainer, load the
    evaluator by its dotted path from sft.yaml, which imports the grading code."""
    code = (
        "from omegaconf import OmegaConf\n"
        "from verl_ext.training.trainer import load_evaluator\n"
        f"cfg = OmegaConf.load({str(ROOT / 'verl_ext' / 'training' / 'config' / 'sft.yaml')!r})\n"
        "attach = load_evaluator(cfg)\n"
        "import verl_ext_eval.math.grading as g, sys\n"
        "assert attach.__module__ == 'verl_ext.apps.gen_eval', attach\n"
        "assert g.grade_many and 'eval' not in sys.modules\n"
        "print('ok')\n"
    )
    proc = _run([sys.executable, "-c", code], decoy_dir)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_the_decoy_is_live(decoy_dir):
    """The control: the bare name ``eval`` from that folder is the user's package, so any import of
    ``eval`` in our code (the rule tests/test_layers.py enforces) would break there."""
    proc = _run([sys.executable, "-c", "import eval.math"], decoy_dir)
    assert proc.returncode != 0 and "decoy eval package imported" in proc.stderr
    proc = _run([sys.executable, "-m", "eval.math", "--help"], decoy_dir)
    assert proc.returncode != 0 and "decoy eval package imported" in proc.stderr
