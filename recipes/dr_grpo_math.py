"""Dr. GRPO on GSM8K-style math with stock `trl.GRPOTrainer` (Liu et al. 2025, arXiv 2503.20783): `loss_type
dr_grpo` (token losses divided by a constant, not by each completion's length), advantages not divided by the group's
std (`scale_rewards none`), no KL. Evaluates the start and the trained model on the held-out split.

    accelerate launch recipes/dr_grpo_math.py   # no arguments: the embedded CPU testbed (tiny warm-start model)
    # GSM8K with Qwen2.5-0.5B-Instruct on 8 GPUs:
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 8 \
        recipes/dr_grpo_math.py --config recipes/configs/gsm8k/qwen2.5-0.5b-instruct/dr_grpo.yaml

Also `trl-ext train dr_grpo [args]`; the family of TRL trainers and loss types: docs/family.md.
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("dr_grpo")
