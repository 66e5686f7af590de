"""PPO on GSM8K-style math with `trl_ext.PPOTrainer`: a learned critic, GAE advantages per token and a KL penalty
in the reward, on GRPOTrainer's rollout (PPOConfig documents the defaults and their sources; docs/ppo.md).

    accelerate launch recipes/ppo_math.py   # embedded CPU testbed, evaluation before/after, the gain
    # verl's GSM8K PPO for Qwen2.5-0.5B-Instruct (critic lr 1e-5, KL 0.001 in the reward) on 4 GPUs instead of 8:
    # twice the accumulation and micro-batches per rollout keep 64 prompts per update and 4 updates per rollout
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 4 recipes/ppo_math.py \
        --config recipes/configs/gsm8k/qwen2.5-0.5b-instruct/ppo.yaml --gradient_accumulation_steps 2 \
        --steps_per_generation 8

`trl-ext train ppo` is the same program (trl_ext.recipe.train).
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("ppo")
