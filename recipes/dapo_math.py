"""DAPO on GSM8K-style math with `trl_ext.DAPOTrainer` (clip-higher 0.2/0.28, token-level loss, no KL, dynamic
sampling, soft overlong punishment; DAPOConfig's defaults are the paper's).
Evaluates the start model and the trained model on the held-out split and prints the gain.

    # the embedded CPU testbed (synthetic data, tiny warm-start model, fp32), no arguments:
    accelerate launch recipes/dapo_math.py
    # on CPU, 2 processes under ZeRO-3:
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 2 --mixed_precision no \
        recipes/dapo_math.py
    # GSM8K with Qwen2.5-0.5B-Instruct on 8 GPUs (bf16, vLLM colocate when installed):
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 8 \
        recipes/dapo_math.py --config recipes/configs/gsm8k/qwen2.5-0.5b-instruct/dapo.yaml
    # any field on the command line overrides the YAML, e.g. LoRA:
    ... --use_peft true --lora_r 64 --lora_alpha 32 --lora_target_modules all-linear
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("dapo")
