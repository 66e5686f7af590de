"""``ResumeStateCallback``: two pieces of training state that a resume from a checkpoint loses in TRL 1.16 /
transformers 5, put back so that a resumed run continues exactly like the uninterrupted one.

1. **Data order after the first epoch.** GRPO-family trainers draw their prompts through TRL's ``RepeatSampler``,
   which shuffles with a private ``torch.Generator`` that advances once per epoch and has no ``set_epoch``.
   Trainer rebuilds the sampler on resume and starts at epoch ``k`` without iterating the earlier epochs, so from a
   checkpoint past the first epoch the resumed run replays epoch 0's order (prompts it has already trained on)
   instead of epoch ``k``'s. The callback advances the generator by the ``k`` epochs already trained.
2. **DPO's ``num_tokens``.** TRL's DPOTrainer counts tokens in an attribute that is not saved, so after a resume the
   logged ``num_tokens`` restarts from 0. The callback restarts it from the last value in the restored log history
   (exact when ``save_steps`` is a multiple of ``logging_steps``).

Both act only in ``on_train_begin`` of a resumed run (``global_step > 0``). The recipes add the callback to every
trainer; with a trainer used directly: ``trainer.add_callback(ResumeStateCallback(trainer))``.
"""

from __future__ import annotations

import logging

from transformers import TrainerCallback
from trl.trainer.utils import RepeatSampler

logger = logging.getLogger(__name__)


def find_repeat_sampler(dataloader) -> RepeatSampler | None:
    """The ``RepeatSampler`` under an accelerate/torch dataloader (``DataLoaderShard -> BatchSamplerShard ->
    BatchSampler -> sampler``), or None."""
    seen, frontier = set(), [dataloader]
    while frontier:
        obj = frontier.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, RepeatSampler):
            return obj
        frontier += [getattr(obj, name, None) for name in ("sampler", "batch_sampler", "base_dataloader")]
    return None


class ResumeStateCallback(TrainerCallback):
    """See the module docstring."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if state.global_step == 0 or train_dataloader is None:
            return
        sampler = find_repeat_sampler(train_dataloader)
        if sampler is not None and sampler.shuffle:
            # Trainer's arithmetic (set_initial_training_values, _init_training_state): a last, partial accumulation
            # window still counts as an optimizer step of the epoch
            batches, accumulation = len(train_dataloader), args.gradient_accumulation_steps
            steps_per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)
            epochs_trained = state.global_step // steps_per_epoch
            for _ in range(epochs_trained):
                next(iter(sampler), None)  # the permutation is drawn on the first element of each epoch
            if epochs_trained:
                logger.info("resume: advanced the prompt sampler past %d trained epoch(s)", epochs_trained)
        if getattr(self.trainer, "_total_train_tokens", None) == 0:
            counts = [h["num_tokens"] for h in state.log_history if isinstance(h.get("num_tokens"), int | float)]
            if counts:
                self.trainer._total_train_tokens = counts[-1]
