#!/usr/bin/env bash
# Qwen3-1.7B chat SFT with verl's Ray trainer (verl.trainer.sft_trainer_ray) on a running Ray cluster:
# this machine runs the driver (data, metrics); verl places NNODES x NPROC workers on the cluster.
# Every node needs verl-ext installed (pip install -e .); checkpoints need storage every node sees.
#
#   ray start --head --port=6379                 # on the head; on each other node: ray start --address=head:6379
#   RAY_ADDRESS=head:6379 bash examples/multinode/ray_sft.sh
#   RAY_ADDRESS=head:6379 DRY_RUN=1 bash examples/multinode/ray_sft.sh   # preflight (resources too) + command
#   or as a job: verl-ext submit --working-dir . -- bash examples/multinode/ray_sft.sh
#
# Any key can be overridden after the script name (it replaces the default below).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

MODEL_PATH=${MODEL_PATH:-Qwen/Qwen3-1.7B}
TRAIN_FILES=${TRAIN_FILES:-data/textcraft/train.parquet}
NNODES=${NNODES:-2}
NPROC=${NPROC:-8}              # workers (GPUs) per node
CKPT_DIR=${CKPT_DIR:-checkpoints/ray-sft}

ARGS=(
  model.path="$MODEL_PATH"
  data.train_files="$TRAIN_FILES"
  data.dataset=chat
  data.max_length=4096
  data.train_batch_size=64
  data.use_dynamic_bsz=True
  data.max_token_len_per_gpu=8192
  engine.strategy=fsdp2
  optim.lr=1e-5
  trainer.launcher=ray
  trainer.nnodes="$NNODES"
  trainer.n_gpus_per_node="$NPROC"
  trainer.total_epochs=2
  trainer.default_local_dir="$CKPT_DIR"
  trainer.logger=[console]
)
drop_overridden "$@"

set -x
verl-ext train "${TRAIN_FLAGS[@]}" "${ARGS[@]}" "$@"
