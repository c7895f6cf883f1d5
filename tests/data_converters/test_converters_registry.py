import importlib
import subprocess
import sys

import pytest

from data_converters import CONVERTERS, run


@pytest.mark.parametrize("name", sorted(CONVERTERS))
def test_each_converter_has_main_and_help_with_example(name, capsys):
    module = importlib.import_module(CONVERTERS[name])
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text and f"python -m {CONVERTERS[name]}" in text


def test_run_unknown_name_lists_known():
    with pytest.raises(KeyError, match="fast_math_r1"):
        run("nope", [])


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "data_converters.textcraft_traj", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "textcraft_train.json" in proc.stdout
