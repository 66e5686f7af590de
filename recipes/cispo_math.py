"""CISPO on GSM8K-style math with stock `trl.GRPOTrainer` (`loss_type cispo`; MiniMax-M1, arXiv 2506.13585) and
ScaleRL's settings as TRL documents them (arXiv 2510.13786): the importance weight capped at 5 and detached, so no
token leaves the gradient, batch-std advantages, no KL, 4 minibatch updates per rollout.

    accelerate launch recipes/cispo_math.py     # no arguments: the embedded CPU testbed (tiny warm-start model)
    # GSM8K with Qwen2.5-0.5B-Instruct on 8 GPUs:
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 8 \
        recipes/cispo_math.py --config recipes/configs/gsm8k/qwen2.5-0.5b-instruct/cispo.yaml

Also `trl-ext train cispo [args]`; the family of TRL trainers and loss types: docs/family.md.
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("cispo")
