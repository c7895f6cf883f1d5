#!/usr/bin/env bash
# Evaluate a model on math: generate, grade (boxed answer, math-verify), accuracy by subject/level, pass@k.
# The prompt is the one examples/math/qwen3_32b_sft.sh trains with. Resumable: rerun the same command.
#
#   MODEL_PATH=checkpoints/math-sft/qwen3-32b-math/hf DATA_PATH=data/math/test.parquet \
#       bash examples/math/run_math_eval.sh
#   # Fast-Math-R1 (long traces): thinking on, long generations, sampled
#   MODEL_PATH=... ENABLE_THINKING=true MAX_NEW_TOKENS=24000 N_SAMPLES=4 TEMPERATURE=0.6 \
#       bash examples/math/run_math_eval.sh pass_k=[1,4]
#   BACKEND=hf MODEL_PATH=Qwen/Qwen3-1.7B LIMIT=20 bash examples/math/run_math_eval.sh   # bundled offline set
#
# BACKEND: sglang | server (BASE_URL of a running OpenAI-compatible server) | hf. Any key of
# `python -m verl_ext_eval.math --help` can be given after the script name (it replaces the default below).
# Results: $OUT_DIR/samples.jsonl (one line per sample), summary.json, report.md, charts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

MODEL_PATH=${MODEL_PATH:-Qwen/Qwen3-32B}
BACKEND=${BACKEND:-sglang}
BASE_URL=${BASE_URL:-}
DATA_PATH=${DATA_PATH:-}            # MATH-/GSM8K-style JSONL/Parquet; empty: the bundled offline set
LIMIT=${LIMIT:-}                    # first N problems only
N_SAMPLES=${N_SAMPLES:-1}
TEMPERATURE=${TEMPERATURE:-0}
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-4096}
ENABLE_THINKING=${ENABLE_THINKING:-false}
OUT_DIR=${OUT_DIR:-outputs/math/$(basename "$MODEL_PATH")-$BACKEND}

ARGS=(
  backend.name="$BACKEND"
  backend.model_path="$MODEL_PATH"
  "prompt.template='$MATH_PROMPT_TEMPLATE'"
  prompt.enable_thinking="$ENABLE_THINKING"
  n_samples="$N_SAMPLES"
  sampling.temperature="$TEMPERATURE"
  sampling.max_new_tokens="$MAX_NEW_TOKENS"
  concurrency=64
  out_dir="$OUT_DIR"
)
if [[ -n $DATA_PATH ]]; then
  ARGS+=(data.path="$DATA_PATH")
fi
if [[ -n $LIMIT ]]; then
  ARGS+=(limit="$LIMIT")
fi
if [[ -n $BASE_URL ]]; then
  ARGS+=(backend.base_url="$BASE_URL")
fi
drop_overridden "$@"

set -x
python -m verl_ext_eval.math "${ARGS[@]}" "$@"
