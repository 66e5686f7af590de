"""The vLLM tier (``pytest -m vllm``): needs vLLM's CPU build, which the project's own environment does not have.
Build it with ``.ci/vllm_env.sh`` and run ``.venv-vllm/bin/python -m pytest -m vllm tests/vllm_tier`` (docs/vllm.md).

The folder is not called ``vllm``: pytest puts tests/ on ``sys.path``, where a folder ``vllm`` is an importable
namespace package that TRL's ``is_vllm_available()`` finds (and then fails on its version, 'N/A')."""

import importlib.util

import pytest


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("vllm") is not None:
        return
    skip = pytest.mark.skip(reason="vllm is not installed: build .venv-vllm with .ci/vllm_env.sh (docs/vllm.md)")
    for item in items:
        if item.get_closest_marker("vllm") is not None:
            item.add_marker(skip)
