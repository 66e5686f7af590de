"""On-policy preference pairs for DPO on verifiable math: sample k completions per training question from the start
model, verify them with the strict GSM8K check, and pair a correct completion (chosen) with an incorrect one
(rejected). Questions whose samples are all correct or all wrong give no pair; they are counted and reported.
Optionally (``chosen_fallback="reference"``) a question with no correct sample pairs the reference solution
(chosen, off-policy) with its incorrect samples.

Every rank samples its share of the questions (``trl_ext.recipe.sampling``: chunk by chunk, each chunk saved as it
finishes, so a killed run resumes); the pairs are cached as a ``datasets`` dataset on disk, keyed by a hash of the start model (path and
checkpoint timestamps) and every setting that changes them, so reruns reuse them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

# the sampling and cache helpers, also importable from here as before
from trl_ext.recipe.sampling import (
    cache_key,
    chunk_bounds,
    default_cache_dir,
    publish,
    sample_records,
    shared_records,
)

pairs_key = cache_key  # the name of the pair cache's key before the helpers moved to trl_ext.recipe.sampling


def make_pairs(records, solutions, max_pairs_per_question: int = 1, chosen_fallback: str = "none"):
    """Pure pairing step. ``records`` as ``trl_ext.eval.evaluate`` returns them (question, answer, completions,
    strict, terminated). Returns ``(rows, stats)``; each row has prompt-free ``chosen``/``rejected`` texts and its
    ``index``. Only a correct completion that *terminated* (EOS before the generation limit) can be chosen: a
    truncated one would teach the model to stop mid-answer; it may still be rejected if wrong."""
    rows = []
    stats = {"questions": len(records), "questions_with_pair": 0, "all_correct": 0, "none_correct": 0,
             "reference_fallback": 0, "pairs": 0}
    for index, (record, solution) in enumerate(zip(records, solutions)):
        done = record.get("terminated") or [True] * len(record["completions"])
        correct = list(dict.fromkeys(c for c, ok, d in zip(record["completions"], record["strict"], done) if ok and d))
        wrong = list(dict.fromkeys(c for c, ok in zip(record["completions"], record["strict"]) if not ok))
        source = "onpolicy"
        if not wrong:
            stats["all_correct"] += 1
            continue
        if not correct:
            stats["none_correct"] += 1
            if chosen_fallback != "reference":
                continue
            correct, source = [solution], "reference"
            stats["reference_fallback"] += 1
        n = min(len(correct), len(wrong), max_pairs_per_question) if source == "onpolicy" else min(
            len(wrong), max_pairs_per_question)
        for j in range(n):
            rows.append({"index": index, "chosen": correct[j % len(correct)], "rejected": wrong[j], "pair_source": source})
        stats["questions_with_pair"] += 1
        stats["pairs"] += n
    stats["questions_without_pair"] = stats["questions"] - stats["questions_with_pair"]
    return rows, stats


def pairs_from_records(records, dataset, max_pairs_per_question: int = 1, chosen_fallback: str = "none"):
    """Verified samples -> ``(Dataset or None, stats)`` of conversational DPO rows (prompt, chosen, rejected)."""
    import datasets

    rows, stats = make_pairs(records, dataset["solution"], max_pairs_per_question, chosen_fallback)
    completions = max(1, sum(len(r["strict"]) for r in records))
    stats["sample_mean_strict"] = sum(sum(r["strict"]) for r in records) / completions
    stats["sample_mean_flexible"] = sum(sum(r["flexible"]) for r in records) / completions
    prompts, answers = dataset["prompt"], dataset["answer"]
    out = [
        {
            "prompt": prompts[r["index"]],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
            "answer": answers[r["index"]],
            "pair_source": r["pair_source"],
        }
        for r in rows
    ]
    return (datasets.Dataset.from_list(out) if out else None), stats


def build_onpolicy_pairs(
    model_path: str,
    dataset,
    *,
    num_samples: int = 4,
    temperature: float = 1.0,
    max_new_tokens: int = 256,
    batch_size: int = 64,
    max_pairs_per_question: int = 1,
    chosen_fallback: str = "none",
    backend: str = "hf",
    seed: int = 0,
    chunk_size: int = 256,
):
    """Sample, verify and pair in this process (no caching). ``dataset`` comes from ``load_gsm8k``. Returns
    ``(Dataset, stats)``; the same pairs as the sharded, cached ``onpolicy_pairs`` with the same settings."""
    chunks = chunk_bounds(len(dataset), chunk_size)
    records = []
    for _, chunk_records in sample_records(model_path, dataset, chunks, num_samples=num_samples,
                                           temperature=temperature, max_new_tokens=max_new_tokens,
                                           batch_size=batch_size, backend=backend, seed=seed):
        records += chunk_records
    return pairs_from_records(records, dataset, max_pairs_per_question, chosen_fallback)


def onpolicy_pairs(model_path: str, dataset, *, cache_dir=None, dataset_desc: dict | None = None, rank: int = 0,
                   world_size: int = 1, chunk_size: int = 256, poll_seconds: float = 0.5, **settings):
    """On-policy pairs, sampled by all ranks and cached on disk. Returns ``(Dataset, stats, cache path)``.

    The verified samples come from ``shared_records`` (chunks of ``chunk_size`` questions shared out over the ranks
    and kept in ``<cache>/pairs-<key>.parts/``, so a killed run resumes where it stopped); every rank pairs all
    records the same way, and rank 0 writes the final cache atomically. Every call with the same settings gives
    the same pairs, whatever the number of ranks. Raises ``ValueError`` when no question yields a pair.
    """
    import datasets

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    key = cache_key(model_path, {**settings, "dataset": dataset_desc or {}, "rows": len(dataset),
                                 "chunk_size": chunk_size})
    final = root / f"pairs-{key}"
    stats_file = final / "pair_stats.json"
    if stats_file.exists():
        stats = json.loads(stats_file.read_text())
        stats["cached"] = True
        return datasets.load_from_disk(str(final / "data")), stats, final
    sample_settings = {k: v for k, v in settings.items() if k not in ("max_pairs_per_question", "chosen_fallback")}
    records, seconds = shared_records(model_path, dataset, root / f"pairs-{key}.parts", rank=rank,
                                      world_size=world_size, chunk_size=chunk_size, poll_seconds=poll_seconds,
                                      **sample_settings)
    pairs, stats = pairs_from_records(records, dataset, settings.get("max_pairs_per_question", 1),
                                      settings.get("chosen_fallback", "none"))
    stats["sampling_seconds"] = seconds
    if pairs is None:
        raise ValueError(
            f"no training question gave a (correct, incorrect) pair: {stats}. Sample more completions "
            "(dpo_num_samples), change dpo_temperature, or set dpo_chosen_fallback=reference"
        )
    if rank == 0 and not final.exists():
        tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=root))
        try:
            pairs.save_to_disk(str(tmp / "data"))
            (tmp / "pair_stats.json").write_text(json.dumps({**stats, "model": model_path, "settings": settings},
                                                            indent=2))
            publish(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    stats["cached"] = False
    return pairs, stats, final


def pairs_for_run(run):
    """The DPO recipe's training data: on-policy pairs from ``run``'s start model and training questions, sampled by
    all ranks (``onpolicy_pairs``). Records the pair statistics in ``run.extra``."""
    from trl_ext.recipe.hardware import log

    s, training_args = run.script_args, run.training_args
    if s.max_samples is not None:  # the samples budget is spent here: k samples for each of max_samples // k questions
        s.num_train_examples = max(1, s.max_samples // s.dpo_num_samples)
    questions = run.train_dataset()
    run.offline_samples = len(questions) * s.dpo_num_samples
    settings = dict(
        num_samples=s.dpo_num_samples,
        temperature=s.dpo_temperature,
        max_new_tokens=s.dpo_max_new_tokens or s.eval_max_new_tokens,
        batch_size=s.dpo_sample_batch_size,
        max_pairs_per_question=s.dpo_max_pairs_per_question,
        chosen_fallback=s.dpo_chosen_fallback,
        backend=s.dpo_sample_backend,
        seed=training_args.seed,
    )
    desc = {"source": s.dataset_source, "split": s.dataset_train_split, "num_train_examples": s.num_train_examples,
            **s.dataset_kwargs()}
    # Every rank samples its share of the questions; on several nodes the cache dir must be shared.
    from accelerate import PartialState

    state = PartialState()
    start = time.time()
    pairs, stats, path = onpolicy_pairs(
        run.model_path, questions, cache_dir=s.dpo_pairs_cache_dir, dataset_desc=desc, rank=state.process_index,
        world_size=state.num_processes, chunk_size=s.dpo_sample_chunk_size, **settings
    )
    stats = {k: v for k, v in stats.items() if k not in ("model", "settings")}
    log(
        f"DPO pairs: {stats['pairs']} pairs from {stats['questions_with_pair']} of {stats['questions']} questions; "
        f"no pair: {stats['questions_without_pair']} (all {s.dpo_num_samples} samples correct: {stats['all_correct']}, "
        f"none correct: {stats['none_correct']}, of which paired with the reference: {stats['reference_fallback']}); "
        f"sampled strict accuracy {100 * stats['sample_mean_strict']:.1f}%; "
        f"{'cached' if stats.get('cached') else 'built'} at {path}"
    )
    run.extra["dpo_pairs"] = {**stats, "cache": str(path)}
    run.phase_seconds["dpo_pairs"] = time.time() - start
    run.offline_seconds = stats["sampling_seconds"]  # counted as training time: what the pairs cost to make
    return pairs.select_columns(["prompt", "chosen", "rejected"])
