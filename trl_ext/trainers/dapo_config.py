"""DAPOConfig: GRPOConfig with DAPO's defaults plus dynamic sampling and overlong shaping."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from trl_ext.trainers.common import config_error

_PAPER = "DAPO (Yu et al. 2025, arXiv 2503.14476)"


@dataclass
class DAPOConfig(GRPOConfig):
    """Configuration of [`trl_ext.DAPOTrainer`].

    Changes four GRPOConfig defaults to the DAPO paper's (decoupled clip 0.2 / 0.28, token-level loss, no KL) and
    adds dynamic sampling (section 3.2) and the overlong reward shaping (section 3.4). Everything else, including
    ``mask_truncated_completions`` (the paper's overlong *filtering*), is GRPOConfig's.
    """

    loss_type: str = field(
        default="dapo",
        metadata={"help": f"Token-level policy-gradient loss: average over all tokens of the batch ({_PAPER}, 3.3)."},
    )
    epsilon: float = field(default=0.2, metadata={"help": f"Lower clip range eps_low ({_PAPER}, 3.1: 0.2)."})
    epsilon_high: float | None = field(
        default=0.28,
        metadata={"help": f"Upper clip range eps_high, decoupled from eps_low: clip-higher ({_PAPER}, 3.1: 0.28)."},
    )
    beta: float = field(
        default=0.0,
        metadata={"help": f"KL coefficient; DAPO removes the KL term, the policy may drift from the start ({_PAPER})."},
    )
    dynamic_sampling: bool = field(
        default=True,
        metadata={
            "help": "Train only on prompt groups that get a non-zero advantage (the weighted filter reward of their "
            "scored completions is not all equal), generating more prompts until the "
            f"batch is full ({_PAPER}, 3.2; the ablation's largest single gain, AIME24 42 -> 50)."
        },
    )
    dynamic_sampling_max_rounds: int = field(
        default=10,
        metadata={
            "help": "Most generation rounds per batch (verl's max_num_gen_batches, 10); <= 0 means unlimited. What "
            "happens when the batch is still short is set by `dynamic_sampling_on_exhaustion`."
        },
    )
    dynamic_sampling_on_exhaustion: str = field(
        default="fill",
        metadata={
            "help": "'fill': complete the batch with zero-std groups, warn and count them in "
            "`dapo/filled_zero_std_groups` (they have zero advantage, but their tokens count in the token-mean "
            "normaliser, so they dilute the kept groups' gradient); 'error': raise, as verl does."
        },
    )
    dynamic_sampling_reward_funcs: list[str] | None = field(
        default=None,
        metadata={
            "help": "Names of the reward functions whose weighted sum decides whether a group is kept (default: "
            "all except the overlong shaping reward, so that length noise cannot make every group look varied)."
        },
    )
    overlong_buffer_len: int = field(
        default=0,
        metadata={
            "help": "Soft overlong punishment: when > 0 the trainer adds the reward "
            "min(-(L - (L_max - buffer)) / buffer * factor, 0) on completion length L ("
            f"{_PAPER}, 3.4, eq. 13; the paper uses 4096 of 20480 tokens). 0 disables it."
        },
    )
    overlong_penalty_factor: float = field(
        default=1.0,
        metadata={"help": f"Largest overlong penalty, reached at max_completion_length ({_PAPER}: 1.0)."},
    )

    def __post_init__(self):
        self._validate()  # this config's fields first: GRPOConfig's checks would report some in GRPO's terms
        if isinstance(self.dynamic_sampling_reward_funcs, str):  # from the command line / YAML
            self.dynamic_sampling_reward_funcs = [s for s in self.dynamic_sampling_reward_funcs.split(",") if s]
        super().__post_init__()

    def _validate(self):
        """Raise ``config_error`` (field, value given, fix) for the first invalid DAPO setting."""
        if self.dynamic_sampling and self.num_generations is not None and self.num_generations < 2:
            raise config_error(
                "dynamic_sampling needs num_generations >= 2",
                "Raise num_generations or set dynamic_sampling=False.",
                reason="a group of one completion is always 'all equal'",
                num_generations=self.num_generations,
            )
        if self.dynamic_sampling:
            batch_wide = {}
            if self.scale_rewards == "batch":
                batch_wide["scale_rewards"] = self.scale_rewards
            if self.multi_objective_aggregation == "normalize_then_sum":
                batch_wide["multi_objective_aggregation"] = self.multi_objective_aggregation
            if batch_wide:
                raise config_error(
                    "with dynamic_sampling, scale_rewards and multi_objective_aggregation must normalise within each group",
                    "Use scale_rewards='group' (or 'none') with multi_objective_aggregation='sum_then_normalize', or "
                    "set dynamic_sampling=False.",
                    reason="normalising over the whole generation round would let the round's dropped groups shape "
                    "the kept groups' advantages (the same group would get a different advantage in another round)",
                    **batch_wide,
                )
        eps_high = self.epsilon if self.epsilon_high is None else self.epsilon_high
        if eps_high < self.epsilon:
            raise config_error(
                "epsilon_high must be >= epsilon for DAPO's clip-higher",
                "Use the paper's epsilon=0.2, epsilon_high=0.28.",
                epsilon=self.epsilon,
                epsilon_high=eps_high,
            )
        if self.dynamic_sampling_on_exhaustion not in ("fill", "error"):
            raise config_error(
                "dynamic_sampling_on_exhaustion must be 'fill' or 'error'",
                "Use 'fill' (complete the batch with zero-std groups, the default) or 'error' (raise, as verl does).",
                dynamic_sampling_on_exhaustion=self.dynamic_sampling_on_exhaustion,
            )
        if self.overlong_buffer_len < 0:
            raise config_error(
                "overlong_buffer_len must be >= 0",
                "Use 0 to disable the overlong penalty.",
                overlong_buffer_len=self.overlong_buffer_len,
            )
        if self.overlong_buffer_len > 0 and self.overlong_buffer_len >= (self.max_completion_length or 0):
            raise config_error(
                "overlong_buffer_len must be smaller than max_completion_length",
                "Lower overlong_buffer_len (the paper: 4096 of 20480) or raise max_completion_length.",
                reason="the penalty starts at max_completion_length - overlong_buffer_len",
                overlong_buffer_len=self.overlong_buffer_len,
                max_completion_length=self.max_completion_length,
            )
        if self.overlong_penalty_factor < 0:
            raise config_error(
                "overlong_penalty_factor must be >= 0",
                "Use 1.0 (the paper's) or 0 to disable the penalty.",
                overlong_penalty_factor=self.overlong_penalty_factor,
            )
