#!/usr/bin/env bash
# GPU smoke check (manual; CI has no GPU): the recipes' GPU path on one CUDA device, i.e. what the CPU suite cannot
# reach: bf16 on, models and critic on cuda, evaluation with batched generate on the GPU, DeepSpeed ZeRO-3 over NCCL.
#   bash .ci/gpu_smoke.sh [log_dir]       (about 6 minutes on one H200; needs trl-ext's dependencies, no network)
# Every check runs even if an earlier one fails; the last lines summarise them and the exit status counts failures.
# Status: written 2026-11-29 for a lent GPU machine that was then not available; it has not been run on a GPU yet.
# On a machine without network, carry trl/datasets/deepspeed wheels and put them and this repo on PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${1:-/tmp/trl_ext_gpu_smoke}
WORK=/tmp/trl_ext_gpu_smoke_runs
mkdir -p "$LOGS" "$WORK"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled
export TRL_EXT_CACHE=${TRL_EXT_CACHE:-$WORK/cache}
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, torch.cuda.get_device_name())"

SUMMARY=()
FAILED=0
check() {  # check <name> <command...>: run, time, record pass/fail with the log's last line
    local name=$1; shift
    local start=$SECONDS
    if timeout "${CHECK_TIMEOUT:-150}" "$@" > "$LOGS/$name.log" 2>&1; then status=PASS; else status=FAIL; FAILED=$((FAILED + 1)); fi
    SUMMARY+=("$status $name ($((SECONDS - start)) s): $(grep -E '^(gain|strict|before|after|\[trl_ext.recipe\] CUDA)' "$LOGS/$name.log" | tr '\n' ' ' | cut -c1-300)")
    echo "${SUMMARY[-1]}"
}

# the embedded default's SFT warm start, built on the GPU (cached for the runs below)
check warm_start python3 -m trl_ext.models.tiny --eval_limit 64

SHORT=(--max_steps 4 --logging_steps 1 --eval_limit 32 --eval_max_new_tokens 64 --save_strategy no)
for algo in grpo dapo gspo ppo; do
    check "${algo}_1gpu" accelerate launch --config_file accelerate_configs/single_device.yaml \
        "recipes/${algo}_math.py" "${SHORT[@]}" --output_dir "$WORK/${algo}_1gpu"
done
check dpo_1gpu accelerate launch --config_file accelerate_configs/single_device.yaml recipes/dpo_math.py \
    "${SHORT[@]}" --num_train_examples 64 --dpo_pairs_cache_dir "$WORK/pairs" --output_dir "$WORK/dpo_1gpu"
# DeepSpeed ZeRO-3 (NCCL, bf16) with one process: the partitioned-parameter paths (DAPO's gathers, PPO's critic)
for algo in dapo ppo; do
    check "${algo}_zero3" accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 1 \
        "recipes/${algo}_math.py" "${SHORT[@]}" --output_dir "$WORK/${algo}_zero3"
done
# resume on the GPU: checkpoint at step 2 of 4, then continue from it
check dapo_resume bash -c "accelerate launch --config_file accelerate_configs/single_device.yaml recipes/dapo_math.py \
    ${SHORT[*]} --save_strategy steps --save_steps 2 --max_steps 2 --eval_after false --output_dir $WORK/dapo_resume && \
    accelerate launch --config_file accelerate_configs/single_device.yaml recipes/dapo_math.py ${SHORT[*]} \
    --save_strategy steps --save_steps 2 --output_dir $WORK/dapo_resume --resume_from_checkpoint true"

echo "=== GPU smoke: $FAILED failed ==="
printf '%s\n' "${SUMMARY[@]}"
exit "$FAILED"
