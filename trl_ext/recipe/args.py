"""Script arguments of the recipes (the first dataclass given to ``TrlParser``) and the reward-function registry.

Field names must not clash with the fields of the TRL configs or ``ModelConfig`` (``HfArgumentParser`` would refuse
the duplicate option), hence ``dataset_source`` / ``dataset_seed`` / ``eval_*`` rather than ``seed`` or ``limit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl_ext.data.gsm8k import DEFAULT_INSTRUCTION

# Name -> factory(script_args, training_args) -> reward function. Factories, so that a reward that needs settings
# (the overlong penalty needs max_completion_length) is built from the run's own arguments.
REWARD_FUNCS = {
    "accuracy": lambda s, t: _rewards().accuracy_reward,
    "accuracy_flexible": lambda s, t: _rewards().accuracy_flexible_reward,
    "format": lambda s, t: _rewards().format_reward,
    "overlong": lambda s, t: _rewards().make_overlong_reward(
        t.max_completion_length,
        s.overlong_reward_buffer_len or max(1, t.max_completion_length // 4),
        s.overlong_reward_penalty_factor,
    ),
}


def _rewards():
    import trl_ext.rewards as rewards

    return rewards


def check_reward_names(names) -> list[str]:
    """The names as a list; ``ValueError`` naming the unknown ones and listing the known ones."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise ValueError(f"reward_funcs is empty; choose one or more of {sorted(REWARD_FUNCS)}")
    unknown = [n for n in names if n not in REWARD_FUNCS and ":" not in n]
    if unknown:
        raise ValueError(
            f"unknown reward function name(s) {unknown} in reward_funcs; known names: {sorted(REWARD_FUNCS)} "
            "(or 'package.module:function' for your own reward function)"
        )
    return list(names)


def _import_reward(spec: str):
    import importlib

    module_name, _, attr = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"reward function {spec!r} could not be imported: {err}") from err
    if not callable(func):
        raise ValueError(f"reward function {spec!r} is not callable")
    return func


def get_reward_funcs(names, script_args=None, training_args=None) -> list:
    """Reward functions for a list of registry names; a clear ``ValueError`` for an unknown one.

    Each function runs under the error policy of ``trl_ext.rewards.guard`` (a raising or NaN sample scores None and is
    counted in ``rewards/<fn>/errors``; a wrong number of values stops the run with a message naming the function).
    """
    from trl_ext.rewards.guard import guard_reward

    names = check_reward_names(names)
    funcs = [REWARD_FUNCS[n](script_args, training_args) if n in REWARD_FUNCS else _import_reward(n) for n in names]
    return [guard_reward(f) for f in funcs]


@dataclass
class RecipeScriptArguments:
    """Data, evaluation and bookkeeping settings shared by every recipe."""

    dataset_source: str = field(
        default="synthetic",
        metadata={
            "help": "GSM8K source: hub id ('openai/gsm8k'), a local directory with <split>*.jsonl "
            "(e.g. ../shared/data/gsm8k), or 'synthetic' (the embedded CPU testbed)."
        },
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Split used for training."})
    dataset_test_split: str = field(default="test", metadata={"help": "Held-out split for the before/after eval."})
    num_train_examples: int | None = field(
        default=None,
        metadata={"help": "Training questions (synthetic: how many to generate, default 5000; real data: first N)."},
    )
    dataset_seed: int = field(default=0, metadata={"help": "Seed of the synthetic testbed."})
    instruction: str | None = field(
        default=DEFAULT_INSTRUCTION, metadata={"help": "Appended to each question (default: verl's GSM8K suffix)."}
    )
    system_prompt: str | None = field(default=None, metadata={"help": "Optional system message."})
    max_prompt_length: int | None = field(
        default=512,
        metadata={
            "help": "Longest training prompt in tokens, chat template included (TRL 1.16's trainers no longer truncate "
            "prompts: one long prompt would cost memory on every step). Checked before the model loads; None: no check."
        },
    )
    long_prompts: str = field(
        default="error",
        metadata={"help": "Prompts over max_prompt_length: 'error' (stop, naming the row) or 'drop' (train without "
                  "them, logging how many)."},
    )
    eval_before: bool = field(default=True, metadata={"help": "Evaluate the start model on the held-out split."})
    eval_before_cache: bool = field(
        default=True,
        metadata={"help": "Reuse the start model's evaluation when the same model files were evaluated with the same "
                  "settings before ($TRL_EXT_CACHE/evaluations); false: evaluate it again."},
    )
    eval_after: bool = field(default=True, metadata={"help": "Evaluate the trained model on the held-out split."})
    eval_limit: int | None = field(default=200, metadata={"help": "Held-out problems to evaluate (None: all)."})
    eval_max_new_tokens: int = field(default=256, metadata={"help": "Generation budget of the evaluation."})
    eval_batch_size: int = field(default=64, metadata={"help": "Prompts per generate() call in the evaluation."})
    eval_num_samples: int = field(
        default=4,
        metadata={
            "help": "Besides the greedy evaluation, sample this many completions per held-out problem at "
            "eval_temperature and report mean@k / pass@k / maj@k (0 or 1: greedy only)."
        },
    )
    eval_temperature: float = field(default=1.0, metadata={"help": "Temperature of the sampled evaluation."})
    max_samples: int | None = field(
        default=None,
        metadata={
            "help": "Training budget in samples (completions generated, discarded ones included). Online RL: "
            "max_steps is set to train on whole rollouts until this many were generated, and training stops at the "
            "end of the first optimizer step at which this many were generated and the last rollout is used up "
            "(earlier for DAPO, whose refills count); DPO and RFT spend it before training, sampling k completions "
            "for max_samples // k training questions. None: no sample budget."
        },
    )
    max_train_seconds: float | None = field(
        default=None,
        metadata={"help": "Training budget in wall-clock seconds (accuracy-curve evaluations excluded); None: none."},
    )
    eval_curve_steps: int = field(
        default=0,
        metadata={
            "help": "Greedy accuracy on eval_curve_split every N optimizer steps, at the start and at the end of "
            "training, logged to the history as curve/strict, curve/flexible (with samples and training seconds). "
            "0: off (on GPUs each point costs a generation pass over eval_curve_limit problems)."
        },
    )
    eval_curve_points: int = field(
        default=0,
        metadata={
            "help": "Instead of eval_curve_steps: about this many accuracy-curve evaluations spread evenly over "
            "max_steps (as the samples budget sets it), besides the one at the start. 0: use eval_curve_steps."
        },
    )
    eval_curve_limit: int = field(default=100, metadata={"help": "Problems of each accuracy-curve evaluation."})
    eval_curve_split: str = field(
        default="validation",
        metadata={"help": "Split of the accuracy curve: 'validation' is carved from the training problems."},
    )
    eval_backend: str = field(
        default="hf",
        metadata={
            "help": "'hf' (batched generate), 'vllm' or 'auto'. 'hf' is the safe default: a second vLLM engine in "
            "the main process would compete for GPU memory with the trainer's colocated one."
        },
    )

    def __post_init__(self):
        if self.eval_backend not in ("hf", "vllm", "auto"):
            raise ValueError(f"eval_backend must be 'hf', 'vllm' or 'auto', got {self.eval_backend!r}")
        if self.eval_num_samples < 0:
            raise ValueError(f"eval_num_samples must be >= 0, got {self.eval_num_samples}")
        if self.eval_num_samples > 1 and self.eval_temperature <= 0:
            raise ValueError(f"eval_temperature must be > 0 for a sampled evaluation, got {self.eval_temperature}")
        if self.eval_limit is not None and self.eval_limit < 1:
            raise ValueError(f"eval_limit must be >= 1 or None, got {self.eval_limit}")
        if self.long_prompts not in ("error", "drop"):
            raise ValueError(f"long_prompts must be 'error' or 'drop', got {self.long_prompts!r}")
        if self.max_prompt_length is not None and self.max_prompt_length < 1:
            raise ValueError(f"max_prompt_length must be >= 1 or None, got {self.max_prompt_length}")
        if self.max_samples is not None and self.max_samples < 1:
            raise ValueError(f"max_samples must be >= 1 or None, got {self.max_samples}")
        if self.max_train_seconds is not None and self.max_train_seconds <= 0:
            raise ValueError(f"max_train_seconds must be > 0 or None, got {self.max_train_seconds}")
        if self.eval_curve_points < 0:
            raise ValueError(f"eval_curve_points must be >= 0, got {self.eval_curve_points}")
        if self.eval_curve_points and self.eval_curve_steps:
            raise ValueError(f"give eval_curve_steps ({self.eval_curve_steps}) or eval_curve_points "
                             f"({self.eval_curve_points}), not both")
        if self.eval_curve_steps < 0 or self.eval_curve_limit < 1:
            raise ValueError(f"eval_curve_steps must be >= 0 and eval_curve_limit >= 1, got {self.eval_curve_steps} "
                             f"and {self.eval_curve_limit}")
        if self.num_train_examples is not None and self.num_train_examples < 1:
            raise ValueError(f"num_train_examples must be >= 1 or None, got {self.num_train_examples}")

    def dataset_kwargs(self) -> dict:
        return {"instruction": self.instruction, "system_prompt": self.system_prompt, "seed": self.dataset_seed}


@dataclass
class RLScriptArguments(RecipeScriptArguments):
    """Script arguments of the online RL recipes (GRPO, DAPO, GSPO, PPO)."""

    reward_funcs: list[str] = field(
        default_factory=lambda: ["accuracy"],
        metadata={
            "help": f"Reward functions by name ({sorted(REWARD_FUNCS)}) or import path 'package.module:function'; "
            "weights: reward_weights."
        },
    )
    overlong_reward_buffer_len: int | None = field(
        default=None,
        metadata={
            "help": "Buffer of the 'overlong' reward (default max_completion_length // 4). DAPO has its own "
            "built-in overlong shaping (DAPOConfig.overlong_buffer_len); do not use both."
        },
    )
    overlong_reward_penalty_factor: float = field(
        default=1.0, metadata={"help": "Penalty factor of the 'overlong' reward."}
    )

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.reward_funcs, str):
            self.reward_funcs = [n.strip() for n in self.reward_funcs.split(",") if n.strip()]
        check_reward_names(self.reward_funcs)


@dataclass
class DPOScriptArguments(RecipeScriptArguments):
    """Script arguments of the DPO recipe: how the on-policy preference pairs are sampled and cached."""

    dpo_num_samples: int = field(default=4, metadata={"help": "Completions sampled per training question (k)."})
    dpo_temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of the pair sampler."})
    dpo_max_new_tokens: int | None = field(
        default=None, metadata={"help": "Generation budget of the pair sampler (default: eval_max_new_tokens)."}
    )
    dpo_max_pairs_per_question: int = field(
        default=1, metadata={"help": "Most (correct, incorrect) pairs built from one question's samples."}
    )
    dpo_chosen_fallback: str = field(
        default="none",
        metadata={
            "help": "'none': questions with no correct sample give no pair (counted and reported); 'reference': "
            "use the reference solution as the chosen answer for them (off-policy chosen, on-policy rejected)."
        },
    )
    dpo_sample_batch_size: int = field(default=64, metadata={"help": "Sequences per generate() call when sampling."})
    dpo_sample_chunk_size: int = field(
        default=256,
        metadata={"help": "Questions per sampling chunk: chunks are shared out over all ranks and saved as they finish, "
                  "so a killed run resumes from the last finished chunk."},
    )
    dpo_sample_backend: str = field(default="hf", metadata={"help": "'hf', 'vllm' or 'auto' for the pair sampler."})
    dpo_pairs_cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where pair datasets are cached (default: $TRL_EXT_CACHE/dpo_pairs, ~/.cache/trl_ext)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.dpo_num_samples < 2:
            raise ValueError(f"dpo_num_samples must be >= 2 to find a correct and an incorrect sample, got {self.dpo_num_samples}")
        if self.dpo_chosen_fallback not in ("none", "reference"):
            raise ValueError(f"dpo_chosen_fallback must be 'none' or 'reference', got {self.dpo_chosen_fallback!r}")
        if self.dpo_sample_chunk_size < 1:
            raise ValueError(f"dpo_sample_chunk_size must be >= 1, got {self.dpo_sample_chunk_size}")
        if self.dpo_max_pairs_per_question < 1:
            raise ValueError(f"dpo_max_pairs_per_question must be >= 1, got {self.dpo_max_pairs_per_question}")
        if self.dpo_sample_backend not in ("hf", "vllm", "auto"):
            raise ValueError(f"dpo_sample_backend must be 'hf', 'vllm' or 'auto', got {self.dpo_sample_backend!r}")
