"""Planning the comparison: which runs, with which budget arguments, in which order (pure; nothing runs here).

The protocol has two phases. **Sweep**: every entry (algorithm or control) runs once per value of the swept field
(``--sweep FIELD=v1,v2``; the controls have their own grid, ``--control-sweep``) at the budget, trained on the
training split and scored on the *validation* split, which is carved from the training problems (never the test
split). **Test**: each entry's value with the best validation flexible accuracy, over the seeds, scored on the test
split. Every run of both phases logs held-out accuracy during training on the validation split.

The budget (``--budget``):

* ``samples`` (default): completions generated. Online RL (GRPO, DAPO, GSPO, PPO) gets ``--max_samples S``; the run
  sets its max_steps to train on whole rollouts until S were generated (``trl_ext.recipe.callbacks.
  whole_rollout_steps``; the plan shows ``ceil(S / samples_per_step)`` with ``samples_per_step =
  per_device_train_batch_size x processes x gradient_accumulation_steps / num_iterations``); DAPO's refill rounds
  count, so it stops after fewer steps. DPO and RFT spend ``S`` before training (k samples for S / k questions).
  Every SFT control (RFT, warm-start data, gold solutions) trains ``control_steps`` optimizer steps: as many
  examples as S, computed once from the budget, the same in the sweep and the test phase.
* ``prompts``: ``--max_steps round(P / prompts_per_step)``, prompts per step = completions per step /
  (num_generations x num_iterations); DPO: one pair = one prompt.
* ``seconds``: ``--max_train_seconds T`` for every entry (``--max_steps`` a large bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from trl_ext.recipe.algorithms import ALGORITHMS, algorithm_names, get_algorithm
from trl_ext.recipe.config import load_recipe_yaml

ALGOS = tuple(algorithm_names(controls=False))
ONLINE = tuple(a.name for a in ALGORITHMS if a.online and not a.control)
# label -> --sft_data of the sft recipe (the algorithm table's control)
CONTROLS = {"rft": "rft", "sft-warm-start": "warm_start", "sft-gold": "gold"}
BUDGETS = ("samples", "prompts", "seconds")
UNBOUNDED_STEPS = 1_000_000
BUDGET_FIELDS = ("per_device_train_batch_size", "gradient_accumulation_steps", "num_generations", "num_iterations",
                 "steps_per_generation", "max_steps")


class CompareError(ValueError):
    """A comparison cannot be planned (bad arguments); runs that fail are reported in the table instead."""


def recipe_of(label: str) -> str:
    """The recipe that runs an entry: the algorithm's own, or ``sft`` for a control."""
    return "sft" if label in CONTROLS else label


def parse_sweep(text: str | None) -> tuple[str, list[str]] | None:
    """``"learning_rate=1e-5,2e-5"`` -> ``("learning_rate", ["1e-5", "2e-5"])``."""
    if not text:
        return None
    name, eq, values = text.partition("=")
    vals = [v.strip() for v in values.split(",") if v.strip()]
    if not eq or not name.strip() or not vals:
        raise CompareError(f"a sweep is FIELD=v1,v2,... (e.g. learning_rate=1e-5,2e-5), got {text!r}")
    return name.strip().removeprefix("--"), vals


def parse_overrides(args) -> dict[str, str]:
    """``--key value`` / ``--key=value`` pairs of a recipe command line (values as strings; the last one wins)."""
    out: dict[str, str] = {}
    args = list(args)
    for i, arg in enumerate(args):
        if not arg.startswith("--") or arg == "--":
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else "true"
        out[key] = value
    return out


def budget_fields(recipe: str, config_path, overrides: dict) -> dict:
    """The fields that decide what one optimizer step consumes: YAML chain, the config class's defaults (a config
    without groups or rollout reuse, DPO's or SFT's, counts 1 of each), then overrides."""
    values, _ = load_recipe_yaml(config_path)
    fields = {"num_generations": 1, "num_iterations": 1, **get_algorithm(recipe).config_defaults(BUDGET_FIELDS)}
    for key in fields:
        if key in overrides:
            fields[key] = overrides[key]
        elif values.get(key) is not None:
            fields[key] = values[key]
    fields = {k: int(v) for k, v in fields.items() if v is not None}
    fields.setdefault("steps_per_generation", fields["gradient_accumulation_steps"])  # TRL's default
    return fields


def rollout_size(fields: dict, num_processes: int) -> int:
    """Completions one rollout of an online algorithm generates (TRL's generation batch: per-device batch x processes
    x steps_per_generation, as the YAMLs state it)."""
    return fields["per_device_train_batch_size"] * num_processes * fields["steps_per_generation"]


def control_steps(fields: dict, budget: Budget, num_processes: int) -> int:
    """Optimizer steps of the SFT controls under a samples budget, computed once from the budget and used in both
    phases: each control trains on as many examples as the online algorithms generate completions (``budget /
    examples per step``), whatever its data is."""
    return math.ceil(budget.amount / _rows_per_step(fields, num_processes))


def _rows_per_step(fields: dict, num_processes: int) -> int:
    return fields["per_device_train_batch_size"] * num_processes * fields["gradient_accumulation_steps"]


def samples_per_step(fields: dict, num_processes: int) -> float:
    """Completions one optimizer step of an online algorithm trains on (a rollout reused num_iterations times counts
    once)."""
    return _rows_per_step(fields, num_processes) / fields["num_iterations"]


def prompts_per_step(recipe: str, fields: dict, num_processes: int) -> float:
    if recipe in ("dpo", "sft"):
        return float(_rows_per_step(fields, num_processes))  # pairs / examples
    return samples_per_step(fields, num_processes) / fields["num_generations"]


@dataclass
class Budget:
    kind: str  # samples | prompts | seconds
    amount: float

    def __post_init__(self):
        if self.kind not in BUDGETS:
            raise CompareError(f"--budget must be one of {', '.join(BUDGETS)}, got {self.kind!r}")
        if not self.amount or self.amount <= 0:
            raise CompareError(f"the {self.kind} budget must be > 0, got {self.amount}")


def budget_args(label: str, fields: dict, budget: Budget, num_processes: int):
    """``(recipe arguments, planned optimizer steps or None)`` that give ``label`` the budget."""
    recipe = recipe_of(label)
    if budget.kind == "seconds":
        return ["--max_train_seconds", f"{budget.amount:g}", "--max_steps", str(UNBOUNDED_STEPS)], None
    if budget.kind == "prompts":
        if label in CONTROLS:
            return [], fields["max_steps"] if fields["max_steps"] > 0 else None
        steps = max(1, round(budget.amount / prompts_per_step(recipe, fields, num_processes)))
        return ["--max_steps", str(steps)], steps
    if recipe in ONLINE:  # the run sets max_steps itself: whole rollouts up to the budget (whole_rollout_steps)
        steps = math.ceil(budget.amount / samples_per_step(fields, num_processes))
        return ["--max_samples", str(int(budget.amount))], steps
    if recipe == "dpo":
        return ["--max_samples", str(int(budget.amount))], fields["max_steps"] if fields["max_steps"] > 0 else None
    steps = control_steps(fields, budget, num_processes)
    rft = ["--max_samples", str(int(budget.amount))] if CONTROLS.get(label) == "rft" else []
    return [*rft, "--max_steps", str(steps)], steps


@dataclass
class Job:
    """One run: ``label`` (algorithm or control) x ``setting`` (the swept value, or None) x ``seed`` in ``phase``."""

    label: str
    phase: str  # sweep | test
    seed: int
    setting: tuple[str, str] | None
    run_dir: Path
    args: list[str] = field(default_factory=list)
    planned_steps: int | None = None

    @property
    def name(self) -> str:
        value = f" {self.setting[0]}={self.setting[1]}" if self.setting else ""
        return f"{self.phase} {self.label}{value} seed {self.seed}"


def curve_args(steps: int | None, points: int, limit: int) -> list[str]:
    """Accuracy-curve arguments for about ``points`` evaluations over the run's optimizer steps (0 points: off); the
    run spreads them over its own max_steps. A time budget has no step count: every 50 steps (a guess)."""
    if points <= 0:
        return []
    spacing = ["--eval_curve_points", str(points)] if steps and steps < UNBOUNDED_STEPS else ["--eval_curve_steps", "50"]
    return [*spacing, "--eval_curve_limit", str(limit), "--eval_curve_split", "validation"]


def phase_args(phase: str, problems: int | None = None) -> list[str]:
    """The sweep scores on the validation split (carved from the training problems), the test phase on test; greedy
    only (the picks and the statistics read greedy correctness). ``problems``: at most this many held-out problems
    (the synthetic testbed generates them; real GSM8K has 1,319 test problems)."""
    split = "validation" if phase == "sweep" else "test"
    return ["--dataset_test_split", split, "--eval_num_samples", "0",
            *(["--eval_limit", str(problems)] if problems else [])]


def setting_args(setting) -> list[str]:
    return [f"--{setting[0]}", setting[1]] if setting else []


def widen(values, picked: str) -> str | None:
    """The next grid value beyond ``picked`` when it is the lowest or highest of ``values`` (one more step of the
    grid's ratio at that end, or of its difference where a value is not positive); ``None`` when the pick is interior,
    the grid is not numeric or has one value, or the next value would cross zero (a pick of 0 in ``0, 0.04`` stays an
    edge pick: a negative learning rate or KL coefficient is not a setting)."""
    try:
        grid = sorted({float(v): v for v in values}.items())
        at = float(picked)
    except ValueError:
        return None
    if len(grid) < 2 or at not in (grid[0][0], grid[-1][0]):
        return None
    edge, inner = (grid[-1][0], grid[-2][0]) if at == grid[-1][0] else (grid[0][0], grid[1][0])
    new = edge * edge / inner if edge > 0 and inner > 0 else 2 * edge - inner
    return None if edge == 0 or (new < 0) != (edge < 0) else f"{new:g}"


def pick_best(results: dict) -> tuple[str, float]:
    """``{value: [validation flexible accuracies over sweep seeds]}`` -> the value with the highest mean (the first
    listed on a tie) and that mean."""
    scored = [(v, sum(a) / len(a)) for v, a in results.items() if a]
    if not scored:
        raise CompareError("no sweep run of this entry finished")
    return max(scored, key=lambda item: item[1])
