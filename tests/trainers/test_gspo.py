"""GSPO: GSPOConfig validation, GSPOTrainer loss paths, training, ZeRO-3 (pure math: tests/core/test_gspo_core.py)."""

import math
import re
import warnings

import pytest
import torch
from helpers.configs import tiny_gspo_config
from helpers.launch import TESTS, launch
from helpers.rewards import length_reward
from helpers.worker import records

from trl_ext.core.gspo import clipped_surrogate_loss, gspo_token_log_ratio

# ----------------------------------------------------------------------------------------------------------------------
# GSPOConfig
# ----------------------------------------------------------------------------------------------------------------------


def test_config_defaults(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        cfg = tiny_gspo_config(tmp_path, per_device_train_batch_size=4, num_generations=4)
    assert cfg.importance_sampling_level == "sequence"
    assert cfg.loss_type == "grpo"
    assert (cfg.epsilon, cfg.epsilon_high, cfg.beta) == (3e-4, 4e-4, 0.0)
    assert cfg.steps_per_generation == 4 * cfg.gradient_accumulation_steps == 4
    assert cfg.generation_batch_size == 16


def test_config_steps_per_generation(tmp_path):
    kw = {"per_device_train_batch_size": 4, "num_generations": 4}
    assert tiny_gspo_config(tmp_path, gradient_accumulation_steps=3, **kw).steps_per_generation == 12
    assert tiny_gspo_config(tmp_path, gradient_accumulation_steps=3, num_minibatches=2, **kw).steps_per_generation == 6
    cfg = tiny_gspo_config(tmp_path, gradient_accumulation_steps=3, steps_per_generation=3, **kw)
    assert (cfg.steps_per_generation, cfg.generation_batch_size) == (3, 12)
    cfg = tiny_gspo_config(tmp_path, gradient_accumulation_steps=2, generation_batch_size=8, **kw)
    assert (cfg.steps_per_generation, cfg.generation_batch_size) == (2, 8)
    with pytest.raises(ValueError, match="num_minibatches"):
        tiny_gspo_config(tmp_path, num_minibatches=0, **kw)


@pytest.mark.parametrize("loss_type", ["dapo", "bnpo", "dr_grpo", "luspo", "cispo", "vespo"])
def test_config_rejects_length_weighted_loss(tmp_path, loss_type):
    with pytest.raises(ValueError, match=re.escape("Use loss_type='grpo'")):
        tiny_gspo_config(tmp_path, loss_type=loss_type)


def test_config_rejects_token_level_ratio_and_warns_on_token_clip(tmp_path):
    with pytest.raises(ValueError, match="importance_sampling_level='sequence'"):
        tiny_gspo_config(tmp_path, importance_sampling_level="token")
    with pytest.warns(UserWarning, match="looks like a token-level value"):
        tiny_gspo_config(tmp_path, epsilon=0.2, epsilon_high=None)
    with pytest.warns(UserWarning, match="token-level"):
        tiny_gspo_config(tmp_path, epsilon_high=0.28)


# ----------------------------------------------------------------------------------------------------------------------
# GSPOTrainer
# ----------------------------------------------------------------------------------------------------------------------


def make_trainer(model_path, tmp_path, trainer_cls=None, num_examples=16, **cfg_kwargs):
    from transformers import AutoTokenizer

    from trl_ext import GSPOTrainer
    from trl_ext.data.gsm8k import load_gsm8k

    kw = {
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 8,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "max_steps": 2,
    }
    cfg = tiny_gspo_config(tmp_path, **{**kw, **cfg_kwargs})
    return (trainer_cls or GSPOTrainer)(
        model=model_path,
        reward_funcs=length_reward,
        args=cfg,
        train_dataset=load_gsm8k("synthetic", "train", num_examples=num_examples),
        processing_class=AutoTokenizer.from_pretrained(model_path),
    )


@pytest.fixture(scope="module")
def loss_setup(tiny_model_path, tmp_path_factory):
    """A GSPOTrainer and a crafted batch whose sequence ratios are known: exp(delta_i) with delta = old-logp offsets."""
    trainer = make_trainer(tiny_model_path, tmp_path_factory.mktemp("gspo_loss"))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    gen = torch.Generator().manual_seed(0)
    lengths = [1, 5, 6, 3]
    prompt_ids = torch.randint(10, 200, (4, 3), generator=gen)
    completion_ids = torch.randint(10, 200, (4, 6), generator=gen)
    completion_mask = torch.zeros(4, 6, dtype=torch.long)
    for i, n in enumerate(lengths):
        completion_mask[i, :n] = 1
    inputs = {
        "prompt_ids": prompt_ids,
        "prompt_mask": torch.ones_like(prompt_ids),
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
    }
    with torch.no_grad():
        logp = trainer._get_per_token_logps_and_entropies(
            trainer.model,
            torch.cat([prompt_ids, completion_ids], 1),
            torch.cat([inputs["prompt_mask"], completion_mask], 1),
            6,
        )[0]
    delta = torch.tensor([-0.01, 0.01, 0.0, -0.01])  # seq 0: low-clipped (A<0); seq 1: high-clipped; 2, 3: not
    inputs["old_per_token_logps"] = logp - delta.unsqueeze(-1)
    inputs["num_items_in_batch"] = completion_mask.sum()
    return trainer, inputs, torch.tensor([-1.0, 1.0, 1.0, 1.0])


def run_loss(trainer, inputs, advantages, loss_fn=None):
    trainer.model.zero_grad()
    loss = (loss_fn or trainer._compute_loss)(trainer.model, {**inputs, "advantages": advantages})
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    metrics = {k: trainer._metrics["train"][f"clip_ratio/{k}_mean"][-1] for k in ("low", "high", "region")}
    return loss.item(), grads, metrics


def test_trainer_sequence_path_logs_per_sequence_clip_fractions(loss_setup):
    trainer, inputs, adv = loss_setup
    loss, _, metrics = run_loss(trainer, inputs, adv)
    assert math.isfinite(loss)
    # 1 of 4 sequences on each side; token-weighted fractions would be 1/15 and 5/15.
    assert metrics == pytest.approx({"low": 0.25, "high": 0.25, "region": 0.5})


def test_trainer_token_advantages_constant_per_sequence_equal_sequence_path(loss_setup):
    from trl import GRPOTrainer

    trainer, inputs, adv = loss_setup
    seq_loss, seq_grads, seq_metrics = run_loss(trainer, inputs, adv)
    adv_tok = adv.unsqueeze(-1).expand(-1, 6).clone()
    tok_loss, tok_grads, tok_metrics = run_loss(trainer, inputs, adv_tok)
    assert tok_loss == pytest.approx(seq_loss, abs=1e-6)
    assert (tok_grads - seq_grads).abs().max().item() <= 1e-5 * max(seq_grads.abs().max().item(), 1.0)
    assert tok_metrics == pytest.approx(seq_metrics)
    # Stock TRL logs token-weighted fractions on this path; GSPOTrainer logs sequence fractions.
    _, _, stock_metrics = run_loss(trainer, inputs, adv_tok, lambda m, x: GRPOTrainer._compute_loss(trainer, m, x))
    assert stock_metrics["low"] == pytest.approx(1 / 15) and stock_metrics["high"] == pytest.approx(5 / 15)
    assert trainer.importance_sampling_level == "sequence"  # restored after the GSPO-token call
    assert inputs["old_per_token_logps"] is not None and "_gspo_seq_log_ratio" not in inputs  # inputs not mutated


def test_trainer_per_token_advantages_use_gspo_token(loss_setup):
    """Non-constant (B, T) advantages: gradients follow GSPO-token (Eq. 13), not TRL's sequence ratio x A_t."""
    from trl import GRPOTrainer

    trainer, inputs, _ = loss_setup
    adv_tok = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    loss, grads, _ = run_loss(trainer, inputs, adv_tok)

    mask = inputs["completion_mask"].float()

    def reference(model, x):
        ids = torch.cat([x["prompt_ids"], x["completion_ids"]], 1)
        att = torch.cat([x["prompt_mask"], x["completion_mask"]], 1)
        logp = trainer._get_per_token_logps_and_entropies(model, ids, att, 6)[0]
        log_w = gspo_token_log_ratio(logp, x["old_per_token_logps"], mask)
        return clipped_surrogate_loss(log_w, x["advantages"], mask, trainer.epsilon_low, trainer.epsilon_high)

    ref_loss, ref_grads, _ = run_loss(trainer, inputs, adv_tok, reference)
    assert loss == pytest.approx(ref_loss, abs=1e-6)
    scale = ref_grads.abs().max().item()
    assert (grads - ref_grads).abs().max().item() <= 1e-5 * scale
    _, stock_grads, _ = run_loss(trainer, inputs, adv_tok, lambda m, x: GRPOTrainer._compute_loss(trainer, m, x))
    assert (stock_grads - ref_grads).abs().max().item() > 1e-3 * scale


def test_training_minibatch_updates_per_rollout(tiny_model_path, tmp_path):
    """GA=2, default num_minibatches=4: steps_per_generation=8 micro-steps = 4 optimizer steps per rollout batch."""
    from trl_ext import GSPOTrainer

    class CountingTrainer(GSPOTrainer):
        generations = 0

        def _generate_and_score_completions(self, inputs):
            type(self).generations += 1
            out = super()._generate_and_score_completions(inputs)
            assert out["advantages"].dim() == 1 and out["old_per_token_logps"] is not None
            return out

    trainer = make_trainer(
        tiny_model_path, tmp_path, CountingTrainer, num_examples=32, gradient_accumulation_steps=2, max_steps=8
    )
    assert trainer.args.steps_per_generation == 8
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    updates_per_rollout = trainer.args.steps_per_generation // trainer.args.gradient_accumulation_steps
    assert trainer.state.global_step == 8
    assert CountingTrainer.generations == 8 // updates_per_rollout == 2
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, trainer.model.parameters()))
    clip = [h["clip_ratio/region_mean"] for h in trainer.state.log_history if "clip_ratio/region_mean" in h]
    assert all(0.0 <= v <= 1.0 for v in clip)


def test_deepspeed_zero3_two_processes(tiny_model_path, tmp_path):
    worker = TESTS / "dist" / "gspo_worker.py"
    proc = launch(worker, ["--model", tiny_model_path, "--output_dir", tmp_path / "out"], config="zero3", timeout=300)
    results = records(proc.stdout, "GSPO_WORKER")
    assert len(results) == 2, proc.stdout[-3000:]
    for r in results:
        assert r["world_size"] == 2 and r["deepspeed"] is True and r["zero_stage"] == 3
        assert r["global_step"] == 2 and math.isfinite(r["loss"])
        assert r["token_calls"] == 1  # the second step went through the GSPO-token path
    assert sorted(r["rank"] for r in results) == [0, 1]
