"""Converters from raw public sources to the Parquet schema verl-ext's datasets read.

``CONVERTERS`` maps each CLI name (``verl-ext convert <name> ...``) to a module with
``main(argv: list[str] | None) -> int``; ``python -m <module> --help`` shows an example.
"""
from __future__ import annotations

import importlib

CONVERTERS: dict[str, str] = {
    "fast_math_r1": "data_converters.fast_math_r1",
    "openmath": "data_converters.open_math_reasoning",
    "math": "data_converters.hendrycks_math",
    "textcraft": "data_converters.textcraft_traj",
    "publish": "data_converters.publish",
}


def run(name: str, argv: list[str] | None = None) -> int:
    """Run converter ``name``'s CLI with ``argv``; unknown names raise KeyError listing the known."""
    if name not in CONVERTERS:
        raise KeyError(f"unknown converter {name!r}; known: {', '.join(sorted(CONVERTERS))}")
    return importlib.import_module(CONVERTERS[name]).main(argv)
