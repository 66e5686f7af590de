"""Checkpoints of a recipe run: which one ``--resume_from_checkpoint`` means, and whether ``save_steps`` puts them
where a resume can continue step for step.

* ``resolve_resume``: ``true``/``last`` (the latest complete ``checkpoint-*`` in ``output_dir``), ``false`` or a
  checkpoint path; an ``output_dir`` that already holds checkpoints is refused without the flag, so a relaunched job
  cannot silently restart from step 0 and rotate the old checkpoints away. (transformers' ``get_last_checkpoint``
  does not tell a complete checkpoint from one cut off by a crash, hence ``checkpoints``.)
* ``warn_checkpoints_inside_rollouts``: GRPO-family trainers keep their rollout in memory, not in the checkpoint.
"""

from __future__ import annotations

import math
from pathlib import Path

from trl_ext.recipe.config import RecipeConfigError
from trl_ext.recipe.hardware import log

RESUME_LATEST = ("true", "last", "latest")
RESUME_NEVER = ("false", "no", "none")


def checkpoints(output_dir: Path, complete: bool = True) -> list[Path]:
    """``checkpoint-<step>`` folders in ``output_dir``, oldest first; with ``complete``, only those whose
    trainer_state.json exists (the main process writes it last, so a save cut off by a crash is left out)."""
    found = [p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()]
    found = [p for p in found if not complete or (p / "trainer_state.json").exists()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resolve_resume(value, output_dir) -> str | None:
    """The checkpoint a run resumes from, or ``None`` to start fresh; raises ``RecipeConfigError`` when the request
    cannot be met. ``value`` is ``--resume_from_checkpoint``: unset, ``true``/``last`` (the latest complete checkpoint in
    ``output_dir``), ``false`` (start fresh even though checkpoints exist) or a checkpoint folder."""
    output_dir = Path(output_dir)
    complete = checkpoints(output_dir)
    text = None if value is None else str(value).strip()
    if text is None or text == "":
        if complete:
            raise RecipeConfigError(
                f"output_dir {output_dir} already holds checkpoints ({', '.join(p.name for p in complete)}) from an "
                "earlier run. Pass --resume_from_checkpoint true to continue it, or choose another --output_dir "
                "(--resume_from_checkpoint false starts over in this folder, but the old checkpoints stay there until "
                "rotation deletes them, and a later 'true' would pick the highest step, which may be an old one)."
            )
        return None
    if text.lower() in RESUME_NEVER:
        if complete:
            log(f"--resume_from_checkpoint false: starting from step 0 although {output_dir} holds {complete[-1].name}")
        return None
    if text.lower() in RESUME_LATEST:
        if not complete:
            partial = [p.name for p in checkpoints(output_dir, complete=False)]
            raise RecipeConfigError(
                f"--resume_from_checkpoint {text}: no complete checkpoint-* folder (with trainer_state.json) in "
                f"{output_dir}" + (f" (incomplete: {', '.join(partial)})" if partial else "")
                + ". Set save_strategy/save_steps so that the run writes checkpoints, or drop the flag to start fresh."
            )
        return str(complete[-1])
    path = Path(text)
    if not (path / "trainer_state.json").is_file():
        raise RecipeConfigError(
            f"--resume_from_checkpoint {text}: not a checkpoint folder (expected {path / 'trainer_state.json'}); "
            f"pass a checkpoint-<step> folder written by the trainer, or 'true' for the latest one in output_dir."
        )
    return str(path)


def optimizer_steps_per_rollout(args) -> int:
    """Optimizer steps between points where a rollout and an optimizer step end together. A GRPO-family trainer
    generates once every ``steps_per_generation * num_iterations`` micro-batches and steps the optimizer every
    ``gradient_accumulation_steps`` micro-batches: both line up every lcm of the two micro-batches."""
    micro_batches = (getattr(args, "steps_per_generation", None) or 1) * (getattr(args, "num_iterations", None) or 1)
    accumulation = max(args.gradient_accumulation_steps, 1)
    return math.lcm(micro_batches, accumulation) // accumulation


def warn_checkpoints_inside_rollouts(args) -> None:
    """A rollout lives in memory, not in the checkpoint: a resume from a checkpoint inside a rollout generates a new
    one, so the resumed run is valid but no longer step-for-step identical to an uninterrupted run."""
    every = optimizer_steps_per_rollout(args) if hasattr(args, "steps_per_generation") else 1
    save_steps = args.save_steps
    if every > 1 and args.save_strategy == "steps" and save_steps >= 1 and int(save_steps) % every:
        log(
            f"save_steps={int(save_steps)} is not a multiple of the {every} optimizer steps per rollout "
            "(lcm(steps_per_generation x num_iterations, gradient_accumulation_steps) / gradient_accumulation_steps): "
            "checkpoints then fall inside a rollout, and a resume from one starts a new rollout there (the run goes "
            f"on, but its data and rollout boundaries differ from an uninterrupted run). Use a multiple of {every} "
            "for exact resumes."
        )
