"""Colocated vLLM generation executed on CPU (vLLM's CPU build), for GRPO, DAPO, GSPO and PPO, in one process and
in two (`accelerate launch`, DDP and ZeRO-3), on the random tiny model. Each run is tests/vllm_tier/vllm_worker.py, which
checks after every weight sync that vLLM holds and computes with the policy's weights; this module checks its
records. Part of the optional tier: ``pytest -m vllm`` in the environment of ``.ci/vllm_env.sh``."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.configs import tiny_recipe_args
from helpers.launch import OFFLINE_ENV, RECIPES, REPO, launch, pythonpath
from helpers.vllm_stand_in import expected_weights
from helpers.worker import records

pytestmark = pytest.mark.vllm

WORKER = Path(__file__).with_name("vllm_worker.py")
# vLLM on CPU reserves its KV cache from this many GiB (else a share of the machine's memory per process)
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}
MAX_STEPS = 3
# vLLM holds bf16 copies of the float32 policy: its log-probabilities differ from HF's by bf16 rounding (~3e-3 seen)
LOGPROB_TOLERANCE = 0.02
MIN_POLICY_MOVE = 0.1  # the policy's next-token log-probs move by ~0.7 in 3 steps: far beyond the tolerance


def run_python(script, args, timeout=600):
    """``script`` under plain ``python`` (no launcher): what a user's single-process run does."""
    env = {**os.environ, **OFFLINE_ENV, **VLLM_ENV}
    env["PYTHONPATH"] = pythonpath(env.get("PYTHONPATH"))
    cmd = [sys.executable, str(script), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    assert proc.returncode == 0, f"{cmd} failed\n--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-12000:]}"
    return proc


def check_run(result, algo, model, world_size):
    syncs = result["syncs"]
    # one line per rank for the tier's log (`pytest -m vllm -rP` shows it): what was measured, and the timings
    print(f"{algo} rank {result['rank']}/{world_size}: {len(syncs)} syncs, max weight diff "
          f"{max(s['max_weight_diff'] for s in syncs)}, max logprob diff {max(s['max_logprob_diff'] for s in syncs):.4f}, "
          f"policy moved {syncs[-1]['policy_moved']:.3f}, vLLM generate calls {result['vllm_generate_calls']}, "
          f"DAPO rounds {result['rounds']}, engine+trainer init {result['init_seconds']:.1f} s, "
          f"train {result['train_seconds']:.1f} s")
    assert result["world_size"] == world_size and result["global_step"] == MAX_STEPS, result
    # one sync before each generation that follows an optimizer step (GSPO generates every 2 steps, the others every
    # step), each checked by the worker against the policy
    assert [s["step"] for s in syncs] == ([0, 2] if algo == "gspo" else list(range(MAX_STEPS))), syncs
    for sync in syncs:
        assert sync["vllm_params"] == 26, sync  # the tiny Llama's tensors as vLLM holds them (qkv, gate/up fused)
        assert sync["max_weight_diff"] == 0.0, f"vLLM's weights differ from the policy's in {sync['vllm_dtype']}: {sync}"
        assert sync["max_logprob_diff"] < LOGPROB_TOLERANCE, f"vLLM does not compute with the synced weights: {sync}"
    assert syncs[-1]["policy_moved"] > MIN_POLICY_MOVE, f"training did not move the policy enough to tell: {syncs}"
    # the policy's tensors under their checkpoint names, pushed whole: never PPO's critic (ppo_critic.*)
    assert sorted(result["pushed"]) == sorted(name for name, _ in expected_weights(model)), result["pushed"]
    assert result["hf_generate_calls"] == 0 and result["vllm_generate_calls"] >= len(syncs), result
    if algo == "dapo":
        # dynamic sampling drew again (half the prompts score flat) and every round generated through vLLM
        assert len(result["rounds"]) == MAX_STEPS and max(result["rounds"]) > 1, result["rounds"]
        assert result["vllm_generate_calls"] == sum(result["rounds"]), result


@pytest.mark.parametrize("algo", ["grpo", "dapo", "gspo", "ppo"])
def test_one_process(algo, tiny_model_path, tmp_path):
    proc = run_python(WORKER, ["--algo", algo, "--model", tiny_model_path, "--output_dir", tmp_path,
                               "--max_steps", MAX_STEPS])
    (result,) = records(proc.stdout, "VLLM_RESULT")
    check_run(result, algo, tiny_model_path, world_size=1)


@pytest.mark.parametrize(
    ("algo", "config"),
    [("grpo", "multi_gpu"), ("dapo", "zero3"), ("gspo", "multi_gpu"), ("ppo", "zero3")],
)
def test_two_processes(algo, config, tiny_model_path, tmp_path):
    """Each rank runs its own colocated engine on its share of the prompts; under ZeRO-3 the sync gathers the
    partitioned policy (a collective on every rank). DDP on CPU: `launch` passes --use_cpu true."""
    proc = launch(WORKER, ["--algo", algo, "--model", tiny_model_path, "--output_dir", tmp_path,
                           "--max_steps", MAX_STEPS], config=config, env=VLLM_ENV, timeout=900)
    results = records(proc.stdout, "VLLM_RESULT")
    assert sorted(r["rank"] for r in results) == [0, 1], proc.stdout[-3000:]
    for result in results:
        check_run(result, algo, tiny_model_path, world_size=2)
    if algo == "dapo":  # the ranks agree on the number of rounds (a mismatch would hang the collectives)
        assert results[0]["rounds"] == results[1]["rounds"]


def test_recipe_on_cpu_keeps_vllm_from_the_command_line(tiny_model_path, tmp_path):
    """``--use_vllm true --vllm_mode server`` on a recipe's command line without CUDA: the hardware adaptation keeps
    vLLM, in colocate mode, with its weights made reloadable, and the run trains on vLLM's completions (TRL logs the
    sampling log-prob difference only for those) generated with the synced weights."""
    out = tmp_path / "out"
    args = [*tiny_recipe_args("grpo", tiny_model_path, out), "--use_vllm", "true", "--vllm_mode", "server"]
    proc = run_python(RECIPES / "grpo_math.py", args)
    assert "vLLM colocate on CPU; set use_cpu=True, vllm_mode=colocate (no CUDA: server mode cannot sync weights)" in (
        proc.stdout
    )
    (result,) = records(proc.stdout, "RECIPE_RESULT")
    assert result["global_step"] == 2, result
    steps = [row for row in map(json.loads, (out / "history.jsonl").read_text().splitlines()) if "loss" in row]
    assert len(steps) == 2
    # the largest difference over a batch's tokens (64 here), not over 5 next-token log-probs: a looser bound
    assert all(row["sampling/sampling_logp_difference/max"] < 2.5 * LOGPROB_TOLERANCE for row in steps), steps
