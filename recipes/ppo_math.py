"""PPO on GSM8K-style math with `trl_ext.PPOTrainer`: a learned critic, GAE advantages per token and a KL penalty
in the reward, on GRPOTrainer's rollout (PPOConfig documents the defaults and their sources).
Evaluates the start model and the trained model on the held-out split and prints the gain.

    # the embedded CPU testbed (synthetic data, tiny warm-start model, fp32), no arguments:
    accelerate launch recipes/ppo_math.py
    # on CPU, 2 processes under ZeRO-3:
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 2 --mixed_precision no \
        recipes/ppo_math.py
    # GSM8K with Qwen2.5-0.5B-Instruct on 8 GPUs (bf16, vLLM colocate when installed):
    accelerate launch --config_file accelerate_configs/zero3.yaml --num_processes 8 \
        recipes/ppo_math.py --config recipes/configs/gsm8k/qwen2.5-0.5b-instruct/ppo.yaml
    # any field on the command line overrides the YAML, e.g. LoRA:
    ... --use_peft true --lora_r 64 --lora_alpha 32 --lora_target_modules all-linear
"""

from pathlib import Path

from trl_ext.recipe import prepare_environment

prepare_environment()  # before trl/deepspeed are imported (DS_ACCELERATOR=cpu without CUDA)

from trl import ModelConfig, TrlParser  # noqa: E402

from trl_ext import PPOConfig, PPOTrainer  # noqa: E402
from trl_ext.recipe import RecipeRun, RLScriptArguments, parse_recipe_args  # noqa: E402

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "embedded" / "ppo.yaml"


def main(script_args, training_args, model_args, source=None):
    run = RecipeRun("ppo", script_args, training_args, model_args, source)
    trainer = PPOTrainer(
        model=run.model_path,
        reward_funcs=run.reward_funcs,
        args=training_args,
        train_dataset=run.train_dataset(),
        processing_class=run.tokenizer,
        peft_config=run.peft_config,
        quantization_config=run.quantization_config,
    )
    return run.train_and_evaluate(trainer)


if __name__ == "__main__":
    parser = TrlParser((RLScriptArguments, PPOConfig, ModelConfig))
    parsed = parse_recipe_args(parser, default_config=DEFAULT_CONFIG)
    main(*parsed, source=parsed.source)
