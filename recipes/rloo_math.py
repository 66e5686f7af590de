"""RLOO on GSM8K-style math with stock `trl.RLOOTrainer` (Ahmadian et al. 2024, arXiv 2402.14740): REINFORCE with
the leave-one-out mean of the other completions of a prompt as baseline and the paper's KL 0.03 in the reward.
Evaluates the start model and the trained model on the held-out split and prints the gain.

    accelerate launch recipes/rloo_math.py      # no arguments: the embedded CPU testbed (tiny warm-start model)
    # GSM8K with Qwen2.5-0.5B-Instruct on 8 GPUs (bf16, vLLM colocate when installed):
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 8 \
        recipes/rloo_math.py --config recipes/configs/gsm8k/qwen2.5-0.5b-instruct/rloo.yaml

Also `trl-ext train rloo [args]`; the family of TRL trainers and loss types: docs/family.md.
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("rloo")
