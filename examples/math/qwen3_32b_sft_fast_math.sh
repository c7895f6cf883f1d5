#!/usr/bin/env bash
# Fast-Math-R1 long-trace SFT of Qwen3-32B on 8 GPUs: LoRA rank 64 / alpha 128, 24k-token rows,
# remove-padding + fused kernels (no full-vocab logits), FSDP forward prefetch, batches packed by tokens.
#
#   python -m data_converters.fast_math_r1 fast_math_r1_sft.json --out data/fmr1 \
#       --max-tokens 24000 --split-validation --val-ratio 0.05      # -> data/fmr1/{train,validation}.parquet
#   DRY_RUN=1 bash examples/math/qwen3_32b_sft_fast_math.sh         # preflight + plan only
#   bash examples/math/qwen3_32b_sft_fast_math.sh
#   VAL_FILES=data/fmr1/validation.parquet bash examples/math/qwen3_32b_sft_fast_math.sh optim.lr=5e-5
#
# Any key can be overridden after the script name (it replaces the default below).
# Rows are the converter's `messages` (the trace inline as <think>...</think>), so the chat
# dataset renders them exactly as Qwen3's template does. Evaluate with thinking on:
#   ENABLE_THINKING=true MAX_NEW_TOKENS=24000 bash examples/math/run_math_eval.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../common.sh"

MODEL_PATH=${MODEL_PATH:-Qwen/Qwen3-32B}
TRAIN_FILES=${TRAIN_FILES:-data/fmr1/train.parquet}
VAL_FILES=${VAL_FILES:-}            # e.g. data/fmr1/validation.parquet
TEST_FREQ=${TEST_FREQ:-50}
NPROC=${NPROC:-8}
SP=${SP:-1}                         # Ulysses sequence parallel size (2 halves each rank's tokens)
MAX_LENGTH=${MAX_LENGTH:-24000}
PROJECT=${PROJECT:-math-sft}
EXPERIMENT=${EXPERIMENT:-qwen3-32b-fast-math-r1-lora64}
CKPT_DIR=${CKPT_DIR:-checkpoints/$PROJECT/$EXPERIMENT}

ARGS=(
  model.path="$MODEL_PATH"
  data.train_files="$TRAIN_FILES"
  data.dataset=chat
  data.messages_key=messages
  data.max_length="$MAX_LENGTH"
  data.truncation=error
  data.train_batch_size=32
  data.use_dynamic_bsz=True
  data.max_token_len_per_gpu="$MAX_LENGTH"     # one full-length row fits a micro batch
  model.lora_rank=64
  model.lora_alpha=128
  model.target_modules=all-linear
  model.enable_gradient_checkpointing=True
  model.use_remove_padding=True
  model.use_fused_kernels=True
  engine.strategy=fsdp2
  engine.forward_prefetch=True
  engine.ulysses_sequence_parallel_size="$SP"
  optim.lr=1e-4
  optim.lr_scheduler_type=cosine
  optim.lr_warmup_steps_ratio=0.05
  optim.weight_decay=0.0
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
