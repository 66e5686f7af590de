"""Shared fixtures: offline environment, tiny models, and a helper for real 2-process `accelerate launch` runs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GSM8K_DIR = REPO.parent / "shared" / "data" / "gsm8k"
ACCELERATE_CONFIGS = REPO / "accelerate_configs"

# No model hub here or in CI; TRL's trainer init would otherwise try to send telemetry.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_MODE": "disabled",
}
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


def tagged_records(stdout, tag):
    """The text after each ``tag`` up to the end of its line, in order.

    Workers print ``tag + payload + "\\n"`` in one write (atomic on a pipe below PIPE_BUF), but another rank's
    unterminated output may precede it on the same line, so the tag is looked for anywhere in a line.
    """
    return [line.split(tag + " ", 1)[1] for line in stdout.splitlines() if tag + " " in line]


def launch(script, args=(), *, config="zero3", num_processes=2, timeout=600, env=None, mixed_precision="no"):
    """Run `accelerate launch` of `script` with one of the project's configs on CPU; return the CompletedProcess.

    CPU settings (docs/recipes.md, "Hardware adaptation"): fp32 (`--mixed_precision no`), `DS_ACCELERATOR=cpu` and the gloo
    backend for DeepSpeed, `--use_cpu true` passed to the script for DDP (scripts must accept it, as TrlParser-based ones do).
    ``mixed_precision=None`` keeps the config's own setting (bf16), as a user who forgot the flag on CPU would.
    """
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ACCELERATE_CONFIGS / f"{config}.yaml"),
        "--num_processes", str(num_processes),
        *(["--mixed_precision", mixed_precision] if mixed_precision else []),
        "--main_process_port", str(29500 + os.getpid() % 1000),
    ]
    cmd += [str(script), *map(str, args)]
    if config == "multi_gpu":
        # DDP on CPU: the *training* argument use_cpu (accelerate's own --cpu would start a single process).
        cmd += ["--use_cpu", "true"]
    full_env = {**os.environ, **OFFLINE_ENV, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1", **(env or {})}
    # this checkout's trl_ext, also where another one is installed (the launcher adds the cwd only for some launches)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (full_env.get("PYTHONPATH"), str(REPO)) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)
    if proc.returncode != 0:
        raise AssertionError(
            f"accelerate launch {script} ({config}) failed with {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-12000:]}"
        )
    return proc
