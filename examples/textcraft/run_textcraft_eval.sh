#!/usr/bin/env bash
# Evaluate a model on TextCraft: EPISODES goals of the ADaPT list, many episodes in flight, greedy,
# AgentGym prompt format (the one the SFT trajectories use). Resumable: rerun the same command.
#
#   MODEL_PATH=checkpoints/textcraft-sft/qwen3-1.7b/hf bash examples/textcraft/run_textcraft_eval.sh
#   BACKEND=hf MODEL_PATH=Qwen/Qwen3-1.7B EPISODES=20 bash examples/textcraft/run_textcraft_eval.sh concurrency=8
#   BACKEND=expert bash examples/textcraft/run_textcraft_eval.sh       # the scripted expert: 100% by design
#
# BACKEND: sglang (GPU engine in-process) | server (BASE_URL of a running OpenAI-compatible server)
#          | hf (transformers, any device) | expert. Any key of `python -m verl_ext_eval.textcraft --help` can be
# given after the script name (it replaces the default below).
# Results: $OUT_DIR/episodes.jsonl (one line per episode), summary.json, report.md, charts.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

MODEL_PATH=${MODEL_PATH:-Qwen/Qwen3-1.7B}
BACKEND=${BACKEND:-sglang}
BASE_URL=${BASE_URL:-}
EPISODES=${EPISODES:-100}
OUT_DIR=${OUT_DIR:-outputs/textcraft/$(basename "$MODEL_PATH")-$BACKEND}

ARGS=(
  backend.name="$BACKEND"
  backend.model_path="$MODEL_PATH"
  goal_list=adapt
  episodes="$EPISODES"
  format=agentgym
  max_rounds=30
  sampling.max_new_tokens=150
  sampling.temperature=0
  concurrency=32
  out_dir="$OUT_DIR"
)
if [[ -n $BASE_URL ]]; then
  ARGS+=(backend.base_url="$BASE_URL")
fi
drop_overridden "$@"

set -x
python -m verl_ext_eval.textcraft "${ARGS[@]}" "$@"
