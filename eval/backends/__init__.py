"""Generation backends behind one interface (``base.Backend``), chosen by name.

``make_backend("hf", path=DIR)`` local transformers; ``make_backend("server", base_url=URL)`` or
``make_backend("server", model_path=DIR)`` (launches SGLang from its venv); ``make_backend("sglang",
model_path=DIR)`` SGLang's in-process engine (CUDA). Modules load only when their backend is made,
so ``sglang`` and ``transformers`` are imported only where used.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from verl_ext_eval.backends.base import Backend, Generation, SamplingParams

BACKENDS: dict[str, str] = {
    "hf": "verl_ext_eval.backends.hf_local:HFBackend",
    "server": "verl_ext_eval.backends.openai_server:OpenAIServerBackend",
    "sglang": "verl_ext_eval.backends.sglang_engine:SGLangEngineBackend",
}

__all__ = ["BACKENDS", "Backend", "Generation", "SamplingParams", "backend_class", "make_backend"]


class UnknownBackendError(ValueError):
    """The backend name or one of its settings is not known."""


def backend_class(name: str) -> type:
    """The class registered under ``name`` (imports its module)."""
    if name not in BACKENDS:
        raise UnknownBackendError(f"unknown backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def make_backend(name: str, **cfg: Any) -> Backend:
    """Build backend ``name`` from keyword settings; an unknown setting is an error listing the known ones."""
    cls = backend_class(name)
    params = inspect.signature(cls.__init__).parameters
    known = [p for p in params if p != "self"]
    unknown = sorted(set(cfg) - set(known))
    if unknown:
        raise UnknownBackendError(
            f"backend {name!r} has no setting(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return cls(**cfg)
