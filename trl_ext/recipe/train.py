"""The recipe program, one for every algorithm: ``recipes/<algo>_math.py``, ``trl-ext train <algo>`` and
``accelerate launch -m trl_ext.cli train <algo>`` all call ``main(algo, argv)``.

1. ``prepare_environment()`` (before trl/deepspeed are imported: ``DS_ACCELERATOR=cpu`` without CUDA, fp32);
2. a ``TrlParser`` over the algorithm's three dataclasses (``Algorithm.dataclass_types``), parsed by
   ``parse_recipe_args`` with ``--config`` (default: the algorithm's embedded YAML) and the command line;
3. ``RecipeRun`` (start model, resume, prompts, rewards), the trainer from the table (``Algorithm.build_trainer``:
   RL trainers on the training prompts with the reward functions, DPO on its on-policy pairs);
4. ``RecipeRun.train_and_evaluate(trainer)``: evaluation before/after, training, saving, the summary.
"""

from __future__ import annotations

from trl_ext.recipe.algorithms import Algorithm, get_algorithm


def main(algo: str | Algorithm, argv: list[str] | None = None) -> dict:
    """Train ``algo`` (a name in ``ALGORITHMS`` or an ``Algorithm``) with the recipe arguments ``argv`` (default
    ``sys.argv[1:]``). Returns the run summary (one process); as one process of several it ends the process when
    the run is done (``trl_ext.recipe.distributed.end_process``), with exit status 0."""
    algorithm = algo if isinstance(algo, Algorithm) else get_algorithm(algo)

    from trl_ext.recipe.hardware import prepare_environment

    prepare_environment()  # before trl/deepspeed are imported

    from trl import TrlParser

    from trl_ext.recipe.config import parse_recipe_args
    from trl_ext.recipe.run import RecipeRun

    parser = TrlParser(algorithm.dataclass_types())
    parsed = parse_recipe_args(parser, default_config=algorithm.default_config_path(), args=argv)
    run = RecipeRun(algorithm.run_label(parsed[0]), *parsed, source=parsed.source)
    trainer = algorithm.build_trainer(run)
    result = run.train_and_evaluate(trainer)
    if trainer.accelerator.num_processes > 1:  # one of several processes: end it here, cleanly (end_process)
        from trl_ext.recipe.distributed import end_process

        end_process()
    return result
