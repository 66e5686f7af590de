"""The held-out evaluation of a recipe run (main process only): greedy, plus a sampled pass when
``eval_num_samples > 1``; whether a stored evaluation of the start model can be reused after a resume; merging a LoRA
adapter into a full model to evaluate."""

from __future__ import annotations

import json
from pathlib import Path

from trl_ext.recipe.distributed import zero3_init_disabled
from trl_ext.recipe.hardware import log
from trl_ext.rewards.answers import MODES


def evaluate_model(model_path, tag: str, script_args, output_dir) -> dict:
    """Evaluate a saved model on the held-out split with the script arguments' settings; the per-problem results go
    to ``output_dir/eval_<tag>`` (and ``eval_<tag>_sampled``). Returns the summary (greedy, with ``sampled``)."""
    from trl_ext.eval import evaluate_path, format_summary

    s = script_args
    output_dir = Path(output_dir)
    common = dict(
        limit=s.eval_limit,
        max_new_tokens=s.eval_max_new_tokens,
        batch_size=s.eval_batch_size,
        backend=s.eval_backend,
        progress=False,
        dataset_kwargs={**s.dataset_kwargs(), "num_examples": s.eval_limit},
    )
    with zero3_init_disabled():
        summary = evaluate_path(str(model_path), s.dataset_source, s.dataset_test_split,
                                output_dir=output_dir / f"eval_{tag}", **common)
        if s.eval_num_samples > 1:
            sampled = evaluate_path(str(model_path), s.dataset_source, s.dataset_test_split,
                                    output_dir=output_dir / f"eval_{tag}_sampled", num_samples=s.eval_num_samples,
                                    temperature=s.eval_temperature, **common)
            strategy = sampled["by_strategy"]
            summary["sampled"] = {
                "num_samples": sampled["num_samples"],
                "temperature": sampled["temperature"],
                **{m: sampled[m] for m in MODES},
                "shows_work_share": strategy["worked"]["completions"]
                / max(1, strategy["worked"]["completions"] + strategy["direct"]["completions"]),
                "by_strategy": strategy,
                "mean_completion_tokens": sampled["mean_completion_tokens"],
            }
            (output_dir / f"eval_{tag}" / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"evaluation {tag} training:\n{format_summary(summary)}")
    return summary


def _evaluation_settings(script_args) -> dict:
    s = script_args
    return {"kind": "evaluation", "source": s.dataset_source, "split": s.dataset_test_split, "limit": s.eval_limit,
            "max_new_tokens": s.eval_max_new_tokens, "batch_size": s.eval_batch_size, "backend": s.eval_backend,
            "num_samples": s.eval_num_samples if s.eval_num_samples > 1 else 0,
            "temperature": s.eval_temperature if s.eval_num_samples > 1 else None, **s.dataset_kwargs()}


def evaluate_start_model(model_path, script_args, output_dir, cache_dir=None) -> tuple[dict, bool]:
    """The start model's evaluation into ``output_dir/eval_before*``, computed once per start model (path and weight
    file stamps) and evaluation settings and kept in ``<cache>/evaluations/<key>``: the runs of a comparison all start
    from one model, and its greedy pass and seeded sampled pass give the same numbers every time. Returns
    ``(summary, reused)``."""
    import shutil
    import tempfile

    from trl_ext.models.tiny import default_cache_dir
    from trl_ext.recipe.sampling import cache_key, publish

    output_dir = Path(output_dir)
    root = Path(cache_dir) if cache_dir else default_cache_dir() / "evaluations"
    cached = root / cache_key(str(model_path), _evaluation_settings(script_args))
    names = ("eval_before", "eval_before_sampled")
    if (cached / "eval_before" / "summary.json").exists():
        for name in names:
            if (cached / name).is_dir():
                shutil.copytree(cached / name, output_dir / name, dirs_exist_ok=True)
        log(f"the start model's evaluation is reused from {cached}")
        return json.loads((output_dir / "eval_before" / "summary.json").read_text()), True
    summary = evaluate_model(model_path, "before", script_args, output_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=cached.name + ".tmp-", dir=root))
    try:
        for name in names:
            if (output_dir / name).is_dir():
                shutil.copytree(output_dir / name, tmp / name)
        publish(tmp, cached)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return summary, False


def same_evaluation(stored: dict, script_args, model_path) -> bool:
    """Whether a stored evaluation of the start model was made with the current evaluation settings."""
    s = script_args
    wanted = {"model": str(model_path), "source": s.dataset_source, "split": s.dataset_test_split,
              "max_new_tokens": s.eval_max_new_tokens}
    if any(stored.get(k) != v for k, v in wanted.items()):
        return False
    sampled = stored.get("sampled") or {}
    if sampled.get("num_samples", 0) != (s.eval_num_samples if s.eval_num_samples > 1 else 0):
        return False
    if sampled and sampled.get("temperature") != s.eval_temperature:
        return False
    return s.eval_limit is None or stored.get("num_problems") == s.eval_limit


def merge_lora(output_dir, tokenizer) -> Path:
    """LoRA: merge the adapter saved in ``output_dir`` into its base model and save it to ``output_dir/merged``."""
    from peft import AutoPeftModelForCausalLM

    output_dir = Path(output_dir)
    merged_dir = output_dir / "merged"
    with zero3_init_disabled():
        model = AutoPeftModelForCausalLM.from_pretrained(str(output_dir), dtype="auto")
        model = model.merge_and_unload()
        model.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    return merged_dir
