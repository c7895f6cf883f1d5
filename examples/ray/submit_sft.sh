#!/usr/bin/env bash
# Run an SFT on a Ray cluster: the working dir (data, configs) is uploaded, `verl-ext train` runs there
# with the same overrides, its logs stream here, and this script exits with the job's status.
# Ctrl-C stops the job. The cluster needs verl-ext installed (pip install -e . on every node).
#
#   ray start --head --dashboard-host=127.0.0.1                        # or an existing cluster
#   RAY_ADDRESS=http://127.0.0.1:8265 bash examples/ray/submit_sft.sh
#   DRY_RUN=1 bash examples/ray/submit_sft.sh                          # preflight + plan, on the cluster
#   MODEL_PATH=Qwen/Qwen3-1.7B TRAIN_FILES=data/math/train.parquet bash examples/ray/submit_sft.sh \
#       data.dataset=prompt_response data.prompt_key=problem data.response_key=solution
#
# Any key can be overridden after the script name (it replaces the default below).
# ENTRYPOINT_GPUS=8 reserves GPUs for the command, so Ray places it on a GPU node (clusters whose head
# has none) and sets CUDA_VISIBLE_DEVICES; left empty, it runs on the head node with all its GPUs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

RAY_ADDRESS=${RAY_ADDRESS:-http://127.0.0.1:8265}
WORKING_DIR=${WORKING_DIR:-.}
ENTRYPOINT_GPUS=${ENTRYPOINT_GPUS:-}
MODEL_PATH=${MODEL_PATH:-Qwen/Qwen3-1.7B}
TRAIN_FILES=${TRAIN_FILES:-data/textcraft/train.parquet}   # relative to WORKING_DIR
NPROC=${NPROC:-8}
PROJECT=${PROJECT:-ray-sft}
EXPERIMENT=${EXPERIMENT:-qwen3-1.7b}

SUBMIT=(--address "$RAY_ADDRESS" --working-dir "$WORKING_DIR")
for var in HF_HUB_OFFLINE HF_HOME HF_ENDPOINT; do   # passed on only when set here
  if [[ -n ${!var:-} ]]; then
    SUBMIT+=(--env "$var")
  fi
done
if [[ -n $ENTRYPOINT_GPUS ]]; then
  SUBMIT+=(--entrypoint-num-gpus "$ENTRYPOINT_GPUS")
fi

ARGS=(
  model.path="$MODEL_PATH"
  data.train_files="$TRAIN_FILES"
  data.dataset=chat
  data.max_length=4096
  data.train_batch_size=32
  data.use_dynamic_bsz=True
  data.max_token_len_per_gpu=8192
  engine.strategy=fsdp2
  optim.lr=1e-5
  optim.lr_scheduler_type=cosine
  optim.lr_warmup_steps_ratio=0.05
  trainer.n_gpus_per_node="$NPROC"
  trainer.total_epochs=3
  trainer.project_name="$PROJECT"
  trainer.experiment_name="$EXPERIMENT"
  trainer.logger=[console]
)
drop_overridden "$@"

set -x
verl-ext submit "${SUBMIT[@]}" -- verl-ext train "${TRAIN_FLAGS[@]}" "${ARGS[@]}" "$@"
