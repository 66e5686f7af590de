"""Configuration of ``trl_ext.PPOTrainer``: GRPOConfig plus the PPO/GAE/critic settings.

Defaults and their sources (see docs/ppo.md): PPO (Schulman et al. 2017), GAE (Schulman et al. 2015), KL-shaped
rewards and the adaptive KL controller (Ziegler et al. 2019; Ouyang et al. 2022), and the defaults of TRL 1.12's
``PPOConfig`` (the last TRL release with PPO) and verl's ``ppo_trainer.yaml``.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field

from trl import GRPOConfig


@contextmanager
def one_generation_accepted_by_grpo(config):
    """While inside, ``config.num_generations == 1`` passes GRPOConfig's "at least 2 generations" check.

    ``GRPOConfig.__post_init__`` raises when ``num_generations < 2``: GRPO normalises rewards within groups of
    completions of the same prompt, and a group of one has no spread. PPO's critic needs no groups, so 1 is its
    default. Only while the caller runs GRPOConfig's validation, ``num_generations`` is an ``int`` whose ``< 2``
    is False; every other use (the divisibility of the generation and eval batches, arithmetic) sees the real value,
    and the plain ``int`` is restored on exit, also on error. ``tests/test_ppo_upstream.py`` pins TRL's check: if it
    is removed this is dead code, if it is written another way (``<= 1``) ``PPOConfig()`` fails loudly.
    """

    class GroupFreeCount(int):
        def __lt__(self, other):
            return False if other == 2 else int(self) < other

    single = config.num_generations is not None and config.num_generations == 1
    if single:
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
        self._validate_ppo()
        with one_generation_accepted_by_grpo(self):
            super().__post_init__()

    def _validate_ppo(self):
        def check(ok, message):
            if not ok:
                raise ValueError(message)

        check(
            self.num_generations is not None and self.num_generations >= 1,
            f"num_generations must be >= 1 (got {self.num_generations}); PPO needs no groups, use 1.",
        )
        check(0.0 <= self.gamma <= 1.0, f"gamma must be in [0, 1] (got {self.gamma}); 1.0 is the usual LLM value.")
        check(0.0 <= self.lam <= 1.0, f"lam must be in [0, 1] (got {self.lam}); use 0.95 (TRL 1.12) or 1.0 (verl).")
        check(self.kl_coef >= 0.0, f"kl_coef must be >= 0 (got {self.kl_coef}); use 0 to disable the KL penalty.")
        check(
            self.kl_estimator in ("k1", "k3"),
            f"kl_estimator must be 'k1' or 'k3' (got {self.kl_estimator!r}).",
        )
        check(
            self.kl_target is None or self.kl_target > 0,
            f"kl_target must be > 0 or None (got {self.kl_target}); None keeps kl_coef fixed.",
        )
        check(
            self.kl_target is None or self.kl_coef > 0,
            "kl_target (adaptive KL) needs a positive initial kl_coef: a multiplicative controller cannot leave 0.",
        )
        check(self.kl_horizon > 0, f"kl_horizon must be > 0 (got {self.kl_horizon}); verl uses 10000.")
        check(
            self.cliprange_value > 0,
            f"cliprange_value must be > 0 (got {self.cliprange_value}); use a large value to disable clipping.",
        )
        check(self.vf_coef > 0, f"vf_coef must be > 0 (got {self.vf_coef}): the critic would never learn.")
        check(
            self.critic_learning_rate is None or self.critic_learning_rate > 0,
            f"critic_learning_rate must be > 0 or None (got {self.critic_learning_rate}).",
        )
        check(
            self.critic_warmup_steps >= 0,
            f"critic_warmup_steps must be >= 0 (got {self.critic_warmup_steps}).",
        )
        fsdp_env = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true", "yes")
        check(
            not (self.fsdp or fsdp_env),
            "PPOTrainer does not support FSDP: the critic is called outside the policy's root FSDP forward, so its "
            "sharded parameters would not be gathered. Use DeepSpeed ZeRO-2 or ZeRO-3 instead "
            "(accelerate launch --config_file accelerate_configs/zero3.yaml ...).",
        )
        check(
            self.importance_sampling_level == "token",
            "PPO uses per-token advantages; set importance_sampling_level='token' (the sequence-level ratio of GSPO "
            "does not match GAE advantages).",
        )
