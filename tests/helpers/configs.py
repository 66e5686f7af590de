"""Small, fast settings for the tiny random model: trainer configs, and the arguments of a tiny recipe run."""

from pathlib import Path

from helpers.rewards import length_reward, reward_path

LENGTH_REWARD = reward_path(length_reward)  # what the tiny recipe runs train on


def tiny_dapo_config(output_dir, config_class=None, **overrides):
    """DAPO (or ``config_class``: GRPOConfig...) for 2 quick steps; ``overrides`` win."""
    from trl_ext import DAPOConfig

    kwargs = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        seed=0,
        temperature=1.0,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    kwargs.update(overrides)
    return (config_class or DAPOConfig)(**kwargs)


def tiny_gspo_config(output_dir, **kwargs):
    """GSPOConfig with only what a CPU test needs (fp32, no reports, no checkpoints); everything else is ``kwargs``
    or GSPO's default (the config tests check those defaults)."""
    from trl_ext import GSPOConfig

    defaults = {"output_dir": str(output_dir), "bf16": False, "report_to": "none", "save_strategy": "no"}
    return GSPOConfig(**{**defaults, **kwargs})


def tiny_ppo_config(output_dir, **overrides):
    """PPOConfig on CPU in fp32, 8 prompts per device, 6-token completions; ``overrides`` win."""
    from trl_ext import PPOConfig

    kwargs = dict(
        output_dir=str(output_dir),
        bf16=False,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        gradient_checkpointing=False,
        max_completion_length=6,
        per_device_train_batch_size=8,
        seed=0,
    )
    kwargs.update(overrides)
    return PPOConfig(**kwargs)


def tiny_recipe_args(algo, model, output_dir, reward=LENGTH_REWARD):
    """A recipe's command line for two optimizer steps of a random tiny model on a little synthetic data, with a tiny
    evaluation; the RL recipes train on ``reward`` (a ``module:function`` path)."""
    args = [
        "--model_name_or_path", model, "--output_dir", output_dir, "--max_steps", "2", "--logging_steps", "1",
        "--num_train_examples", "32", "--eval_limit", "8", "--eval_max_new_tokens", "8", "--learning_rate", "1e-3",
    ]
    if algo == "dpo":
        return args + [
            "--dpo_num_samples", "2", "--dpo_max_new_tokens", "8", "--dpo_chosen_fallback", "reference",
            "--dpo_pairs_cache_dir", str(Path(output_dir) / "pairs"), "--per_device_train_batch_size", "4",
            "--max_length", "96",
        ]
    args += [
        "--reward_funcs", reward, "--max_completion_length", "8",
        "--per_device_train_batch_size", "8", "--num_generations", "1" if algo == "ppo" else "4",
    ]
    if algo == "dapo":
        args += ["--overlong_buffer_len", "4"]
    if algo == "ppo":  # the embedded YAML's 4 mini-batches per rollout: a rollout is 2 x 8 x 4 = 64 prompts
        args += ["--num_train_examples", "64"]
    return args


def one_launch_per_trainer() -> list[str]:
    """The compared algorithms that the default suite trains in 2-process launches (test_recipes, test_resume): the
    mission's five, and an entry of TRL's family only where it brings a trainer class that none before it has (RLOO).
    The others (GRPOTrainer with another loss) differ from GRPO in settings only: they are launched in the slow
    suite."""
    from trl_ext.recipe.algorithms import ALGORITHMS

    names, trainers = [], set()
    for algo in ALGORITHMS:
        if algo.control:
            continue
        if algo.family == "mission" or algo.trainer_spec not in trainers:
            names.append(algo.name)
        trainers.add(algo.trainer_spec)
    return names
