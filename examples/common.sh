# Sourced by the example scripts (not run on its own): the pieces they share.

# verl-ext refuses a key given twice (Hydra would silently keep the last one), so a key the caller
# passes again in "$@" must replace the script's default instead of repeating it.
# Usage: ARGS=(key=value ...); drop_overridden "$@"   -> ARGS keeps only the keys "$@" does not set.
override_key() {
  local k=${1%%=*}
  k=${k#\~}; k=${k#++}; k=${k#+}
  printf '%s' "$k"
}

drop_overridden() {
  local kept=() a u
  for a in "${ARGS[@]}"; do
    for u in "$@"; do
      if [[ $u == *=* || $u == \~* ]] && [[ $(override_key "$u") == "$(override_key "$a")" ]]; then
        continue 2
      fi
    done
    kept+=("$a")
  done
  ARGS=("${kept[@]}")
}

# DRY_RUN=1: preflight + plan + the launch command, nothing loaded or started.
TRAIN_FLAGS=()
if [[ ${DRY_RUN:-0} != 0 ]]; then
  TRAIN_FLAGS+=(--dry-run)
fi

# The math prompt, one home for training (data.prompt_template) and evaluation (prompt.template).
# str.format style: {prompt} is the problem, literal braces are doubled. Same text as verl_ext_eval.math's default.
MATH_PROMPT_TEMPLATE='{prompt}
Please reason step by step, and put your final answer within \boxed{{}}.'
