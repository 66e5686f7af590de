"""The algorithm table: one entry per recipe algorithm, owned by the package.

Everything that needs to know "which script arguments, config and trainer belong to DAPO" reads this table: the
generic recipe program (``trl_ext.recipe.train.main``), the ``trl-ext`` command line, the tests, the benchmarks and the
comparison. Classes are named as ``"module:Class"`` strings and imported on first use, so importing this module (and
``trl_ext.recipe``) imports neither torch nor trl.

Adding an algorithm = one ``Algorithm`` entry here + ``<name>.yaml`` in ``trl_ext/configs/recipes/embedded/`` (and in
each ``gsm8k/<model>/`` folder; a control needs only the embedded one) + a ``recipes/<name>_math.py`` script that
calls ``main("<name>")``; ``tests/recipe/test_recipes.py`` checks that all three exist for every entry.

The table holds two families (``Algorithm.family``): the five algorithms of the mission (PPO, DPO, GRPO, DAPO, GSPO;
the headline of the comparison, first in the table) and members of TRL's own family (``"trl"``: RLOO and GRPO loss
variants), each a stock TRL trainer and config with a paper's settings in its YAMLs (docs/family.md), then the SFT
control.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path

MODEL_CONFIG = "trl:ModelConfig"
FAMILIES = ("mission", "trl")  # Algorithm.family: the mission's five algorithms (and its control), TRL's family


class UnknownAlgorithmError(KeyError):
    """A name that is not in ``ALGORITHMS``; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def load_object(spec: str):
    """Import ``"package.module:Name"`` and return the object."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Algorithm:
    """One recipe algorithm. ``script_args``, ``config``, ``trainer`` and ``training_data`` are ``"module:Name"``
    strings, resolved lazily by the methods of the same name without ``_spec``."""

    name: str  # "dapo": the recipe is recipes/dapo_math.py, the config embedded/dapo.yaml
    description: str  # one line
    script_args_spec: str  # first dataclass of the TrlParser
    config_spec: str  # the trainer's config class
    trainer_spec: str  # the trainer class
    training_data_spec: str  # function(run) -> the trainer's train_dataset (RL: prompts; DPO: on-policy pairs)
    default_config: str  # shipped recipe config of the no-argument run (trl_ext.configs.resolve_config name)
    paper: str  # where the algorithm and its default settings come from
    changes: str  # what it changes compared with stock trl.GRPOTrainer
    online: bool = True  # an online RL trainer: gets reward_funcs and generates during training
    control: bool = False  # a control of the comparison (SFT), not one of the compared algorithms
    label_arg: str | None = None  # script argument appended to the run's label: sft + --sft_data rft -> "sft-rft"
    family: str = "mission"  # "mission": PPO, DPO, GRPO, DAPO, GSPO (and the SFT control); "trl": TRL's family

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"algorithm {self.name!r}: family must be one of {FAMILIES}, got {self.family!r}")

    # -- the classes ----------------------------------------------------------------------------------------------
    def script_args_class(self) -> type:
        return load_object(self.script_args_spec)

    def config_class(self) -> type:
        return load_object(self.config_spec)

    def trainer_class(self) -> type:
        return load_object(self.trainer_spec)

    def training_data(self):
        """The function ``(RecipeRun) -> Dataset`` that builds the trainer's training data."""
        return load_object(self.training_data_spec)

    def dataclass_types(self) -> tuple[type, type, type]:
        """``(script arguments, config, trl.ModelConfig)``: what the recipe's ``TrlParser`` is built from."""
        return self.script_args_class(), self.config_class(), load_object(MODEL_CONFIG)

    def run_label(self, script_args) -> str:
        """The name a run of this entry reports (``summary.json``'s ``algo``)."""
        return f"{self.name}-{getattr(script_args, self.label_arg)}" if self.label_arg else self.name

    # -- configs --------------------------------------------------------------------------------------------------
    @property
    def script_name(self) -> str:
        return f"{self.name}_math.py"

    def default_config_path(self) -> Path:
        from trl_ext.configs import resolve_config

        return resolve_config(self.default_config, "recipe")

    def config_defaults(self, names=None) -> dict:
        """The config class's dataclass defaults (before ``__post_init__``) of ``names`` (all fields if None).
        Names that are no field of the config class (``num_generations`` for DPO) are left out."""
        defaults = {}
        for f in dataclasses.fields(self.config_class()):
            if names is not None and f.name not in names:
                continue
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory()
        return defaults if names is None else {n: defaults[n] for n in names if n in defaults}

    # -- the trainer ----------------------------------------------------------------------------------------------
    def build_trainer(self, run):
        """The trainer for a ``RecipeRun``: start model, training data, tokenizer, LoRA and quantization from the
        run, reward functions for the online algorithms."""
        kwargs = {"model": run.model_path}  # a path: DPOTrainer builds its frozen reference model from it
        if self.online:
            kwargs["reward_funcs"] = run.reward_funcs
        kwargs.update(
            args=run.training_args,
            train_dataset=self.training_data()(run),
            processing_class=run.tokenizer,
            peft_config=run.peft_config,
            quantization_config=run.quantization_config,
        )
        return self.trainer_class()(**kwargs)


_RL_ARGS = "trl_ext.recipe.args:RLScriptArguments"
_PROMPTS = "trl_ext.recipe.prompts:prompts_for_run"

ALGORITHMS: tuple[Algorithm, ...] = (
    Algorithm(
        name="ppo",
        description="PPO: a learned critic, GAE advantages per token and a KL penalty in the reward, on "
        "GRPOTrainer's rollout",
        script_args_spec=_RL_ARGS,
        config_spec="trl_ext:PPOConfig",
        trainer_spec="trl_ext:PPOTrainer",
        training_data_spec=_PROMPTS,
        default_config="embedded/ppo.yaml",
        paper="Schulman et al. 2017, arXiv 1707.06347 (GAE: arXiv 1506.02438; KL in the reward: Ouyang et al. 2022, "
        "arXiv 2203.02155); defaults from verl's GSM8K PPO",
        changes="adds a value model trained beside the policy; per-token GAE advantages from the reward with the KL "
        "penalty folded in, instead of group-standardised sequence rewards; one completion per prompt",
    ),
    Algorithm(
        name="dpo",
        description="DPO on on-policy pairs: a verified-correct sample of the start model (chosen) against an "
        "incorrect one (rejected)",
        script_args_spec="trl_ext.recipe.args:DPOScriptArguments",
        config_spec="trl:DPOConfig",
        trainer_spec="trl:DPOTrainer",
        training_data_spec="trl_ext.recipe.dpo_pairs:pairs_for_run",
        default_config="embedded/dpo.yaml",
        paper="Rafailov et al. 2023, arXiv 2305.18290 (on-policy pairs as in Iterative RPO, Pang et al. 2024, "
        "arXiv 2404.19733)",
        changes="not online RL: stock trl.DPOTrainer on preference pairs sampled once from the start model before "
        "training (cached), a frozen reference model, no reward calls during training",
        online=False,
    ),
    Algorithm(
        name="grpo",
        description="GRPO with DeepSeekMath's settings (loss_type grpo, beta 0.04, epsilon 0.2)",
        script_args_spec=_RL_ARGS,
        config_spec="trl:GRPOConfig",
        trainer_spec="trl:GRPOTrainer",
        training_data_spec=_PROMPTS,
        default_config="embedded/grpo.yaml",
        paper="Shao et al. 2024 (DeepSeekMath), arXiv 2402.03300",
        changes="nothing: stock trl.GRPOTrainer, the baseline (settings in the YAMLs)",
    ),
    Algorithm(
        name="dapo",
        description="DAPO: clip-higher 0.2/0.28, token-level loss, no KL, dynamic sampling, soft overlong punishment",
        script_args_spec=_RL_ARGS,
        config_spec="trl_ext:DAPOConfig",
        trainer_spec="trl_ext:DAPOTrainer",
        training_data_spec=_PROMPTS,
        default_config="embedded/dapo.yaml",
        paper="Yu et al. 2025, arXiv 2503.14476 (DAPOConfig's defaults are the paper's)",
        changes="decoupled clip range (epsilon_high 0.28), token-level loss, beta 0; dynamic sampling regenerates "
        "until every trained group has non-zero reward variance; the soft overlong punishment in the reward",
    ),
    Algorithm(
        name="gspo",
        description="GSPO: sequence-level importance ratio and clip (3e-4/4e-4), no KL, 4 minibatch updates per "
        "rollout batch",
        script_args_spec=_RL_ARGS,
        config_spec="trl_ext:GSPOConfig",
        trainer_spec="trl_ext:GSPOTrainer",
        training_data_spec=_PROMPTS,
        default_config="embedded/gspo.yaml",
        paper="Zheng et al. 2025, arXiv 2507.18071 (GSPOConfig's defaults are the paper's)",
        changes="the importance ratio and its clip are per sequence (length-normalised), not per token; loss_type "
        "grpo, beta 0; each rollout batch is split into 4 minibatch updates so that the clip acts",
    ),
    Algorithm(
        name="rloo",
        description="RLOO: REINFORCE with the mean reward of the prompt's other completions as baseline "
        "(leave-one-out), KL 0.03 in the reward",
        script_args_spec=_RL_ARGS,
        config_spec="trl:RLOOConfig",
        trainer_spec="trl:RLOOTrainer",
        training_data_spec=_PROMPTS,
        default_config="embedded/rloo.yaml",
        paper="Ahmadian et al. 2024, arXiv 2402.14740 (leave-one-out baseline: Kool et al. 2019, \"Buy 4 REINFORCE "
        "samples, get a baseline for free!\"); beta 0.03 from the paper's training details via TRL's paper index",
        changes="stock trl.RLOOTrainer: advantage = reward - mean reward of the group's other completions (no std "
        "scaling); one importance ratio per sequence (sum of token log-ratios) in the loss; the KL to the reference "
        "is subtracted from the reward per sequence (beta 0.03) instead of added to the loss per token",
        family="trl",
    ),
    Algorithm(
        name="dr_grpo",
        description="Dr. GRPO: GRPO without its length and difficulty biases (loss_type dr_grpo, no std scaling, no "
        "KL)",
        script_args_spec=_RL_ARGS,
        config_spec="trl:GRPOConfig",
        trainer_spec="trl:GRPOTrainer",
        training_data_spec=_PROMPTS,
        default_config="embedded/dr_grpo.yaml",
        paper="Liu et al. 2025, \"Understanding R1-Zero-Like Training: A Critical Perspective\", arXiv 2503.20783",
        changes="stock trl.GRPOTrainer, settings only: token losses summed and divided by a constant "
        "(max_completion_length) instead of each sequence's length, advantages not divided by the group's std "
        "(scale_rewards none), beta 0",
        family="trl",
    ),
    Algorithm(
        name="cispo",
        description="CISPO: REINFORCE on every token weighted by its clipped, detached importance ratio (max 5), "
        "batch-std advantages, 4 minibatch updates per rollout",
        script_args_spec=_RL_ARGS,
        config_spec="trl:GRPOConfig",
        trainer_spec="trl:GRPOTrainer",
        training_data_spec=_PROMPTS,
        default_config="embedded/cispo.yaml",
        paper="MiniMax-M1, arXiv 2506.13585 (the CISPO loss); settings of ScaleRL (Khatri et al. 2025, "
        "arXiv 2510.13786) as TRL documents them: epsilon_high 5.0, scale_rewards batch",
        changes="stock trl.GRPOTrainer, settings only: loss_type cispo (no token is clipped out of the gradient; the "
        "importance weight is capped at 5 and detached), token-level normalisation, advantages scaled by the batch's "
        "std, beta 0; each rollout split into 4 minibatch updates so that the importance weight differs from 1",
        family="trl",
    ),
    Algorithm(
        name="sapo",
        description="SAPO: a sigmoid gate on each token's importance ratio instead of the hard clip (temperatures "
        "1.0 / 1.05), 4 minibatch updates per rollout",
        script_args_spec=_RL_ARGS,
        config_spec="trl:GRPOConfig",
        trainer_spec="trl:GRPOTrainer",
        training_data_spec=_PROMPTS,
        default_config="embedded/sapo.yaml",
        paper="Gao et al. 2025, \"Soft Adaptive Policy Optimization\", arXiv 2511.20347 (temperatures: the paper's, "
        "TRL's defaults)",
        changes="stock trl.GRPOTrainer, settings only: loss_type sapo (the clipped surrogate replaced by a smooth, "
        "temperature-controlled gate, steeper for negative advantages), per-sequence token mean, beta 0; each rollout "
        "split into 4 minibatch updates so that the gate acts",
        family="trl",
    ),
    Algorithm(
        name="sft",
        description="the comparison's SFT controls: stock trl.SFTTrainer on rejection-sampled (--sft_data rft), "
        "warm-start or gold worked-solution data",
        script_args_spec="trl_ext.recipe.controls:SFTScriptArguments",
        config_spec="trl:SFTConfig",
        trainer_spec="trl:SFTTrainer",
        training_data_spec="trl_ext.recipe.controls:sft_dataset_for_run",
        default_config="embedded/sft.yaml",
        paper="RFT: Yuan et al. 2023, arXiv 2308.01825 (rejection-sampling fine-tuning); gold: SFT on reference "
        "solutions (an oracle)",
        changes="not RL: supervised fine-tuning on a fixed dataset built before training (rft spends the samples "
        "budget on sampling the start model and keeps verified answers), no rewards during training",
        online=False,
        control=True,
        label_arg="sft_data",
    ),
)

_BY_NAME = {a.name: a for a in ALGORITHMS}


def algorithm_names(controls: bool = True) -> list[str]:
    """The table's names in order; ``controls=False``: only the compared algorithms (no SFT control)."""
    return [a.name for a in ALGORITHMS if controls or not a.control]


def get_algorithm(name: str) -> Algorithm:
    """The table entry of ``name`` (case-insensitive); ``UnknownAlgorithmError`` (a ``KeyError``) listing the known
    names."""
    key = str(name).strip().lower()
    if key not in _BY_NAME:
        raise UnknownAlgorithmError(f"unknown algorithm {name!r}; known algorithms: {', '.join(algorithm_names())}")
    return _BY_NAME[key]
