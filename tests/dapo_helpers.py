"""Rewards with a known keep rate and a tiny DAPO setup, shared by the DAPO tests, the 2-process worker and the
benchmark. A prompt row carries a ``flat`` column: flat prompts score 0 for every completion (the group is filtered),
the others score a seeded random number per completion (the group is always kept)."""

import random

from trl_ext.data.gsm8k import load_gsm8k


def keep_rate_dataset(num_examples: int, keep_rate: float, seed: int = 0, flat_on_rank=None):
    ds = load_gsm8k("synthetic", "train", num_examples=num_examples, seed=seed)
    rng = random.Random(seed)
    flat = [rng.random() >= keep_rate for _ in range(len(ds))]
    return ds.add_column("flat", flat)


class KeepRateReward:
    """0.0 for rows whose prompt is flat, else a fresh random number; optionally everything is flat on one rank
    (so that the keep rate differs between ranks)."""

    __name__ = "keep_rate_reward"

    def __init__(self, seed: int = 0, all_flat_on_rank: int | None = None):
        self.rng = random.Random(seed)
        self.all_flat_on_rank = all_flat_on_rank

    def __call__(self, completions, flat, **kwargs):
        if self.all_flat_on_rank is not None:
            from accelerate import PartialState

            if PartialState().process_index == self.all_flat_on_rank:
                return [0.0] * len(completions)
        return [0.0 if f else self.rng.random() for f in flat]


def length_reward(completions, **kwargs):
    """Varies with length: would make every group look 'varied' if used as a filter."""
    return [len(c[0]["content"] if isinstance(c, list) else c) / 100 for c in completions]


def tiny_dapo_config(output_dir, config_class=None, **overrides):
    """Small, fast settings for the tiny model; ``config_class`` defaults to DAPOConfig."""
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
