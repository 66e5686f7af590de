"""``GSPOConfig``: TRL's ``GRPOConfig`` with the defaults of the GSPO paper (Zheng et al. 2025, arXiv 2507.18071).

TRL 1.16 computes GSPO's sequence ratio with ``importance_sampling_level="sequence"``, but its other defaults are wrong
for GSPO: ``loss_type="dapo"`` weights sequences by their length (TRL issue #3823), ``epsilon=0.2`` is a token-level
clip range (the paper clips the sequence ratio to [1 - 3e-4, 1 + 4e-4]), and one optimizer step per rollout batch means
the ratio is always 1 and the clip never acts (the paper splits each rollout batch into 4 minibatch updates).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from trl import GRPOConfig

from trl_ext.trainers.common import config_error

PAPER = "GSPO paper (Zheng et al. 2025, arXiv 2507.18071)"
# Loss types whose aggregation weights a sequence by its number of tokens (or, for cispo/vespo, that are other
# objectives aggregated that way): GSPO's objective is a mean over sequences of a length-normalised ratio.
LENGTH_WEIGHTED_LOSS_TYPES = ("dapo", "bnpo", "dr_grpo", "luspo", "cispo", "vespo")
TOKEN_LEVEL_CLIP_THRESHOLD = 0.01


@dataclass
class GSPOConfig(GRPOConfig):
    """Configuration for :class:`trl_ext.GSPOTrainer`; every ``GRPOConfig`` argument is accepted.

    Changed defaults: ``importance_sampling_level="sequence"``, ``loss_type="grpo"``, ``epsilon=3e-4``,
    ``epsilon_high=4e-4``, ``beta=0.0``, and ``steps_per_generation = num_minibatches * gradient_accumulation_steps``
    (``num_minibatches=4``) unless ``steps_per_generation`` or ``generation_batch_size`` is given.
    """

    importance_sampling_level: str = field(
        default="sequence",
        metadata={
            "help": f"Must be 'sequence' for GSPO: one importance ratio per sequence, the geometric mean of its token "
            f"ratios, s_i = exp(mean_t(logp - logp_old)) ({PAPER}, Eq. 7). With per-token advantages of shape (B, T) "
            "the trainer uses GSPO-token (Eq. 13) automatically."
        },
    )
    loss_type: str = field(
        default="grpo",
        metadata={
            "help": f"Loss aggregation. GSPO averages over sequences ({PAPER}, Eq. 5): only 'grpo' (per-sequence token "
            "mean, then mean over sequences) gives that; length-weighted types ('dapo', 'bnpo', 'dr_grpo', 'luspo', "
            "'cispo', 'vespo') are rejected (TRL issue #3823)."
        },
    )
    epsilon: float = field(
        default=3e-4,
        metadata={
            "help": f"Lower clip range of the sequence ratio: clip(s_i, 1 - epsilon, 1 + epsilon_high). {PAPER} uses "
            "3e-4; token-level values such as 0.2 are far too wide for a length-normalised ratio and never clip."
        },
    )
    epsilon_high: float | None = field(
        default=4e-4,
        metadata={"help": f"Upper clip range of the sequence ratio. {PAPER} uses 4e-4."},
    )
    beta: float = field(
        default=0.0,
        metadata={
            "help": f"KL coefficient. {PAPER} trains without a KL penalty (0.0), so no reference model is loaded."
        },
    )
    num_minibatches: int = field(
        default=4,
        metadata={
            "help": f"Minibatch (optimizer) updates per rollout batch when neither `steps_per_generation` nor "
            f"`generation_batch_size` is set: steps_per_generation = num_minibatches * gradient_accumulation_steps. "
            f"{PAPER} splits each rollout batch into 4 minibatches; with 1 the policy is always on-policy, s_i = 1, "
            "and the clip never acts."
        },
    )

    def __post_init__(self):
        self._validate()  # this config's fields first: GRPOConfig's checks would report some in GRPO's terms
        # None on both means "not set by the user" (GRPOConfig.__post_init__ would otherwise default
        # steps_per_generation to gradient_accumulation_steps, i.e. one optimizer step per rollout batch).
        if self.steps_per_generation is None and self.generation_batch_size is None:
            self.steps_per_generation = self.num_minibatches * self.gradient_accumulation_steps
        super().__post_init__()

    def _validate(self):
        """Raise ``config_error`` (field, value given, fix) for the first invalid GSPO setting; warn about a clip range
        that looks token-level."""
        if self.importance_sampling_level != "sequence":
            raise config_error(
                "importance_sampling_level must be 'sequence' for GSPO",
                "Leave importance_sampling_level='sequence' (the default), or use trl.GRPOConfig for token-level "
                "ratios.",
                importance_sampling_level=self.importance_sampling_level,
            )
        if self.loss_type in LENGTH_WEIGHTED_LOSS_TYPES:
            raise config_error(
                "loss_type must average over sequences for GSPO",
                "Use loss_type='grpo' (the GSPOConfig default) or leave it unset.",
                reason="it weights each sequence by its length, but GSPO's objective is a mean over sequences (TRL "
                "issue #3823)",
                loss_type=self.loss_type,
            )
        if self.num_minibatches < 1:
            raise config_error(
                "num_minibatches must be >= 1",
                "Use 4 (the paper's) or 1 for one optimizer step per rollout batch.",
                num_minibatches=self.num_minibatches,
            )
        epsilon_high = self.epsilon if self.epsilon_high is None else self.epsilon_high
        if self.loss_type != "sapo" and max(self.epsilon, epsilon_high) > TOKEN_LEVEL_CLIP_THRESHOLD:
            warnings.warn(
                f"GSPO clip range epsilon={self.epsilon}, epsilon_high={epsilon_high} looks like a token-level value: "
                f"the sequence ratio is a geometric mean and stays close to 1, so it will almost never clip. {PAPER} "
                "uses epsilon=3e-4, epsilon_high=4e-4.",
                UserWarning,
                stacklevel=4,
            )
