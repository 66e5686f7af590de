"""The start model's evaluation is computed once per model files and evaluation settings and then reused: a second
run copies the same files into its eval_before/ folders; other settings or changed weights evaluate again."""

import json
import os
import time

from trl_ext.recipe.args import RecipeScriptArguments
from trl_ext.recipe.evaluation import evaluate_start_model


def _args(**kw):
    return RecipeScriptArguments(**{"eval_limit": 4, "eval_max_new_tokens": 4, "eval_num_samples": 2, **kw})


def test_start_model_evaluation_is_reused_only_for_the_same_model_and_settings(tiny_model_path, tmp_path):
    import shutil

    tiny_model_path = str(shutil.copytree(tiny_model_path, tmp_path / "model"))  # its weights are touched below
    cache = tmp_path / "cache"
    first, reused = evaluate_start_model(tiny_model_path, _args(), tmp_path / "a", cache_dir=cache)
    assert not reused and (tmp_path / "a" / "eval_before_sampled" / "samples.jsonl").exists()
    again, reused = evaluate_start_model(tiny_model_path, _args(), tmp_path / "b", cache_dir=cache)
    assert reused and again == first
    for name in ("eval_before/samples.jsonl", "eval_before_sampled/samples.jsonl"):
        assert (tmp_path / "b" / name).read_text() == (tmp_path / "a" / name).read_text()
    # another setting, or the same path with new weights, is another evaluation
    assert not evaluate_start_model(tiny_model_path, _args(eval_limit=3), tmp_path / "c", cache_dir=cache)[1]
    weights = next(p for p in os.scandir(tiny_model_path) if p.name.endswith(".safetensors"))
    later = time.time() + 10
    os.utime(weights.path, (later, later))
    summary, reused = evaluate_start_model(tiny_model_path, _args(), tmp_path / "d", cache_dir=cache)
    assert not reused and json.loads((tmp_path / "d" / "eval_before" / "summary.json").read_text()) == summary
