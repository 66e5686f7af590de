"""GSPO on GSM8K-style math with `trl_ext.GSPOTrainer`: a sequence-level importance ratio clipped to
[1 - 3e-4, 1 + 4e-4], no KL, 4 minibatch updates per rollout batch (GSPOConfig's defaults are the paper's).

    # 2 processes on CPU under DeepSpeed ZeRO-3, the embedded testbed:
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 2 --mixed_precision no \
        recipes/gspo_math.py
    # GSM8K, Qwen2.5-0.5B-Instruct, 8 GPUs, from an installed trl-ext (shipped configs by name):
    accelerate launch --config_file "$(trl-ext configs --path zero3)" --num_processes 8 \
        -m trl_ext.cli train gspo --config gsm8k/qwen2.5-0.5b-instruct/gspo.yaml
    # the rollout split into 8 minibatch updates instead of 4:
    ... --num_minibatches 8

Prints the held-out accuracy before and after training and the gain (docs/recipes.md).
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("gspo")
