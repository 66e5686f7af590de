"""The recipes' run-level callbacks (trl_ext.recipe.callbacks) inside real trainers: the accuracy curve must not
disturb training's random streams, and the time budget must stop every rank on the same step."""

import pytest
from helpers.configs import tiny_dapo_config


def _completions_with_curve(model_path, output_dir, seed):
    """The completions of 2 GRPO steps of ``seed`` with the accuracy curve evaluating at every step (and at step 0,
    before the first rollout); every prompt is the same, so only the sampling stream tells the seeds apart."""
    import datasets
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from trl_ext.data.gsm8k import load_gsm8k
    from trl_ext.recipe.callbacks import AccuracyCurveCallback

    seen = []

    def recording_reward(completions, **kwargs):
        seen.extend(completions)
        return [float(len(c)) for c in completions]

    prompt = [{"role": "user", "content": "Ben has 3 cards. He buys 6 more. How many cards does Ben have now?"}]
    config = tiny_dapo_config(output_dir, GRPOConfig, seed=seed, max_steps=2, use_cpu=True)
    trainer = GRPOTrainer(model=model_path, reward_funcs=[recording_reward], args=config,
                          train_dataset=datasets.Dataset.from_list([{"prompt": prompt}] * 16),
                          processing_class=AutoTokenizer.from_pretrained(model_path))
    curve = load_gsm8k("synthetic", "validation", num_examples=4, limit=4)
    trainer.add_callback(AccuracyCurveCallback(trainer, curve, every=1, max_new_tokens=4, batch_size=4))
    trainer.train()
    return seen


def test_training_seeds_keep_their_own_sampling_with_the_accuracy_curve_on(tiny_model_path, tmp_path):
    """The curve's evaluation at step 0 used to reseed torch's global generator, so every training seed then sampled
    the same completions (and TRL's per-rank seeds were undone)."""
    first = _completions_with_curve(tiny_model_path, tmp_path / "s0", seed=0)
    second = _completions_with_curve(tiny_model_path, tmp_path / "s1", seed=1)
    assert len(first) == len(second) == 16
    assert first != second
    assert _completions_with_curve(tiny_model_path, tmp_path / "s0b", seed=0) == first  # and a seed is repeatable


@pytest.mark.timeout(400)
def test_time_budget_stops_every_rank_on_the_same_step(tiny_model_path, tmp_path):
    """Rank 1's clock passes the deadline at step 2, rank 0's never does: both stop after step 2 (each rank deciding
    by its own clock stopped rank 1 alone, and the launch hung)."""
    import subprocess

    from helpers.launch import TESTS, launch
    from helpers.worker import records

    try:
        proc = launch(TESTS / "dist" / "budget_worker.py", ["--model", tiny_model_path, "--output_dir", tmp_path],
                      config="multi_gpu", timeout=300)
    except subprocess.TimeoutExpired as err:
        raise AssertionError("the ranks stopped on different steps and the launch hung") from err
    results = records(proc.stdout, "RESULT")
    assert sorted(r["rank"] for r in results) == [0, 1]
    assert [r["global_step"] for r in results] == [2, 2], results
    assert all(r["stopped_by"] == "max_train_seconds 600" for r in results)


def test_a_time_budget_on_several_processes_needs_a_reduction():
    from trl_ext.recipe.callbacks import BudgetCallback

    with pytest.raises(ValueError, match="reduce_max"):
        BudgetCallback(None, world_size=2, max_train_seconds=60)
    BudgetCallback(None, world_size=1, max_train_seconds=60)  # one process: its own clock
