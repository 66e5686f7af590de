"""DPO on GSM8K-style math with stock `trl.DPOTrainer` on on-policy pairs: k completions per training question are
sampled from the start model, a verified-correct one (chosen) is paired with an incorrect one (rejected), and the
pairs are cached on disk (keyed by a hash of the model and the settings); questions with no valid pair are counted
and reported. Evaluates the start model and the trained model on the held-out split and prints the gain.

    # the embedded CPU testbed (synthetic data, tiny warm-start model, fp32), no arguments:
    accelerate launch recipes/dpo_math.py
    # on CPU, 2 processes under ZeRO-3:
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 2 --mixed_precision no \
        recipes/dpo_math.py
    # GSM8K with Qwen2.5-0.5B-Instruct on 8 GPUs (bf16; every rank samples its share of the pairs, then cached):
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 8 \
        recipes/dpo_math.py --config recipes/configs/gsm8k/qwen2.5-0.5b-instruct/dpo.yaml
    # any field on the command line overrides the YAML, e.g. LoRA:
    ... --use_peft true --lora_r 64 --lora_alpha 32 --lora_target_modules all-linear
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("dpo")
