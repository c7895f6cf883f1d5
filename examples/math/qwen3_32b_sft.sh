#!/usr/bin/env bash
# Base MATH SFT of Qwen3-32B on one node of 8 GPUs: full fine-tune, FSDP2, optimizer state offloaded to CPU.
#
#   python -m data_converters.hendrycks_math MATH/ --out data/math     # -> data/math/{train,test}.parquet
#   DRY_RUN=1 bash examples/math/qwen3_32b_sft.sh                      # preflight + plan only
#   bash examples/math/qwen3_32b_sft.sh                                # train
#   bash examples/math/qwen3_32b_sft.sh optim.lr=5e-6 trainer.total_epochs=2 trainer.logger=[console,wandb]
#
# Any key can be overridden after the script name (it replaces the default below).
# Rows are the converter's problem/solution columns; the prompt template is the one
# examples/math/run_math_eval.sh evaluates with, thinking off (MATH solutions carry no trace).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

MODEL_PATH=${MODEL_PATH:-Qwen/Qwen3-32B}
TRAIN_FILES=${TRAIN_FILES:-data/math/train.parquet}
VAL_FILES=${VAL_FILES:-}            # e.g. data/math/test.parquet: validation loss every TEST_FREQ steps
TEST_FREQ=${TEST_FREQ:-50}
NPROC=${NPROC:-8}                   # GPUs on this node (= processes)
PROJECT=${PROJECT:-math-sft}
EXPERIMENT=${EXPERIMENT:-qwen3-32b-math}
CKPT_DIR=${CKPT_DIR:-checkpoints/$PROJECT/$EXPERIMENT}

ARGS=(
  model.path="$MODEL_PATH"
  data.train_files="$TRAIN_FILES"
  data.dataset=prompt_response
  data.prompt_key=problem
  data.response_key=solution
  "data.prompt_template='$MATH_PROMPT_TEMPLATE'"
  data.enable_thinking_default=false
  data.max_length=4096
  data.truncation=error
  data.train_batch_size=64
  data.use_dynamic_bsz=True
  data.max_token_len_per_gpu=16384
  model.enable_gradient_checkpointing=True
  model.use_remove_padding=True
  engine.strategy=fsdp2
  engine.optimizer_offload=True
  optim.lr=1e-5
  optim.lr_scheduler_type=cosine
  optim.lr_warmup_steps_ratio=0.05
  optim.weight_decay=0.01
  trainer.n_gpus_per_node="$NPROC"
  trainer.total_epochs=3
  trainer.save_freq=after_each_epoch
  trainer.max_ckpt_to_keep=2
  trainer.project_name="$PROJECT"
  trainer.experiment_name="$EXPERIMENT"
  trainer.default_local_dir="$CKPT_DIR"
  trainer.logger=[console]
)
if [[ -n $VAL_FILES ]]; then
  ARGS+=(data.val_files="$VAL_FILES" trainer.test_freq="$TEST_FREQ")
fi
drop_overridden "$@"

set -x
verl-ext train "${TRAIN_FLAGS[@]}" "${ARGS[@]}" "$@"
