"""The README's main job, reduced: verl-ext demo --small (data, eval before, SFT, export, eval after)."""
import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.serial(last=True)]


def test_demo_small(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "verl_ext.apps.cli", "demo", "--small", "--out", str(out)],
                          capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    assert "| TextCraft success |" in proc.stdout and "| math accuracy |" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    for tag in ("before", "after"):
        assert results[tag]["textcraft"]["episodes"] == 2
        assert (out / "eval" / tag / "math" / "report.md").exists()
    assert (out / "model-sft" / "config.json").exists()
    assert results["sft_steps"] == results["size"]["steps"] == 2  # trained as planned (no time budget in --small)
