"""GRPO on GSM8K-style math with stock `trl.GRPOTrainer` and DeepSeekMath's settings (loss_type grpo, beta 0.04,
epsilon 0.2): the baseline of the comparison. Held-out evaluation before and after training, and the gain.

    accelerate launch recipes/grpo_math.py
    # Qwen2.5-1.5B-Instruct with LoRA (verl's GRPO-LoRA settings) on 8 GPUs; any field overrides the YAML:
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 8 \
        recipes/grpo_math.py --config recipes/configs/gsm8k/qwen2.5-1.5b-instruct/grpo.yaml \
        --use_peft true --lora_r 64 --lora_alpha 32 --lora_target_modules all-linear --learning_rate 3e-6

Also `trl-ext train grpo [args]`; DDP on CPU needs `--use_cpu true` (see docs/recipes.md).
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("grpo")
