"""Configuration of ``trl_ext.PPOTrainer``: GRPOConfig plus the PPO/GAE/critic settings.

Defaults and their sources (see docs/ppo.md): PPO (Schulman et al. 2017), GAE (Schulman et al. 2015), KL-shaped
rewards and the adaptive KL controller (Ziegler et al. 2019; Ouyang et al. 2022), and the defaults of TRL 1.12's
``PPOConfig`` (the last TRL release with PPO) and verl's ``ppo_trainer.yaml``. Validation follows the structure of
every trl_ext config: ``_validate()`` of the own fields (errors from ``config_error``), then GRPOConfig's, here inside
``one_generation_accepted_by_grpo``, the one workaround of a GRPOConfig check.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field

from trl import GRPOConfig

from trl_ext.trainers.common import config_error


@contextmanager
def one_generation_accepted_by_grpo(config):
    """While inside, ``config.num_generations == 1`` passes GRPOConfig's "at least 2 generations" check.

    ``GRPOConfig.__post_init__`` raises when ``num_generations < 2``: GRPO normalises rewards within groups of
    completions of the same prompt, and a group of one has no spread. PPO's critic needs no groups, so 1 is its
    default. Only while the caller runs GRPOConfig's validation, ``num_generations`` is an ``int`` whose ``< 2``
    is False; every other use (the divisibility of the generation and eval batches, arithmetic) sees the real value,
    and the plain ``int`` is restored on exit, also on error. ``tests/trainers/test_ppo_upstream.py`` pins TRL's check:
    if it is removed this is dead code, if it is written another way (``<= 1``) ``PPOConfig()`` fails loudly.
    """

    class GroupFreeCount(int):
        def __lt__(self, other):
            return False if other == 2 else int(self) < other

    if config.num_generations == 1:
        config.num_generations = GroupFreeCount(1)
    try:
        yield
    finally:
        if config.num_generations is not None:
            config.num_generations = int(config.num_generations)


@dataclass
class PPOConfig(GRPOConfig):
    r"""Configuration for [`trl_ext.PPOTrainer`]: PPO with a learned critic and GAE on top of GRPOTrainer's rollout.

    Every [`trl.GRPOConfig`] parameter is accepted. PPO-specific parameters:

    - `gamma`, `lam`: GAE discount and lambda (Schulman et al. 2015).
    - `kl_coef`, `kl_estimator`, `kl_target`, `kl_horizon`: KL(pi_old || pi_ref) penalty per token *in the reward*
      (Ziegler et al. 2019; Ouyang et al. 2022), fixed or adaptive.
    - `cliprange_value`, `vf_coef`: clipped value loss and its weight; the policy's clip range is `epsilon`.
    - `value_model_name_or_path`, `critic_learning_rate`, `critic_warmup_steps`: the critic.
    - `whiten_advantages`: normalise the GAE advantages over the valid tokens of the global batch.

    Defaults changed from GRPOConfig: `num_generations=1` (PPO needs no groups of completions). `beta` (TRL's KL
    term *in the loss*) stays 0: PPO puts the KL in the reward.
    """

    num_generations: int | None = field(
        default=1,
        metadata={
            "help": "Completions sampled per prompt. PPO estimates advantages with a critic, so 1 (the default) is "
            "enough; larger values are allowed and each completion is still treated independently."
        },
    )
    beta: float = field(
        default=0.0,
        metadata={
            "help": "KL coefficient *in the loss* (TRL's GRPO term). Keep 0.0 for PPO, which penalises KL in the "
            "reward through `kl_coef` (Ouyang et al. 2022, eq. 2)."
        },
    )
    gamma: float = field(
        default=1.0,
        metadata={
            "help": "Discount factor of GAE (Schulman et al. 2015). 1.0 in TRL 1.12 and verl: the reward comes once "
            "per episode, at its end."
        },
    )
    lam: float = field(
        default=0.95,
        metadata={
            "help": "GAE lambda (Schulman et al. 2015): 1.0 gives Monte-Carlo returns minus values, 0.0 one-step TD. "
            "0.95 in TRL 1.12, 1.0 in verl."
        },
    )
    kl_coef: float = field(
        default=0.05,
        metadata={
            "help": "Coefficient of the per-token KL(pi_old || pi_ref) penalty subtracted from the reward "
            "(Ziegler et al. 2019; Ouyang et al. 2022). 0.05 in TRL 1.12, 0.001 in verl. 0 disables the reference "
            "model. With `kl_target` set, this is the initial value of the adaptive coefficient."
        },
    )
    kl_estimator: str = field(
        default="k1",
        metadata={
            "help": "Per-token KL estimator in the reward: 'k1' (log-ratio; TRL 1.12 and verl default) or 'k3' "
            "(exp(-x) + x - 1, always non-negative; Schulman 2020)."
        },
    )
    kl_target: float | None = field(
        default=None,
        metadata={
            "help": "Target KL of the adaptive KL controller (Ziegler et al. 2019), as a per-token mean: each "
            "sequence's mean KL per completion token, averaged over sequences (the unit of verl's 0.1 and of the "
            "logged `ppo/kl`). None (default) keeps `kl_coef` fixed, as TRL 1.12 and verl do by default."
        },
    )
    kl_horizon: float = field(
        default=10000,
        metadata={"help": "Horizon (in sequences) of the adaptive KL controller (Ziegler et al. 2019; verl: 10000)."},
    )
    cliprange_value: float = field(
        default=0.2,
        metadata={
            "help": "Clip range of the value loss around the rollout values (Schulman et al. 2017 / baselines "
            "ppo2). 0.2 in TRL 1.12, 0.5 in verl. The policy clip range is `epsilon` (0.2, Schulman et al. 2017)."
        },
    )
    vf_coef: float = field(
        default=0.1,
        metadata={"help": "Weight of the value loss in the total loss (Schulman et al. 2017, eq. 9). 0.1 in TRL 1.12."},
    )
    value_model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Checkpoint to initialise the critic from. None (default): the policy's checkpoint with a fresh "
            "zero-initialised scalar head (as verl and Ouyang et al. 2022 initialise the critic from a trained "
            "model). A reward-model (sequence-classification) checkpoint also works: its score head is reused."
        },
    )
    critic_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the critic. None (default): `learning_rate`, as in TRL 1.12 (one optimizer for "
            "policy and value model). verl uses 1e-5 for the critic and 1e-6 for the actor."
        },
    )
    whiten_advantages: bool = field(
        default=True,
        metadata={"help": "Whiten the GAE advantages over the valid tokens of the global batch (TRL 1.12, verl)."},
    )
    critic_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "Optimizer steps at the start during which only the critic learns (the policy loss is zeroed); "
            "verl's `critic_warmup` (default 0)."
        },
    )

    def __post_init__(self):
        self._validate()  # this config's fields first: GRPOConfig's checks would report some in GRPO's terms
        with one_generation_accepted_by_grpo(self):
            super().__post_init__()

    def _validate(self):
        """Raise ``config_error`` (field, value given, fix) for the first invalid PPO setting. Each condition says
        what is valid (``not x > 0``), so that NaN is rejected too."""
        if self.num_generations is None or not self.num_generations >= 1:
            raise config_error(
                "num_generations must be >= 1", "Use 1: PPO needs no groups.", num_generations=self.num_generations
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise config_error("gamma must be in [0, 1]", "Use 1.0, the usual value for LLMs.", gamma=self.gamma)
        if not 0.0 <= self.lam <= 1.0:
            raise config_error("lam must be in [0, 1]", "Use 0.95 (TRL 1.12) or 1.0 (verl).", lam=self.lam)
        if not self.kl_coef >= 0.0:
            raise config_error("kl_coef must be >= 0", "Use 0 to disable the KL penalty.", kl_coef=self.kl_coef)
        if self.kl_estimator not in ("k1", "k3"):
            raise config_error(
                "kl_estimator must be 'k1' or 'k3'",
                "Use 'k1' (log-ratio, the default) or 'k3' (always >= 0).",
                kl_estimator=self.kl_estimator,
            )
        if self.kl_target is not None and not self.kl_target > 0:
            raise config_error(
                "kl_target must be > 0 or None", "Use None to keep kl_coef fixed.", kl_target=self.kl_target
            )
        if self.kl_target is not None and not self.kl_coef > 0:
            raise config_error(
                "kl_target (adaptive KL) needs a positive initial kl_coef",
                "Set kl_coef > 0 (e.g. 0.05) or kl_target=None.",
                reason="a multiplicative controller cannot leave 0",
                kl_target=self.kl_target,
                kl_coef=self.kl_coef,
            )
        if not self.kl_horizon > 0:
            raise config_error("kl_horizon must be > 0", "verl uses 10000.", kl_horizon=self.kl_horizon)
        if not self.cliprange_value > 0:
            raise config_error(
                "cliprange_value must be > 0",
                "Use a large value to disable clipping.",
                cliprange_value=self.cliprange_value,
            )
        if not self.vf_coef > 0:
            raise config_error(
                "vf_coef must be > 0",
                "Use 0.1 (TRL 1.12).",
                reason="the critic would never learn",
                vf_coef=self.vf_coef,
            )
        if self.critic_learning_rate is not None and not self.critic_learning_rate > 0:
            raise config_error(
                "critic_learning_rate must be > 0 or None",
                "Use None for learning_rate, or e.g. 1e-5 (verl).",
                critic_learning_rate=self.critic_learning_rate,
            )
        if not self.critic_warmup_steps >= 0:
            raise config_error(
                "critic_warmup_steps must be >= 0",
                "Use 0 for no warm-up.",
                critic_warmup_steps=self.critic_warmup_steps,
            )
        fsdp_env = os.environ.get("ACCELERATE_USE_FSDP", "false")
        if self.fsdp or fsdp_env.lower() in ("1", "true", "yes"):
            raise config_error(
                "PPOTrainer does not support FSDP: fsdp must be unset and ACCELERATE_USE_FSDP false",
                "Use DeepSpeed ZeRO-2 or ZeRO-3 instead (accelerate launch --config_file accelerate_configs/zero3.yaml "
                "...).",
                reason="the critic is called outside the policy's root FSDP forward, so its sharded parameters would "
                "not be gathered",
                fsdp=self.fsdp,
                ACCELERATE_USE_FSDP=fsdp_env,
            )
        if self.importance_sampling_level != "token":
            raise config_error(
                "importance_sampling_level must be 'token' for PPO",
                "Set importance_sampling_level='token' (the default).",
                reason="GAE's per-token advantages do not match GSPO's sequence-level ratio",
                importance_sampling_level=self.importance_sampling_level,
            )
