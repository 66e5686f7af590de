"""The comparison's controls: SFT of the start model on rejection-sampled (``--sft_data rft``), warm-start
(``warm_start``) or gold worked-solution (``gold``, an oracle) data, with the recipes' evaluation and summary; see
trl_ext/recipe/controls.py.

    accelerate launch recipes/sft_math.py --sft_data rft --max_samples 2400
    accelerate launch recipes/sft_math.py --sft_data gold --max_train_seconds 60
"""

from pathlib import Path

from trl_ext.recipe import prepare_environment

prepare_environment()  # before trl/deepspeed are imported (DS_ACCELERATOR=cpu without CUDA)

from trl import ModelConfig, SFTConfig, SFTTrainer, TrlParser  # noqa: E402

from trl_ext.recipe import RecipeRun, parse_recipe_args  # noqa: E402
from trl_ext.recipe.controls import SFTScriptArguments, sft_dataset_for_run  # noqa: E402

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "embedded" / "sft.yaml"


def main(script_args, training_args, model_args):
    run = RecipeRun(f"sft-{script_args.sft_data}", script_args, training_args, model_args)
    trainer = SFTTrainer(
        model=run.model_path,
        args=training_args,
        train_dataset=sft_dataset_for_run(run),
        processing_class=run.tokenizer,
        peft_config=run.peft_config,
    )
    return run.train_and_evaluate(trainer)


if __name__ == "__main__":
    parser = TrlParser((SFTScriptArguments, SFTConfig, ModelConfig))
    main(*parse_recipe_args(parser, default_config=DEFAULT_CONFIG))
