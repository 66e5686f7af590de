"""DPO on GSM8K-style math with stock `trl.DPOTrainer` on on-policy pairs: k completions per training question are
sampled from the start model (every rank its share), a verified-correct one (chosen) is paired with an incorrect one
(rejected), and the pairs are cached on disk, keyed by a hash of the model and the settings; questions with no valid
pair are counted and reported. Then training, and the held-out evaluation before and after.

    accelerate launch recipes/dpo_math.py       # the embedded CPU testbed; `trl-ext train dpo` runs the same
    # SmolLM2-135M-Instruct on 2 CPU processes (reference solutions stand in where no sample is correct):
    accelerate launch --config_file accelerate_configs/zero2.yaml --num_processes 2 --mixed_precision no \
        recipes/dpo_math.py --config recipes/configs/gsm8k/smollm2-135m-instruct/dpo.yaml
    # more samples per question, and where the pairs are cached (default $TRL_EXT_CACHE/dpo_pairs):
    ... --dpo_num_samples 8 --dpo_pairs_cache_dir /shared/dpo_pairs
"""

from trl_ext.recipe.train import main

if __name__ == "__main__":
    main("dpo")
