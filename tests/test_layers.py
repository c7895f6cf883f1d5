"""The one-way order of the packages, read from the source with ``ast`` (imports inside functions
and ``importlib.import_module("...")`` calls included):

    core (verl_ext)  <-  eval (verl_ext_eval)  <-  converters (data_converters)  <-  apps (verl_ext/apps)

A layer imports only itself and the layers to its left; a string holding a module path (a CLI's
table of subcommands, ``importlib.import_module("...")``) counts as an import. The applications that join everything are
listed in ``APPS``; a new module in ``verl_ext/apps/`` must be added there on purpose. Nothing
imports the folder name ``eval`` (a user's own ``eval/`` in the working directory would shadow it).
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ORDER = ("core", "eval", "converters", "apps")
# folder -> (layer, import name of that folder)
FOLDERS = {"verl_ext/apps": ("apps", "verl_ext.apps"), "verl_ext": ("core", "verl_ext"),
           "eval": ("eval", "verl_ext_eval"), "data_converters": ("converters", "data_converters")}
APPS = {"cli", "demo", "demo_budget", "gen_eval", "gen_eval_server"}  # the verl-ext command, the CPU demo (+ its sizing), generation eval during training
_DOTTED = re.compile(r"^(verl_ext|verl_ext_eval|data_converters|eval)(\.[A-Za-z_]\w*)+$")


def layer_of_module(name: str) -> str | None:
    """The layer an absolute module name belongs to; ``"eval?"`` for the shadowable bare name."""
    top = name.split(".")[0]
    if name == "verl_ext.apps" or name.startswith("verl_ext.apps."):
        return "apps"
    return {"verl_ext": "core", "verl_ext_eval": "eval", "data_converters": "converters", "eval": "eval?"}.get(top)


def module_name(rel: str) -> tuple[str, str]:
    """(layer, dotted module name) of a file given relative to the repository root."""
    for folder, (layer, import_name) in FOLDERS.items():
        if rel.startswith(folder + "/"):
            parts = [import_name, *rel[len(folder) + 1 : -len(".py")].split("/")]
            return layer, ".".join(p for p in parts if p != "__init__")
    raise ValueError(rel)


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``source``, at any depth."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                found.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _DOTTED.match(node.value):
            found.append((node.lineno, node.value))  # a module path to import later (CLI tables, import_module)
    return found


def violations(files: dict[str, str]) -> list[str]:
    """Every import that breaks the order, for ``{relative path: source}``."""
    bad = []
    for rel, source in sorted(files.items()):
        layer, module = module_name(rel)
        for line, name in imported_names(source, module, rel.endswith("__init__.py")):
            target = layer_of_module(name)
            if target == "eval?":
                bad.append(f"{rel}:{line}: imports {name!r}: the installed name is verl_ext_eval")
            elif target is not None and ORDER.index(target) > ORDER.index(layer):
                bad.append(f"{rel}:{line}: {layer} module imports {name!r} ({target})")
    return bad


def package_files() -> dict[str, str]:
    files = {}
    for folder in ("verl_ext", "eval", "data_converters"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            files[path.relative_to(ROOT).as_posix()] = path.read_text(encoding="utf-8")
    return files


def test_packages_import_one_way():
    problems = violations(package_files())
    assert not problems, "the one-way order is broken (README, Layout):\n" + "\n".join(problems)


def test_apps_are_listed():
    found = {p.stem for p in (ROOT / "verl_ext" / "apps").glob("*.py")} - {"__init__"}
    assert found == APPS, f"verl_ext/apps holds {sorted(found)}; APPS lists {sorted(APPS)}: list a new app on purpose"


@pytest.mark.parametrize("rel, source, expect", [
    ("verl_ext/training/trainer.py", "def fit():\n    from verl_ext_eval.math import grading\n", "core module imports 'verl_ext_eval.math'"),
    ("verl_ext/rows.py", "import data_converters.parquet_io\n", "core module imports 'data_converters.parquet_io'"),
    ("verl_ext/launch/launcher.py", "from verl_ext.apps import gen_eval\n", "core module imports 'verl_ext.apps'"),
    ("verl_ext/launch/plan.py", "import importlib\nimportlib.import_module('verl_ext_eval.math.run')\n", "(eval)"),
    ("eval/textcraft/data.py", "def w():\n    from data_converters.parquet_io import Reject\n", "eval module imports"),
    ("eval/textcraft/data.py", "from ..math import grading\n", None),  # relative, same layer
    ("eval/math/run.py", "from eval.math import grading\n", "the installed name is verl_ext_eval"),
    ("verl_ext/apps/cli.py", "EVALS = {'math': 'eval.math.run'}\n", "the installed name is verl_ext_eval"),
    ("data_converters/publish.py", "from verl_ext.apps.cli import main\n", "converters module imports"),
    ("data_converters/publish.py", "from verl_ext_eval.backends import make_backend\nfrom verl_ext.io import Chunk\n", None),
    ("verl_ext/apps/cli.py", "from data_converters import CONVERTERS\nimport verl_ext_eval.math\n", None),
])
def test_checker_catches_a_broken_rule(rel, source, expect):
    found = violations({rel: source})
    if expect is None:
        assert found == []
    else:
        assert len(found) == 1 and expect in found[0], found
