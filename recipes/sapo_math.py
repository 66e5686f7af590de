"""SAPO on GSM8K-style math with stock `trl.GRPOTrainer` (`loss_type sapo`; Gao et al. 2025, arXiv 2511.20347): a
smooth, temperature-controlled gate on each token's importance ratio instead of PPO's hard clip (temperatures 1.0 for
positive and 1.05 for negative advantages), no KL, 4 minibatch updates per rollout.

    accelerate launch recipes/sapo_math.py      # no arguments: the embedded CPU testbed (tiny warm-start model)
    # GSM8K with Qwen2.5-0.5B-Instruct on 8 GPUs:
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 8 \
        recipes/sapo_math.py --config recipes/configs/gsm8k/qwen2.5-0.5b-instruct/sapo.yaml

Also `trl-ext train sapo [args]`; the family of TRL trainers and loss types: docs/family.md.
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("sapo")
