"""The training prompts of a recipe run: the GSM8K training split (or the synthetic testbed) in conversational form,
checked before any model loads: enough prompts for one rollout, none longer than ``max_prompt_length`` tokens."""

from __future__ import annotations

from trl_ext.recipe.hardware import log


def load_training_prompts(script_args):
    """The training split as ``load_gsm8k`` returns it (``prompt``, ``question``, ``answer``, ``solution``...)."""
    from trl_ext.data.gsm8k import SYNTHETIC, load_gsm8k

    s = script_args
    n = s.num_train_examples
    return load_gsm8k(
        s.dataset_source,
        s.dataset_train_split,
        num_examples=n,
        limit=None if s.dataset_source == SYNTHETIC else n,
        **s.dataset_kwargs(),
    )


def check_rollout_fits(dataset, training_args) -> None:
    """An online RL run draws whole rollouts of ``generation_batch_size / num_generations`` prompts; with fewer
    training prompts TRL's sampler yields no batch at all and the run ends after 0 steps without a word."""
    args = training_args
    batch = getattr(args, "generation_batch_size", None)
    if not batch or not getattr(args, "num_generations", None):
        return
    prompts = batch // args.num_generations
    if len(dataset) < prompts:
        raise ValueError(
            f"{len(dataset)} training prompts, but one rollout takes {prompts} (generation_batch_size {batch} = "
            f"per_device_train_batch_size {args.per_device_train_batch_size} x {args.world_size} processes x "
            f"steps_per_generation {args.steps_per_generation}, / num_generations {args.num_generations}): the run "
            "would train 0 steps. Raise --num_train_examples, or lower per_device_train_batch_size or "
            "steps_per_generation."
        )


def check_prompt_lengths(dataset, script_args, tokenizer):
    """Apply ``max_prompt_length`` / ``long_prompts`` to the conversational prompts (tokenizer only, no model):
    ``long_prompts=error`` stops naming the first long row, ``drop`` returns the dataset without the long prompts."""
    s = script_args
    if s.max_prompt_length is None:
        return dataset

    def num_tokens(prompt) -> int:
        ids = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False)
        return len(ids)

    lengths = [num_tokens(prompt) for prompt in dataset["prompt"]]
    too_long = [i for i, n in enumerate(lengths) if n > s.max_prompt_length]
    if not too_long:
        return dataset
    if s.long_prompts == "error":
        i = too_long[0]
        raise ValueError(
            f"{len(too_long)} of {len(dataset)} training prompts ({s.dataset_source}, split "
            f"{s.dataset_train_split!r}) are longer than max_prompt_length={s.max_prompt_length} tokens with the "
            f"chat template; the first is row {i} ({lengths[i]} tokens): {dataset[i]['question'][:80]!r}... "
            "Raise --max_prompt_length, or pass --long_prompts drop to train without them."
        )
    kept = dataset.select([i for i in range(len(dataset)) if lengths[i] <= s.max_prompt_length])
    log(f"long_prompts=drop: dropped {len(too_long)} of {len(dataset)} training prompts longer than "
        f"max_prompt_length={s.max_prompt_length} tokens (longest: {max(lengths)})")
    if len(kept) == 0:
        raise ValueError(f"every training prompt is longer than max_prompt_length={s.max_prompt_length}")
    return kept


def prompts_for_run(run):
    """The online RL recipes' training data (``Algorithm.training_data``): ``run.train_dataset()``."""
    return run.train_dataset()
