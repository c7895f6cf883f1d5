#!/usr/bin/env bash
# GPU proof (issue 14): scripts/gpu_check.sh [--out DIR] [--only NAMES] [--steps N] [--list]
# Thin wrapper over scripts/gpu_check.py (the logic). It picks the python (GPU_CHECK_PYTHON, else this
# checkout's .venv, else python3) and, where GPU_CHECK_WHEELS names a folder of carried wheels, installs
# them --no-deps into GPU_CHECK_SITE (default /tmp/gpu-check-site) and puts that on PYTHONPATH first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${GPU_CHECK_PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
if [ -n "${GPU_CHECK_WHEELS:-}" ]; then
  SITE="${GPU_CHECK_SITE:-/tmp/gpu-check-site}"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$GPU_CHECK_WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$PY" "$ROOT/scripts/gpu_check.py" "$@"
