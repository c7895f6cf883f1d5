#!/usr/bin/env bash
# TextCraft agent SFT of Qwen3-1.7B on 8 GPUs: multi-turn trajectories (environment turns masked),
# full fine-tune, Ulysses sequence parallel 2 (4 data-parallel groups of 2 GPUs).
#
#   python -m data_converters.textcraft_traj textcraft_train.json --out data/textcraft   # -> data/textcraft/train.parquet
#   DRY_RUN=1 bash examples/textcraft/run_textcraft_qwen3_1.7b_sft.sh                   # preflight + plan only
#   bash examples/textcraft/run_textcraft_qwen3_1.7b_sft.sh
#   NPROC=4 bash examples/textcraft/run_textcraft_qwen3_1.7b_sft.sh optim.lr=2e-5 trainer.total_epochs=5
#
# Any key can be overridden after the script name (it replaces the default below).
# Then: verl-ext export <checkpoint> --out <hf dir>; MODEL_PATH=<hf dir> bash examples/textcraft/run_textcraft_eval.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

MODEL_PATH=${MODEL_PATH:-Qwen/Qwen3-1.7B}
TRAIN_FILES=${TRAIN_FILES:-data/textcraft/train.parquet}
VAL_FILES=${VAL_FILES:-}
TEST_FREQ=${TEST_FREQ:-20}
NPROC=${NPROC:-8}
SP=${SP:-2}                          # Ulysses sequence parallel size; must divide NPROC and the 16 heads
PROJECT=${PROJECT:-textcraft-sft}
EXPERIMENT=${EXPERIMENT:-qwen3-1.7b}
CKPT_DIR=${CKPT_DIR:-checkpoints/$PROJECT/$EXPERIMENT}

ARGS=(
  model.path="$MODEL_PATH"
  data.train_files="$TRAIN_FILES"
  data.dataset=chat
  data.messages_key=messages
  data.max_length=8192
  data.truncation=error
  data.train_batch_size=32
  data.use_dynamic_bsz=True
  data.max_token_len_per_gpu=8192
  model.enable_gradient_checkpointing=True
  model.use_remove_padding=True
  engine.strategy=fsdp2
  engine.ulysses_sequence_parallel_size="$SP"
  optim.lr=1e-5
  optim.lr_scheduler_type=cosine
  optim.lr_warmup_steps_ratio=0.05
  optim.weight_decay=0.01
  trainer.n_gpus_per_node="$NPROC"
  trainer.total_epochs=3
  trainer.save_freq=after_each_epoch
  trainer.max_ckpt_to_keep=3
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
