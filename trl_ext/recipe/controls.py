"""The comparison's controls: supervised fine-tuning runs that say what RL's gain is worth.

Each control is TRL's ``SFTTrainer`` on prompt-completion data from one of three sources, labelled by the supervision
it uses (``SUPERVISION``):

* ``rft`` -- rejection-sampling fine-tuning: the start model samples ``rft_num_samples`` completions per training
  question, the ones whose final answer verifies are kept (distinct texts, at most ``rft_max_per_question`` per
  question) and fine-tuned on. It sees final-answer checks only, like RL, so it is the like-for-like baseline; it
  spends the samples budget (``max_samples``) on sampling ``max_samples // rft_num_samples`` questions (shared out
  over the ranks and cached like DPO's samples: ``trl_ext.recipe.sampling.shared_records``).
* ``warm_start`` -- more SFT on the embedded warm start's own data (its second stage's direct/worked mix): the same
  information the start model already had; run for the wall time RL trains (``max_train_seconds``).
* ``gold`` -- SFT on the reference worked solutions: an *oracle*, since it sees solution text that RL never sees.

The evaluation, summary and budget are the recipes' own (``RecipeRun``), so a control's row reads like an algorithm's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from trl_ext.recipe.args import RecipeScriptArguments

SUPERVISION = {
    "rft": "final-answer check on its own samples (like RL)",
    "warm_start": "the warm start's own SFT data (no new information)",
    "gold": "reference worked solutions (oracle: text RL never sees)",
}


@dataclass
class SFTScriptArguments(RecipeScriptArguments):
    """Script arguments of the SFT controls."""

    sft_data: str = field(default="rft", metadata={"help": f"Training data: one of {sorted(SUPERVISION)}."})
    rft_num_samples: int = field(default=4, metadata={"help": "RFT: completions sampled per training question."})
    rft_temperature: float = field(default=1.0, metadata={"help": "RFT: sampling temperature."})
    rft_max_new_tokens: int | None = field(
        default=None, metadata={"help": "RFT: generation budget of the sampler (default: eval_max_new_tokens)."}
    )
    rft_max_per_question: int = field(
        default=1, metadata={"help": "RFT: most distinct verified completions kept per question."}
    )
    rft_sample_batch_size: int = field(default=64, metadata={"help": "RFT: sequences per generate() call."})

    def __post_init__(self):
        super().__post_init__()
        if self.sft_data not in SUPERVISION:
            raise ValueError(f"sft_data must be one of {sorted(SUPERVISION)}, got {self.sft_data!r}")
        if self.rft_num_samples < 1 or self.rft_max_per_question < 1:
            raise ValueError(f"rft_num_samples and rft_max_per_question must be >= 1, got {self.rft_num_samples} "
                             f"and {self.rft_max_per_question}")


def verified_completions(records: list[dict], max_per_question: int) -> list[tuple[int, str]]:
    """``(question index, completion)`` for up to ``max_per_question`` distinct completions per question whose final
    answer is strictly correct (``records`` as ``trl_ext.eval.evaluate`` returns them), in sampling order."""
    kept = []
    for i, r in enumerate(records):
        texts = list(dict.fromkeys(c for c, ok in zip(r["completions"], r["strict"]) if ok))
        kept += [(i, t) for t in texts[:max_per_question]]
    return kept


def _rows(prompts, completions) -> list[dict]:
    return [{"prompt": p, "completion": [{"role": "assistant", "content": c}]} for p, c in zip(prompts, completions)]


def sft_dataset_for_run(run):
    """The control's training data as a ``datasets.Dataset`` (prompt, completion); records its statistics and the
    samples it generated in ``run``."""
    import datasets

    from trl_ext.recipe.hardware import log

    s = run.script_args
    if s.sft_data == "warm_start":
        from trl_ext.models.tiny import WarmStartConfig, sft_dataset

        if not run.embedded_model:
            raise ValueError("sft_data=warm_start repeats the embedded warm start's SFT data; it needs the embedded "
                             "start model (leave model_name_or_path unset), not " + str(run.model_path))
        cfg = WarmStartConfig()
        return sft_dataset(cfg, cfg.direct_fraction, stage=2)
    if s.sft_data == "rft" and s.max_samples is not None:
        s.num_train_examples = max(1, s.max_samples // s.rft_num_samples)
    questions = run.train_dataset()
    if s.sft_data == "gold":
        run.extra["sft_data"] = {"source": "gold", "examples": len(questions)}
        return datasets.Dataset.from_list(_rows(questions["prompt"], questions["solution"]))

    from accelerate import PartialState

    from trl_ext.recipe.sampling import cache_key, default_cache_dir, shared_records

    settings = dict(num_samples=s.rft_num_samples, temperature=s.rft_temperature,
                    max_new_tokens=s.rft_max_new_tokens or s.eval_max_new_tokens, batch_size=s.rft_sample_batch_size,
                    seed=run.training_args.seed)
    desc = {"source": s.dataset_source, "split": s.dataset_train_split, "rows": len(questions), **s.dataset_kwargs()}
    parts = default_cache_dir().parent / "rft_samples" / cache_key(run.model_path, {**settings, "dataset": desc})
    state = PartialState()
    start = time.time()
    # shared out over the ranks and kept on disk: a sweep over learning rates samples once
    records, run.offline_seconds = shared_records(run.model_path, questions, parts, rank=state.process_index,
                                                  world_size=state.num_processes, **settings)
    run.phase_seconds["rft_sampling"] = time.time() - start
    run.offline_samples = len(questions) * s.rft_num_samples
    kept = verified_completions(records, s.rft_max_per_question)
    stats = {"source": "rft", "questions": len(questions), "samples": run.offline_samples,
             "questions_kept": len({i for i, _ in kept}), "examples": len(kept),
             "sample_accuracy": sum(sum(r["strict"]) for r in records) / max(1, run.offline_samples)}
    run.extra["sft_data"] = stats
    log(f"RFT: kept {stats['examples']} verified completions of {stats['questions_kept']} / {stats['questions']} "
        f"questions ({run.offline_samples} samples, strict accuracy {100 * stats['sample_accuracy']:.1f}%)")
    if not kept:
        raise ValueError(f"RFT: no sampled completion verified ({stats}); sample more (rft_num_samples)")
    prompts = questions["prompt"]
    return datasets.Dataset.from_list(_rows([prompts[i] for i, _ in kept], [c for _, c in kept]))
