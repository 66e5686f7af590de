"""Shared fixtures: offline environment and tiny models. What the tests share besides fixtures (paths, `launch` for
real 2-process `accelerate launch` runs, toy rewards, tiny configs, the workers' protocol) is in ``helpers``."""

import os

import pytest
from helpers.launch import GSM8K_DIR, OFFLINE_ENV, REPO, launch  # noqa: F401 (REPO, launch: for `from conftest import`)
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
