"""Pins of the TRL / transformers / torch internals that PPO works around, one test per workaround function. Each test
reads the upstream check or attribute the workaround depends on and fails when it changes, so that an upgrade fails
here, loudly, instead of PPO silently training without a reference model, with the critic in the policy's param
groups, or pushing the critic to vLLM. When one fails: re-read the upstream code, then fix or delete the workaround.

Workaround functions pinned here: ``reference_model_built_by_parent``, ``PPOTrainer._ref_logps``,
``PPOTrainer._calculate_rewards``, ``drop_group_metrics`` (trl_ext/trainers/ppo.py); ``one_generation_accepted_by_grpo``
(ppo_config.py); ``Critic.hidden_from_optimizer``, ``exclude_critic_from_weight_sync``, ``ignore_in_ddp`` (critic.py);
and every hook PPOTrainer overrides.
"""

import inspect
import re

import pytest
import torch
from transformers import Trainer
from trl import GRPOConfig, GRPOTrainer

from trl_ext import PPOConfig, PPOTrainer


def source(obj) -> str:
    """Upstream source with whitespace collapsed, so that reformatting does not count as a change."""
    return " ".join(inspect.getsource(obj).split())


# --- trl_ext/trainers/ppo.py --------------------------------------------------------------------------------------


def test_grpo_builds_the_reference_model_only_when_beta_is_nonzero():
    """``reference_model_built_by_parent``: TRL decides from ``args.beta`` whether to build the reference model (and
    the PEFT "ref" adapter), which PPO needs with beta 0."""
    init = source(GRPOTrainer.__init__)
    assert re.search(r"self\.beta = args\.beta if self\.beta == 0\.0: (# .*? )?self\.ref_model = None elif", init)
    assert "elif is_peft_model(model) and args.beta != 0.0:" in init


def test_the_workaround_restores_beta(tmp_path):
    from trl_ext.trainers.ppo import reference_model_built_by_parent

    args = PPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, kl_coef=0.05)
    with pytest.raises(RuntimeError), reference_model_built_by_parent(args) as loss_beta:
        assert (args.beta, loss_beta) == (0.05, 0.0)
        raise RuntimeError
    assert args.beta == 0.0
    args.kl_coef = 0.0
    with reference_model_built_by_parent(args):
        assert args.beta == 0.0  # no KL: no reference model


def test_grpo_computes_reference_logps_only_when_beta_is_nonzero():
    """``PPOTrainer._ref_logps``: TRL's rollout skips ``ref_per_token_logps`` at beta 0, so PPO computes them the
    same way (the reference model, or PEFT with the adapter disabled / the "ref" adapter)."""
    rollout = source(GRPOTrainer._generate_and_score_completions)
    assert re.search(r"if self\.beta != 0\.0: if self\.ref_model is not None: ref_per_token_logps, _, _ = "
                     r"self\._get_per_token_logps_and_entropies\( self\.ref_model,", rollout)
    assert 'use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None)' in rollout


def test_rollout_hands_the_gathered_rewards_to_calculate_rewards():
    """``PPOTrainer._calculate_rewards``: the rollout calls this hook, which returns every process's rewards."""
    assert "rewards_per_func = self._calculate_rewards(inputs, prompts, completions, completion_ids_list)" in source(
        GRPOTrainer._generate_and_score_completions
    )
    calculate = source(GRPOTrainer._calculate_rewards)
    assert calculate.endswith("rewards_per_func = gather(rewards_per_func) return rewards_per_func")
    assert list(inspect.signature(GRPOTrainer._calculate_rewards).parameters) == [
        "self", "inputs", "prompts", "completions", "completion_ids_list"
    ]


def test_rollout_logs_frac_reward_zero_std():
    """``drop_group_metrics``: the name of the metric it removes."""
    assert 'self._metrics[mode]["frac_reward_zero_std"].append(' in source(GRPOTrainer._generate_and_score_completions)


# --- trl_ext/trainers/ppo_config.py -------------------------------------------------------------------------------


def test_grpo_config_rejects_fewer_than_two_generations(tmp_path):
    """``one_generation_accepted_by_grpo``: GRPOConfig's check, in the ``<`` form the workaround defeats."""
    assert "if self.num_generations < 2: raise ValueError(" in source(GRPOConfig.__post_init__)
    with pytest.raises(ValueError, match="at least 2 generations"):
        GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, num_generations=1, per_device_train_batch_size=8)


def test_one_generation_is_a_plain_int_outside_the_check(tmp_path):
    from trl_ext.trainers.ppo_config import one_generation_accepted_by_grpo

    args = PPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False)
    assert type(args.num_generations) is int and args.num_generations == 1
    with pytest.raises(RuntimeError), one_generation_accepted_by_grpo(args):
        assert not args.num_generations < 2 and args.num_generations < 3 and 8 % args.num_generations == 0
        raise RuntimeError
    assert type(args.num_generations) is int


# --- trl_ext/trainers/critic.py -----------------------------------------------------------------------------------


def test_trainer_optimizer_takes_only_parameters_that_require_grad():
    """``Critic.hidden_from_optimizer``: GRPOTrainer keeps Trainer's ``create_optimizer``, whose param groups take
    the parameters with ``requires_grad``."""
    assert "create_optimizer" not in vars(GRPOTrainer)
    optimizer = source(Trainer.create_optimizer)
    assert "p for n, p in opt_model.named_parameters() if (n in decay_parameters and p.requires_grad)" in optimizer
    assert "p for n, p in opt_model.named_parameters() if (n not in decay_parameters and p.requires_grad)" in optimizer


def test_vllm_sync_pushes_what_iter_named_params_yields():
    """``exclude_critic_from_weight_sync`` wraps ``VLLMGeneration._iter_named_params``, the only walk over the
    parameters that ``sync_weights`` pushes (colocate and server). test_ppo.py checks the effect end to end."""
    from trl.generation.vllm_generation import VLLMGeneration

    assert inspect.isgeneratorfunction(VLLMGeneration._iter_named_params)
    sync = source(VLLMGeneration.sync_weights)
    assert "for name, param in self._iter_named_params(): self.llm.llm_engine" in sync  # colocate
    assert "self.vllm_client.update_named_params(self._weight_metadata, self._iter_named_params())" in sync  # server
    assert "named_parameters" not in sync


def test_ddp_reads_the_private_ignore_list():
    """``ignore_in_ddp``: torch's private static setter and the attribute DDP's constructor reads."""
    from torch.nn.parallel import DistributedDataParallel

    from trl_ext.trainers.critic import ignore_in_ddp

    module = torch.nn.Linear(2, 2)
    ignore_in_ddp(module, ["bias"])
    assert module._ddp_params_and_buffers_to_ignore == ["bias"]
    assert "module._ddp_params_and_buffers_to_ignore" in source(DistributedDataParallel.__init__)


# --- the hooks PPOTrainer overrides -------------------------------------------------------------------------------

OVERRIDDEN = [
    "__init__", "_calculate_rewards", "_generate_and_score_completions", "compute_loss", "training_step",
    "create_optimizer", "_clip_grad_norm", "_save", "_load_from_checkpoint", "_save_optimizer_and_scheduler",
    "_load_optimizer_and_scheduler",
]


def test_ppo_overrides_exactly_the_documented_hooks():
    own = {name for name, value in vars(PPOTrainer).items() if callable(value) and hasattr(GRPOTrainer, name)}
    assert own == set(OVERRIDDEN)
    for name in OVERRIDDEN:
        assert f"``{name}``" in PPOTrainer.__doc__, f"PPOTrainer's docstring does not list {name}"


@pytest.mark.parametrize("name", [n for n in OVERRIDDEN if n != "__init__"])
def test_overridden_hooks_exist_upstream_with_the_same_parameters(name):
    """A renamed or re-signed upstream hook would leave PPO's override uncalled (or called wrongly) without error."""
    upstream = getattr(GRPOTrainer, name)
    assert list(inspect.signature(getattr(PPOTrainer, name)).parameters) == list(
        inspect.signature(upstream).parameters
    )
