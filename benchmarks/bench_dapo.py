"""DAPOTrainer benchmark, measured side by side in one run (no absolute targets: this machine is noisy).

1. Step-time ratio DAPOTrainer / stock GRPOTrainer with identical settings (DAPO's clip, loss and beta on both) and a
   reward that never yields all-equal groups, so dynamic sampling runs every check but never refills. Target <= 1.03.
2. Waste: generated groups per trained group with rewards whose keep rate is known (0.25, 0.5, 0.9), against the
   ideal 1 / keep_rate. Target <= 1.15x the ideal. verl's scheme (whole batches, surplus discarded) is printed beside.

    python benchmarks/bench_dapo.py [--steps 12] [--repeats 3]
"""

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", WANDB_MODE="disabled")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import random

from helpers.configs import tiny_dapo_config
from helpers.rewards import KeepRateReward, keep_rate_dataset
from transformers import AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from trl_ext import DAPOTrainer
from trl_ext.models.tiny import build_tiny_model


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times, self._last = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._last)


def random_reward(completions, **kwargs):
    return [random.random() for _ in completions]


def step_times(cls, model, out, steps, dataset):
    common = dict(max_steps=steps, per_device_train_batch_size=16, num_generations=4, max_completion_length=16,
                  use_cpu=True, logging_steps=1000)
    if cls is GRPOTrainer:
        # The very same settings as a plain GRPOConfig: DAPO's presets are GRPOConfig fields.
        args = tiny_dapo_config(out, config_class=GRPOConfig, loss_type="dapo", epsilon=0.2, epsilon_high=0.28,
                                beta=0.0, **common)
    else:
        args = tiny_dapo_config(out, **common)
    timer = StepTimer()
    trainer = cls(model=model, reward_funcs=[random_reward], args=args, train_dataset=dataset,
                  processing_class=AutoTokenizer.from_pretrained(model), callbacks=[timer])
    trainer.train()
    return timer.times[1:]  # the first step pays one-off costs


def waste(model, out, keep_rate, steps):
    dataset = keep_rate_dataset(2048, keep_rate, seed=1)
    actual = 1 - sum(dataset["flat"]) / len(dataset)
    args = tiny_dapo_config(out, max_steps=steps, per_device_train_batch_size=32, num_generations=2,
                            max_completion_length=4, use_cpu=True, dynamic_sampling_max_rounds=0)
    trainer = DAPOTrainer(model=model, reward_funcs=[KeepRateReward(seed=1)], args=args, train_dataset=dataset,
                          processing_class=AutoTokenizer.from_pretrained(model))
    trainer.train()
    ratios = [h["dapo/generated_groups_per_trained_group"] for h in trainer.state.log_history
              if "dapo/generated_groups_per_trained_group" in h]
    return actual, statistics.mean(ratios)


def verl_expected(keep_rate, groups=16):
    """Expected generated/trained groups when every round is a whole batch (simulated, 20k batches)."""
    rng, total = random.Random(0), 0
    for _ in range(20000):
        kept = 0
        while kept < groups:
            kept += sum(rng.random() < keep_rate for _ in range(groups))
            total += groups
    return total / (20000 * groups)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_tiny_model(Path(tmp) / "model"))
        dataset = keep_rate_dataset(512, 1.0)
        grpo, dapo = [], []
        for r in range(args.repeats):  # interleaved, so drifts in machine load hit both alike
            grpo += step_times(GRPOTrainer, model, Path(tmp) / f"g{r}", args.steps, dataset)
            dapo += step_times(DAPOTrainer, model, Path(tmp) / f"d{r}", args.steps, dataset)
        g, d = statistics.median(grpo), statistics.median(dapo)
        print(f"step time (median of {len(grpo)} steps): GRPOTrainer {1000 * g:.1f} ms, DAPOTrainer {1000 * d:.1f} ms")
        print(f"step-time ratio DAPO/GRPO = {d / g:.3f} (target <= 1.03)")
        for keep_rate in (0.25, 0.5, 0.9):
            actual, ratio = waste(model, Path(tmp) / f"w{keep_rate}", keep_rate, args.steps)
            ideal = 1 / actual
            print(f"keep rate {actual:.3f}: generated/trained groups {ratio:.3f}, ideal {ideal:.3f}, "
                  f"ratio to ideal {ratio / ideal:.3f} (target <= 1.15); verl-style whole batches "
                  f"{verl_expected(actual):.3f} ({verl_expected(actual) / ideal:.3f}x)")
    assert math.isfinite(d / g)


if __name__ == "__main__":
    main()
