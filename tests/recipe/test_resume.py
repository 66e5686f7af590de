"""Crash and resume: every recipe, 2 processes under DeepSpeed ZeRO-3, is SIGKILLed in the middle of the step after
its first checkpoint (checkpoint-2; GSPO and PPO, with 4 updates per rollout: checkpoint-4), relaunched with
`--resume_from_checkpoint true`, and must finish with the same per-step metrics as an uninterrupted run with the same
seed. PPO's tiny run has 4 steps per epoch (one rollout of 64 prompts), so its resume also starts a new epoch (the
sampler's data order is restored by `ResumeStateCallback`). Plus the checks that a relaunch cannot silently start over (`resolve_resume`).

How the kill lands mid-step: the RL recipes train on `stalling_length_reward`, which on rank 0, once the checkpoint
is complete, writes a marker file and blocks inside the reward call (generation done, loss not yet computed); the
test then SIGKILLs the launcher and every worker. DPO has no reward call, so its test kills the job as soon as the
checkpoint is complete, while later steps are still running.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.configs import one_launch_per_trainer, tiny_recipe_args
from helpers.launch import OFFLINE_ENV, RECIPES, REPO, pythonpath
from helpers.rewards import checkpoint_complete, reward_path, stalling_length_reward

from trl_ext.recipe.algorithms import algorithm_names
from trl_ext.recipe.checkpoints import resolve_resume
from trl_ext.recipe.config import RecipeConfigError

# every compared algorithm: one per trainer class by default, the GRPOTrainer loss variants in the slow suite
ALGOS = [a if a in one_launch_per_trainer() else pytest.param(a, marks=pytest.mark.slow)
         for a in algorithm_names(controls=False)]
# GSPO, PPO, CISPO and SAPO update 4 times per rollout: checkpoints at rollout boundaries (a resume from inside a
# rollout regenerates it). DPO steps are fast: more of them, so that the kill surely lands before the end.
SAVE_STEPS = {"gspo": 4, "ppo": 4, "cispo": 4, "sapo": 4}
MAX_STEPS = {"gspo": 8, "ppo": 8, "cispo": 8, "sapo": 8, "dpo": 8}
# metrics that depend on wall-clock time or on the process's history rather than on the training itself
UNSTABLE = ("step_time", "elapsed_s", "train_runtime", "train_samples_per_second", "train_steps_per_second")


def resume_args(algo, model, output_dir):
    args = tiny_recipe_args(algo, model, str(output_dir), reward=reward_path(stalling_length_reward))
    i = args.index("--max_steps")
    args[i + 1] = str(MAX_STEPS.get(algo, 4))
    # the start-model evaluation only for DAPO, which checks that a resumed run reuses it instead of re-running it
    evals = ["--eval_before", "true" if algo == "dapo" else "false", "--eval_after", "false"]
    return args + ["--save_strategy", "steps", "--save_steps", str(SAVE_STEPS.get(algo, 2)), "--seed", "7", *evals]


def launch_cmd(algo, args):
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "accelerate_configs" / "zero3.yaml"), "--num_processes", "2",
        "--mixed_precision", "no", "--main_process_port", str(29700 + os.getpid() % 200),
        str(RECIPES / f"{algo}_math.py"), *args,
    ]


def job_env(extra=None):
    return {**os.environ, **OFFLINE_ENV, "DS_ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": pythonpath(), **(extra or {})}  # this checkout's trl_ext, tests/ for helpers


def run_to_end(algo, args, timeout=400):
    proc = subprocess.run(launch_cmd(algo, args), capture_output=True, text=True, timeout=timeout, env=job_env(),
                          cwd=REPO)
    assert proc.returncode == 0, f"{algo} run failed\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc


def kill_tree(proc: subprocess.Popen) -> None:
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)


def crash_mid_run(algo, args, output_dir: Path, tmp_path: Path, timeout=400):
    """Launch, wait until the first checkpoint is complete and the job is inside the next step, SIGKILL the whole job."""
    checkpoint, marker = output_dir / f"checkpoint-{SAVE_STEPS.get(algo, 2)}", tmp_path / f"{algo}-stalled"
    log = open(tmp_path / f"{algo}-crashed.log", "w")
    env = job_env({"TRL_EXT_TEST_STALL_AFTER": str(checkpoint), "TRL_EXT_TEST_STALL_MARKER": str(marker)})
    proc = subprocess.Popen(launch_cmd(algo, args), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    deadline, reached = time.time() + timeout, False
    try:
        while time.time() < deadline and proc.poll() is None:
            reached = marker.exists() if algo != "dpo" else checkpoint_complete(checkpoint, 2)
            if reached:
                break
            time.sleep(0.05)
        finished_early = proc.poll() is not None
        kill_tree(proc)
    finally:
        log.close()
        if proc.poll() is None:
            kill_tree(proc)
    text = (tmp_path / f"{algo}-crashed.log").read_text(errors="replace")
    assert not finished_early, f"{algo}: the job ended before it could be killed\n{text[-4000:]}"
    assert reached, f"{algo}: {checkpoint.name} never completed\n{text[-4000:]}"
    return text


def step_logs(output_dir: Path) -> dict[int, dict]:
    """Per-step training log entries from history.jsonl, keyed by step (the final train summary left out)."""
    entries = [json.loads(line) for line in (output_dir / "history.jsonl").read_text().splitlines()]
    return {e["step"]: e for e in entries if "loss" in e and "train_runtime" not in e}


def assert_same_metrics(reference: dict, resumed: dict, step: int, tolerance: float):
    keys = sorted(k for k in reference if k not in UNSTABLE and isinstance(reference[k], int | float))
    assert keys, reference
    for key in keys:
        a, b = reference[key], resumed.get(key)
        assert b is not None, f"step {step}: {key} missing after resume"
        if math.isnan(a):
            assert math.isnan(b), f"step {step}: {key} {a} vs {b}"
        else:
            assert math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance), f"step {step}: {key} {a} vs resumed {b}"


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("algo", ALGOS)
def test_sigkill_mid_step_then_resume_matches_uninterrupted(algo, tiny_model_path, tmp_path):
    reference_dir, crashed_dir = tmp_path / "reference", tmp_path / "crashed"
    run_to_end(algo, resume_args(algo, tiny_model_path, reference_dir))

    args = resume_args(algo, tiny_model_path, crashed_dir)
    crash_mid_run(algo, args, crashed_dir, tmp_path)
    assert not (crashed_dir / "summary.json").exists()
    last = MAX_STEPS.get(algo, 4)
    assert not (crashed_dir / f"checkpoint-{last}").exists()

    if algo == "grpo":  # the same command again refuses to start over on top of the checkpoints (one process, fast)
        refused = subprocess.run([sys.executable, str(RECIPES / f"{algo}_math.py"), *args], capture_output=True,
                                 text=True, timeout=300, env=job_env(), cwd=REPO)
        assert refused.returncode != 0, refused.stdout[-2000:]
        assert "already holds checkpoints (checkpoint-2)" in refused.stderr
    # with --resume_from_checkpoint true it continues from the latest complete checkpoint and finishes
    resumed = run_to_end(algo, args + ["--resume_from_checkpoint", "true"])
    assert "resuming from" in resumed.stderr + resumed.stdout
    if algo == "dapo":
        assert "reusing the start model's evaluation" in resumed.stderr + resumed.stdout
    if algo == "dpo":
        assert "cached at" in resumed.stderr + resumed.stdout  # the preference pairs are not sampled again

    summary = json.loads((crashed_dir / "summary.json").read_text())
    assert summary["global_step"] == last
    # it really continued from the checkpoint: only the remaining steps ran in the resumed process
    saved = SAVE_STEPS.get(algo, 2)
    assert summary["resumed_from"] == str(crashed_dir / f"checkpoint-{saved}")
    assert len(summary["step_times"]) == last - saved
    reference, after = step_logs(reference_dir), step_logs(crashed_dir)
    assert sorted(reference) == sorted(after) == list(range(1, last + 1))
    for step in range(1, last + 1):
        # steps up to the checkpoint come back from its trainer_state.json; later ones were recomputed after the resume
        assert_same_metrics(reference[step], after[step], step, tolerance=1e-4)
    # training time goes on from the checkpoint's instead of restarting at 0
    elapsed = [after[step]["elapsed_s"] for step in range(1, last + 1)]
    assert elapsed == sorted(elapsed), elapsed


def test_relaunch_without_resume_is_refused(tmp_path):
    assert resolve_resume(None, tmp_path) is None  # a fresh folder
    (tmp_path / "checkpoint-2").mkdir()
    assert resolve_resume(None, tmp_path) is None  # an incomplete checkpoint (killed while saving) is not a run
    with pytest.raises(RecipeConfigError, match="no complete checkpoint.*incomplete: checkpoint-2"):
        resolve_resume("true", tmp_path)
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-10").mkdir()
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-12").mkdir()  # incomplete: the resume must skip it
    with pytest.raises(RecipeConfigError, match=r"already holds checkpoints \(checkpoint-2, checkpoint-10\)"):
        resolve_resume(None, tmp_path)
    assert resolve_resume("true", tmp_path) == str(tmp_path / "checkpoint-10")  # numeric order, not text order
    assert resolve_resume("Last", tmp_path) == str(tmp_path / "checkpoint-10")
    assert resolve_resume(str(tmp_path / "checkpoint-2"), tmp_path) == str(tmp_path / "checkpoint-2")
    assert resolve_resume("false", tmp_path) is None
    with pytest.raises(RecipeConfigError, match="not a checkpoint folder"):
        resolve_resume(str(tmp_path / "checkpoint-12"), tmp_path)


def test_checkpoints_inside_a_rollout_are_flagged(tmp_path, capsys):
    from trl import GRPOConfig

    from trl_ext import GSPOConfig
    from trl_ext.recipe.checkpoints import optimizer_steps_per_rollout, warn_checkpoints_inside_rollouts

    common = {"output_dir": str(tmp_path), "bf16": False, "save_strategy": "steps", "report_to": "none"}
    # GRPO's default: one generation per optimizer step, whatever the gradient accumulation
    grpo = GRPOConfig(gradient_accumulation_steps=8, save_steps=50, **common)
    assert optimizer_steps_per_rollout(grpo) == 1
    gspo = GSPOConfig(gradient_accumulation_steps=2, num_minibatches=4, save_steps=50, **common)
    assert optimizer_steps_per_rollout(gspo) == 4
    assert optimizer_steps_per_rollout(GRPOConfig(num_iterations=2, save_steps=50, **common)) == 2
    warn_checkpoints_inside_rollouts(grpo)
    assert "optimizer steps per rollout" not in capsys.readouterr().out
    warn_checkpoints_inside_rollouts(gspo)
    assert "save_steps=50 is not a multiple of the 4 optimizer steps per rollout" in capsys.readouterr().out
    warn_checkpoints_inside_rollouts(GSPOConfig(gradient_accumulation_steps=2, **{**common, "save_steps": 40}))
    assert "optimizer steps per rollout" not in capsys.readouterr().out
