"""What an installed trl-ext ships: the recipe and accelerate configs as package data (the checkout's
``recipes/configs`` and ``accelerate_configs`` are symlinks to them), found by name from any directory."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_checkout_paths_are_symlinks_to_the_package_data():
    from trl_ext.configs import ACCELERATE_CONFIGS, RECIPE_CONFIGS

    for link, target in ((REPO / "recipes" / "configs", RECIPE_CONFIGS), (REPO / "accelerate_configs", ACCELERATE_CONFIGS)):
        assert link.is_symlink() and not os.path.isabs(os.readlink(link)), link  # relative: survives a move
        assert link.resolve() == target


def test_resolve_config_by_path_or_shipped_name(tmp_path, monkeypatch):
    from trl_ext.configs import ACCELERATE_CONFIGS, RECIPE_CONFIGS, ConfigNotFoundError, resolve_config, shipped_configs

    monkeypatch.chdir(tmp_path)  # outside the checkout: the documented paths resolve to the shipped files
    qwen = RECIPE_CONFIGS / "gsm8k" / "qwen2.5-0.5b-instruct" / "dapo.yaml"
    assert resolve_config("recipes/configs/gsm8k/qwen2.5-0.5b-instruct/dapo.yaml") == qwen
    assert resolve_config("gsm8k/qwen2.5-0.5b-instruct/dapo.yaml", "recipe") == qwen
    assert resolve_config("embedded/dapo") == RECIPE_CONFIGS / "embedded" / "dapo.yaml"
    assert resolve_config("accelerate_configs/zero3.yaml") == resolve_config("zero3", "accelerate") == (
        ACCELERATE_CONFIGS / "zero3.yaml")
    own = tmp_path / "embedded" / "dapo.yaml"  # an existing path wins over a shipped name
    own.parent.mkdir()
    own.write_text("max_steps: 1\n")
    assert resolve_config("embedded/dapo.yaml") == Path("embedded/dapo.yaml")
    with pytest.raises(ConfigNotFoundError, match=r"'zero9.yaml' is not a file .*shipped: .*zero3.yaml"):
        resolve_config("zero9.yaml", "accelerate")
    shipped = shipped_configs()
    assert "embedded/dapo.yaml" in shipped["recipe"] and "zero3.yaml" in shipped["accelerate"]


def test_recipe_config_names_resolve_in_parse_recipe_args(tmp_path, monkeypatch):
    from trl import GRPOConfig, ModelConfig, TrlParser

    from trl_ext.recipe import RecipeConfigError, RLScriptArguments, parse_recipe_args

    monkeypatch.chdir(tmp_path)
    parser = TrlParser((RLScriptArguments, GRPOConfig, ModelConfig))
    _, args, _ = parse_recipe_args(parser, args=["--config", "gsm8k/qwen2.5-0.5b-instruct/grpo.yaml"])
    assert args.beta == pytest.approx(0.04)
    with pytest.raises(RecipeConfigError, match="not a shipped recipe config"):
        parse_recipe_args(TrlParser((RLScriptArguments, GRPOConfig, ModelConfig)), args=["--config", "nope.yaml"])
