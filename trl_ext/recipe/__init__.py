"""Shared code of the recipes: the algorithm table, arguments, YAML configs with inheritance, hardware adaptation,
model/PEFT loading, evaluation before and after training, the final summary, and on-policy DPO pairs.

``ALGORITHMS`` (``trl_ext.recipe.algorithms``) names each algorithm's script arguments, config, trainer, training data
and default config; one program (``trl_ext.recipe.train.main``) runs any of them, so a recipe script is::

    from trl_ext.recipe.train import main

    if __name__ == "__main__":
        main("dapo")  # or: trl-ext train dapo [args...]

The same by hand, for a trainer of your own::

    from trl_ext.recipe import prepare_environment
    prepare_environment()  # before deepspeed/trl are imported: DS_ACCELERATOR=cpu etc. on a machine without CUDA

    from trl import GRPOConfig, GRPOTrainer, ModelConfig, TrlParser
    from trl_ext.recipe import RecipeRun, RLScriptArguments, parse_recipe_args

    parsed = parse_recipe_args(TrlParser((RLScriptArguments, GRPOConfig, ModelConfig)),
                               default_config="embedded/grpo.yaml")
    run = RecipeRun("grpo", *parsed, source=parsed.source)
    trainer = GRPOTrainer(model=run.model_path, reward_funcs=run.reward_funcs, args=run.training_args,
                          train_dataset=run.train_dataset(), processing_class=run.tokenizer, peft_config=run.peft_config)
    run.train_and_evaluate(trainer)

Importing this package imports neither torch, deepspeed nor trl; ``RecipeRun`` and the DPO pair builder are loaded
on first access.
"""


from trl_ext._lazy import lazy_getattr
from trl_ext.recipe.algorithms import ALGORITHMS, Algorithm, algorithm_names, get_algorithm
from trl_ext.recipe.args import (
    REWARD_FUNCS,
    DPOScriptArguments,
    RecipeScriptArguments,
    RLScriptArguments,
    get_reward_funcs,
)
from trl_ext.recipe.config import ConfigSource, RecipeArgs, RecipeConfigError, load_recipe_yaml, parse_recipe_args
from trl_ext.recipe.hardware import prepare_environment

_LAZY = {
    "RecipeRun": "trl_ext.recipe.run",
    "build_onpolicy_pairs": "trl_ext.recipe.dpo_pairs",
    "onpolicy_pairs": "trl_ext.recipe.dpo_pairs",
}

__all__ = [
    "ALGORITHMS",
    "REWARD_FUNCS",
    "Algorithm",
    "ConfigSource",
    "DPOScriptArguments",
    "RLScriptArguments",
    "RecipeArgs",
    "RecipeConfigError",
    "RecipeScriptArguments",
    "algorithm_names",
    "get_algorithm",
    "get_reward_funcs",
    "load_recipe_yaml",
    "parse_recipe_args",
    "prepare_environment",
    *sorted(_LAZY),
]


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)
