"""On-policy preference pairs for DPO on verifiable math: sample k completions per training question from the start
model, verify them with the strict GSM8K check, and pair a correct completion (chosen) with an incorrect one
(rejected). Questions whose samples are all correct or all wrong give no pair; they are counted and reported.
Optionally (``chosen_fallback="reference"``) a question with no correct sample pairs the reference solution
(chosen, off-policy) with its incorrect samples.

The pairs are cached as a ``datasets`` dataset on disk, keyed by a hash of the start model (path and checkpoint
timestamps) and every setting that changes them, so reruns and the other ranks reuse them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)
CACHE_VERSION = "2"  # 2: explicit sampling config, only terminated completions chosen


def _model_fingerprint(model_path: str) -> dict:
    path = Path(model_path)
    if not path.is_dir():
        return {"model": model_path}
    files = sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")) + [path / "config.json"]
    return {
        "model": str(path.resolve()),
        "files": {f.name: [f.stat().st_size, int(f.stat().st_mtime)] for f in files if f.exists()},
    }


def pairs_key(model_path: str, settings: dict) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **_model_fingerprint(model_path), **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
):
    """Sample, verify and pair (no caching). ``dataset`` comes from ``load_gsm8k``. Returns ``(Dataset, stats)``."""
    import datasets

    from trl_ext.eval import _use_vllm, evaluate, load_model
    from trl_ext.recipe.run import zero3_init_disabled

    with zero3_init_disabled():
        if _use_vllm(backend):
            from transformers import AutoTokenizer

            model, tokenizer = None, AutoTokenizer.from_pretrained(model_path)
        else:
            model, tokenizer = load_model(model_path)
        summary, records = evaluate(
            model, tokenizer, dataset, num_samples=num_samples, temperature=temperature,
            max_new_tokens=max_new_tokens, batch_size=batch_size, progress=False, model_path=model_path, seed=seed,
        )
    del model
    rows, stats = make_pairs(records, dataset["solution"], max_pairs_per_question, chosen_fallback)
    stats["sample_mean_strict"] = summary["strict"].get(f"mean@{num_samples}", summary["strict"]["accuracy"])
    stats["sample_mean_flexible"] = summary["flexible"].get(f"mean@{num_samples}", summary["flexible"]["accuracy"])
    prompts = dataset["prompt"]
    answers = dataset["answer"]
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
    return datasets.Dataset.from_list(out) if out else None, stats


def default_cache_dir() -> Path:
    from trl_ext.models.tiny import default_cache_dir as root

    return root() / "dpo_pairs"


def onpolicy_pairs(model_path: str, dataset, *, cache_dir=None, dataset_desc: dict | None = None, **settings):
    """``build_onpolicy_pairs`` with an on-disk cache. Returns ``(Dataset, stats, cache path)``.

    Raises ``ValueError`` when no question yields a pair.
    """
    import datasets

    root = Path(cache_dir) if cache_dir else default_cache_dir()
    key = pairs_key(model_path, {**settings, "dataset": dataset_desc or {}, "rows": len(dataset)})
    final = root / f"pairs-{key}"
    stats_file = final / "pair_stats.json"
    if stats_file.exists():
        stats = json.loads(stats_file.read_text())
        stats["cached"] = True
        return datasets.load_from_disk(str(final / "data")), stats, final
    pairs, stats = build_onpolicy_pairs(model_path, dataset, **settings)
    if pairs is None:
        raise ValueError(
            f"no training question gave a (correct, incorrect) pair: {stats}. Sample more completions "
            "(dpo_num_samples), change dpo_temperature, or set dpo_chosen_fallback=reference"
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=root))
    try:
        pairs.save_to_disk(str(tmp / "data"))
        (tmp / "pair_stats.json").write_text(json.dumps({**stats, "model": model_path, "settings": settings}, indent=2))
        if final.exists():  # built concurrently by another run with the same key
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    stats["cached"] = False
    return datasets.load_from_disk(str(final / "data")), stats, final


def pairs_for_run(run):
    """The DPO recipe's training data: on-policy pairs from ``run``'s start model and training questions, built by
    the main process (the other ranks wait, then load the cache). Records the pair statistics in ``run.extra``."""
    from trl_ext.recipe.hardware import log

    s, training_args = run.script_args, run.training_args
    questions = run.train_dataset()
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
    # local=False: only the global main process samples; on several nodes the cache dir must be shared.
    start = time.time()
    with training_args.main_process_first(local=False, desc="on-policy DPO pairs"):
        pairs, stats, path = onpolicy_pairs(
            run.model_path, questions, cache_dir=s.dpo_pairs_cache_dir, dataset_desc=desc, **settings
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
    return pairs.select_columns(["prompt", "chosen", "rejected"])
