"""What an installed trl-ext ships: the recipe and accelerate configs as package data (the checkout's
``recipes/configs`` and ``accelerate_configs`` are symlinks to them), found by name from any directory."""

import os
from pathlib import Path

import pytest
from helpers.launch import OFFLINE_ENV, REPO


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


def _copy_sources(dest: Path) -> Path:
    """What a wheel is built from (pyproject, README, the package), copied so that the build leaves no build/ or
    egg-info in the checkout and cannot pick up stale files from an earlier build there."""
    import shutil

    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "trl_ext", dest / "trl_ext", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


@pytest.mark.timeout(300)
def test_installed_wheel_runs_from_outside_the_checkout(tmp_path):
    """Build the wheel, install it (no dependencies: torch/trl come from the system's packages) into a fresh venv,
    and from a directory outside the checkout run what an installed user runs: `trl-ext configs`, a one-step
    `trl-ext train dapo` on the embedded testbed (default config from the package data), `trl-ext compare --dry-run`,
    `trl-ext eval --help` and the old `trl-ext-eval` name."""
    import json
    import subprocess
    import sys

    def run(cmd, cwd, env=None, timeout=240):
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{cmd} failed ({proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
        return proc

    src, wheels, venv, work = _copy_sources(tmp_path / "src"), tmp_path / "wheels", tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(src)],
        tmp_path)
    [wheel] = wheels.glob("trl_ext-*.whl")
    # The system's packages (torch, trl...) are visible through a plain path entry rather than
    # --system-site-packages, so that the system's .pth hooks do not run: an editable trl-ext installed there adds an
    # import hook that would serve the checkout's modules (even submodules the wheel lacks) to the venv.
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    python = venv / "bin" / "python"
    purelib = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path)
    import site

    (Path(purelib.stdout.strip()) / "_system_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    # --ignore-installed: a trl-ext in the system site-packages (an editable checkout) is neither reused nor removed
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--ignore-installed",
         str(wheel)], tmp_path)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OFFLINE_ENV, PYTHONNOUSERSITE="1", OMP_NUM_THREADS="1", PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}")
    code = ("import importlib.util, trl, trl_ext; spec = importlib.util.find_spec('trl_ext.compare'); "
            "print(trl_ext.__file__, spec.origin if spec else '-', trl.__file__)")
    where, compare_pkg, trl_file = run([str(python), "-c", code], work, env).stdout.split()
    assert Path(where).is_relative_to(venv), where  # the wheel's package, not the checkout's
    assert compare_pkg == "-" or Path(compare_pkg).is_relative_to(venv), compare_pkg  # nothing else of the checkout
    assert not Path(trl_file).is_relative_to(venv)  # dependencies from the system

    listing = run([str(venv / "bin" / "trl-ext"), "configs"], work, env).stdout
    assert "gsm8k/qwen2.5-0.5b-instruct/dapo.yaml" in listing and "zero3.yaml" in listing
    zero3 = run([str(venv / "bin" / "trl-ext"), "configs", "--path", "accelerate_configs/zero3.yaml"], work, env)
    assert Path(zero3.stdout.strip()).is_relative_to(venv)

    out = work / "dapo"
    run([str(venv / "bin" / "trl-ext"), "train", "dapo", "--max_steps", "1", "--num_train_examples", "16",
         "--eval_limit", "4", "--eval_num_samples", "1", "--output_dir", str(out)], work, env)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["global_step"] == 1 and summary["after"]["num_problems"] == 4
    assert Path(summary["config"]).is_relative_to(venv) and summary["config"].endswith("embedded/dapo.yaml")
    assert summary["phase_seconds"].get("warm_start", 0) < 30  # the cached warm start, not a rebuild

    # the comparison plans from the shipped configs (its commands still name recipes/<algo>_math.py: running them
    # from an install waits for the comparison to launch `-m trl_ext.cli train <algo>` instead)
    embedded = Path(run([str(venv / "bin" / "trl-ext"), "configs", "--path", "embedded/dapo.yaml"], work, env)
                    .stdout.strip()).parent
    plan = run([str(venv / "bin" / "trl-ext"), "compare", "--dry-run", "--algos", "grpo,dapo", "--controls", "none",
                "--config-dir", str(embedded), "--output-dir", str(work / "comparison")], work, env)
    assert "test dapo seed 0" in plan.stdout and "--max_samples" in plan.stdout
    assert "--model" in run([str(venv / "bin" / "trl-ext"), "eval", "--help"], work, env).stdout
    run([str(venv / "bin" / "trl-ext-eval"), "--help"], work, env)
