"""DPO on GSM8K-style math with stock `trl.DPOTrainer` on on-policy pairs: k completions per training question are
sampled from the start model, a verified-correct one (chosen) is paired with an incorrect one (rejected), and the
pairs are cached on disk (keyed by a hash of the model and the settings); questions with no valid pair are counted
and reported. Evaluates the start model and the trained model on the held-out split and prints the gain.

    # the embedded CPU testbed (synthetic data, tiny warm-start model, fp32), no arguments:
    accelerate launch recipes/dpo_math.py
    # on CPU, 2 processes under ZeRO-3:
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 2 --mixed_precision no \
        recipes/dpo_math.py
    # GSM8K with Qwen2.5-0.5B-Instruct on 8 GPUs (bf16; the pairs are sampled once, by the main process):
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 8 \
        recipes/dpo_math.py --config recipes/configs/gsm8k/qwen2.5-0.5b-instruct/dpo.yaml
    # any field on the command line overrides the YAML, e.g. LoRA:
    ... --use_peft true --lora_r 64 --lora_alpha 32 --lora_target_modules all-linear
"""

from pathlib import Path

from trl_ext.recipe import prepare_environment

prepare_environment()  # before trl/deepspeed are imported (DS_ACCELERATOR=cpu without CUDA)

from trl import DPOConfig, DPOTrainer, ModelConfig, TrlParser  # noqa: E402

from trl_ext.recipe import DPOScriptArguments, RecipeRun, parse_recipe_args  # noqa: E402
from trl_ext.recipe.dpo_pairs import pairs_for_run  # noqa: E402

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "embedded" / "dpo.yaml"


def main(script_args, training_args, model_args, source=None):
    run = RecipeRun("dpo", script_args, training_args, model_args, source)
    trainer = DPOTrainer(
        model=run.model_path,  # a path: DPOTrainer builds the frozen reference model from it (none with LoRA)
        args=training_args,
        train_dataset=pairs_for_run(run),
        processing_class=run.tokenizer,
        peft_config=run.peft_config,
        quantization_config=run.quantization_config,
    )
    return run.train_and_evaluate(trainer)


if __name__ == "__main__":
    parser = TrlParser((DPOScriptArguments, DPOConfig, ModelConfig))
    parsed = parse_recipe_args(parser, default_config=DEFAULT_CONFIG)
    main(*parsed, source=parsed.source)
