"""DAPO on GSM8K-style math with `trl_ext.DAPOTrainer` (clip-higher 0.2/0.28, token-level loss, no KL, dynamic
sampling, soft overlong punishment; DAPOConfig's defaults are the paper's). Evaluates the start model and the trained
model on the held-out split and prints the gain. The same program: `trl-ext train dapo [args]`.

    accelerate launch recipes/dapo_math.py      # no arguments: the embedded CPU testbed (tiny warm-start model)
    # GSM8K with Qwen2.5-0.5B-Instruct on 8 GPUs (bf16, vLLM colocate when installed), resumable after a crash:
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 8 \
        recipes/dapo_math.py --config recipes/configs/gsm8k/qwen2.5-0.5b-instruct/dapo.yaml
    ... --resume_from_checkpoint true           # the latest complete checkpoint in output_dir

More commands (2 CPU processes under ZeRO-3, LoRA, two nodes): docs/recipes.md.
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("dapo")
