"""Shared fixtures: offline environment and tiny models. What the tests share besides fixtures (paths, `launch` for
real 2-process `accelerate launch` runs, toy rewards, tiny configs, the workers' protocol) is in ``helpers``."""

import os
import subprocess
import time

import pytest
from helpers.launch import (  # noqa: F401 (REPO: for `from conftest import`)
    BUILD_TIMEOUT,
    GSM8K_DIR,
    OFFLINE_ENV,
    RECIPES,
    REPO,
    launch,
)
from helpers.worker import tagged_records  # noqa: F401 (for `from conftest import`)

os.environ.update(OFFLINE_ENV)


@pytest.fixture(scope="session")
def gsm8k_dir():
    if not (GSM8K_DIR / "test.jsonl").exists():
        pytest.skip(f"GSM8K not found at {GSM8K_DIR}")
    return GSM8K_DIR


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A randomly initialised tiny Llama + ChatML tokenizer, saved to disk (built once per test session)."""
    from trl_ext.models.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny_model")))


@pytest.fixture(scope="session")
def embedded_cache_launch(tmp_path_factory):
    """README's 2-process testbed command (`accelerate launch --config_file accelerate_configs/zero3.yaml
    --num_processes 2 --mixed_precision no recipes/gspo_math.py`), 2 steps, with an empty ``TRL_EXT_CACHE``, as on a
    fresh machine: the launch builds the embedded warm start. Returns ``(cache folder, completed launch, seconds)``.

    The suite's one build of the default warm start: tests that run the embedded default pass this folder as
    ``TRL_EXT_CACHE`` (``embedded_cache``) instead of building it again in the user's cache. A test that uses it
    first pays the build (about 5 minutes on 2 cores): give it ``pytest.mark.timeout(BUILD_TIMEOUT + its own)``."""
    cache, out = tmp_path_factory.mktemp("empty_cache"), tmp_path_factory.mktemp("gspo_fresh")
    start = time.time()
    try:
        proc = launch(RECIPES / "gspo_math.py", ["--max_steps", "2", "--eval_limit", "8", "--eval_num_samples", "0",
                                                 "--output_dir", out], config="zero3",
                      timeout=BUILD_TIMEOUT - 60, env={"TRL_EXT_CACHE": str(cache)})
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"2-process launch from an empty cache did not finish in {err.timeout} s (deadlock?)\n"
                             f"{(err.stderr or '')[-4000:]}") from err
    return cache, proc, time.time() - start


@pytest.fixture(scope="session")
def embedded_cache(embedded_cache_launch):
    """A ``TRL_EXT_CACHE`` folder holding the embedded warm start (see ``embedded_cache_launch``)."""
    return embedded_cache_launch[0]
