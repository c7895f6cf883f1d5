#!/usr/bin/env bash
# Qwen3-1.7B chat SFT on 2 nodes x 8 GPUs with torchrun (c10d rendezvous at node 0). Run the same
# command on each node, with its own NODE_RANK; MASTER_ADDR is node 0's hostname or IP.
#
#   node 0:  NODE_RANK=0 MASTER_ADDR=node0 bash examples/multinode/two_node_torchrun_sft.sh
#   node 1:  NODE_RANK=1 MASTER_ADDR=node0 bash examples/multinode/two_node_torchrun_sft.sh
#   Slurm:   srun --nodes=2 --ntasks-per-node=1 bash examples/multinode/two_node_torchrun_sft.sh
#            (node rank, rendezvous host and id come from SLURM_NODEID, SLURM_JOB_NODELIST, SLURM_JOB_ID)
#   DRY_RUN=1 NODE_RANK=0 MASTER_ADDR=node0 bash examples/multinode/two_node_torchrun_sft.sh   # preflight + command
#
# Data and CKPT_DIR must be on storage every node sees (checkpoints are written by every rank).
# Any key can be overridden after the script name (it replaces the default below).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

MODEL_PATH=${MODEL_PATH:-Qwen/Qwen3-1.7B}
TRAIN_FILES=${TRAIN_FILES:-data/textcraft/train.parquet}
NNODES=${NNODES:-2}
NPROC=${NPROC:-8}              # processes (GPUs) per node
MASTER_PORT=${MASTER_PORT:-29500}
CKPT_DIR=${CKPT_DIR:-checkpoints/two-node-sft}

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
  trainer.launcher=torchrun
  trainer.nnodes="$NNODES"
  trainer.n_gpus_per_node="$NPROC"
  trainer.master_port="$MASTER_PORT"
  trainer.total_epochs=2
  trainer.default_local_dir="$CKPT_DIR"
  trainer.logger=[console]
)
if [[ -n ${NODE_RANK:-} ]]; then ARGS+=(trainer.node_rank="$NODE_RANK"); fi
if [[ -n ${MASTER_ADDR:-} ]]; then ARGS+=(trainer.master_addr="$MASTER_ADDR"); fi
drop_overridden "$@"

set -x
verl-ext train "${TRAIN_FLAGS[@]}" "${ARGS[@]}" "$@"
