"""Toy reward functions for the tiny random model (whose GSM8K accuracy is always 0), and the keep-rate data that
``KeepRateReward`` reads.

In-process: ``from helpers.rewards import length_reward``. In a recipe subprocess (tests/ on its PYTHONPATH, see
``helpers.launch.pythonpath``): ``--reward_funcs helpers.rewards:length_reward``, i.e. ``reward_path(length_reward)``.
"""

import os
import random
import time
from pathlib import Path


def reward_path(func) -> str:
    """``module:function``, as a recipe's ``--reward_funcs`` imports it."""
    return f"{func.__module__}:{func.__qualname__}"


def length_reward(completions, **kwargs):
    """Characters / 10: varies with the completion's length, so every group has a non-zero advantage and the
    parameters must move. The recipe runs' reward (``reward_path(length_reward)``), and GSPO's."""
    return [len(c[0]["content"] if isinstance(c, list) else c) / 10 for c in completions]


def length_reward_100(completions, **kwargs):
    """Characters / 100 (the DAPO tests' scale): varies with length, so it would make every group look 'varied' if
    used as a dynamic-sampling filter."""
    return [len(c[0]["content"] if isinstance(c, list) else c) / 100 for c in completions]


def digit_reward(completions, **kwargs):
    """Digits in the completion / 10."""
    return [sum(ch.isdigit() for ch in c[0]["content"]) / 10.0 for c in completions]


def yes_reward(prompts, completions, **kwargs):
    """1 for the prompts that say "yes", whatever the completion: a critic can predict it from the prompt alone."""
    return [1.0 if "yes" in p[-1]["content"] else 0.0 for p in prompts]


def checkpoint_complete(path: Path, world_size: int) -> bool:
    """trainer_state.json (written last by the main process) and every rank's RNG state are on disk."""
    rng = [f"rng_state_{r}.pth" for r in range(world_size)] if world_size > 1 else ["rng_state.pth"]
    return all((path / name).exists() for name in ["trainer_state.json", *rng])


def stalling_length_reward(completions, **kwargs):
    """`length_reward`, except that with TRL_EXT_TEST_STALL_AFTER=<checkpoint dir> set, rank 0 stalls here for good
    once that checkpoint is complete (after writing TRL_EXT_TEST_STALL_MARKER), so the test can kill mid-step."""
    after, marker = os.environ.get("TRL_EXT_TEST_STALL_AFTER"), os.environ.get("TRL_EXT_TEST_STALL_MARKER")
    if after and marker and os.environ.get("RANK", "0") == "0":
        if checkpoint_complete(Path(after), int(os.environ.get("WORLD_SIZE", "1"))):
            Path(marker).write_text(str(os.getpid()))
            time.sleep(3600)
    return length_reward(completions)


# -- rewards with a known keep rate (DAPO's dynamic sampling) ---------------------------------------------------------
# A prompt row carries a ``flat`` column: flat prompts score 0 for every completion (the group is filtered), the others
# score a seeded random number per completion (the group is always kept).


def keep_rate_dataset(num_examples: int, keep_rate: float, seed: int = 0):
    """Synthetic GSM8K rows with a ``flat`` column: a share ``1 - keep_rate`` of them (seeded) is flat."""
    from trl_ext.data.gsm8k import load_gsm8k

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
