"""The checkout's paths, the offline environment, and ``launch``: a real `accelerate launch` of a script on CPU."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
RECIPES = REPO / "recipes"
ACCELERATE_CONFIGS = REPO / "accelerate_configs"
GSM8K_DIR = REPO.parent / "shared" / "data" / "gsm8k"

# The embedded warm start's build (about 5.5 minutes on 2 cores) plus a 2-step recipe run, with room for a busy machine
BUILD_TIMEOUT = 1200

# No model hub here or in CI; TRL's trainer init would otherwise try to send telemetry.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_MODE": "disabled",
}


def pythonpath(existing: str | None = None) -> str:
    """PYTHONPATH for a subprocess: this checkout (its trl_ext, also where another one is installed), then tests/ (for
    ``helpers``, e.g. a recipe's ``--reward_funcs helpers.rewards:length_reward``), then ``existing``."""
    parts = [str(REPO), str(TESTS), *(existing.split(os.pathsep) if existing else [])]
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc; empty where there is none)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def run_in_own_group(cmd, *, timeout, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True)`` that, on timeout, ends the command and every process
    it started: a launcher's ranks run in sessions of their own (torch elastic), so killing only the launcher of a
    hung launch would leave them running (and holding the CPUs) after the test failed. The launcher gets SIGTERM
    first (it stops its workers), then whatever is left SIGKILL. Raises ``subprocess.TimeoutExpired`` as
    ``subprocess.run`` does."""
    import signal
    import time

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = _descendants(proc.pid)
        proc.terminate()
        time.sleep(10)
        for pid in [proc.pid, *tree]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        stdout, stderr = proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout, stdout, stderr) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def launch(script, args=(), *, config="zero3", num_processes=2, timeout=600, env=None, mixed_precision="no"):
    """Run `accelerate launch` of `script` with one of the project's configs on CPU; return the CompletedProcess.

    CPU settings (docs/recipes.md, "Hardware adaptation"): fp32 (`--mixed_precision no`), `DS_ACCELERATOR=cpu` and the
    gloo backend for DeepSpeed, `--use_cpu true` passed to the script for DDP (scripts must accept it, as TrlParser-based
    ones and ``helpers.worker.worker_parser`` do).
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
    # the launcher adds the cwd only for some launches: this checkout and tests/ explicitly
    full_env["PYTHONPATH"] = pythonpath(full_env.get("PYTHONPATH"))
    proc = run_in_own_group(cmd, timeout=timeout, env=full_env, cwd=REPO)
    if proc.returncode != 0:
        raise AssertionError(
            f"accelerate launch {script} ({config}) failed with {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-12000:]}"
        )
    return proc
