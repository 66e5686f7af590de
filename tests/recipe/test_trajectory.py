"""Pinned trajectory of the mission's entry point: `accelerate launch recipes/dapo_math.py` (one process, the embedded
default config, the warm start built once by the suite: conftest's ``embedded_cache``) for 6 optimizer steps at the YAML's seed, evaluations off, logging every step.
The per-step metrics in ``history.jsonl`` must match the values recorded for this CPU vendor from the code before the
recipe restructuring (two runs were bitwise identical; the tolerance only absorbs float noise), also when the same program
runs as `accelerate launch -m trl_ext.cli train dapo`. A change here means the training itself changed, not just the
code around it. About 12 s per entry point on 2 cores once the warm start is cached."""

import json
import os
import subprocess
import sys

import pytest
from helpers.launch import BUILD_TIMEOUT, OFFLINE_ENV, REPO

from trl_ext.compare.machine import cpu_vendor

STEPS = 6
KEYS = ("loss", "reward", "reward_std", "grad_norm", "num_tokens", "completions/mean_length", "entropy",
        "dapo/generation_rounds")
# CPU vendor -> step -> values of KEYS (OMP_NUM_THREADS=1). The warm start's 650 SFT steps and these 6 RL steps run
# on the CPU's own float kernels, and AMD's and Intel's differ in the last bits, which 650 steps amplify: the same
# code gives another (equally valid) trajectory on each, and each is reproducible on its own CPUs (an Intel rebuild of
# the warm start was bit-identical).
PINNED = {
    # recorded at commit b3c1279 on AMD EPYC
    "AuthenticAMD": {
        1: (-0.018965797498822212, 0.125, 0.3415650427341461, 1.1102770566940308, 989.0, 12.8125, 0.29897475242614746,
            1.0),
        2: (0.007472846191376448, 0.375, 0.5, 1.6791208982467651, 1971.0, 11.875, 0.2633764445781708, 1.0),
        3: (-0.2755993902683258, 0.375, 0.5, 1.9867722988128662, 2908.0, 10.0625, 0.2944251298904419, 1.0),
        4: (-0.35153868794441223, 0.1875, 0.40311291813850403, 1.608253002166748, 4105.0, 17.8125, 0.23619143664836884,
            1.0),
        5: (0.12891477346420288, 0.15625, 0.3689020276069641, 1.9403115510940552, 6015.0, 10.4375, 0.342169851064682,
            2.0),
        6: (-0.13830788433551788, 0.125, 0.3415650427341461, 1.5356899499893188, 6952.0, 10.0625, 0.30055439472198486,
            1.0),
    },
    # recorded at commit 4986591 (the landed code before issue 18) on Intel Xeon, AVX-512
    "GenuineIntel": {
        1: (-0.022634949535131454, 0.125, 0.3415650427341461, 1.7064883708953857, 987.0, 12.6875, 0.28045427799224854,
            1.0),
        2: (-0.12938012182712555, 0.4375, 0.5123475790023804, 2.6910505294799805, 1966.0, 11.6875, 0.26457205414772034,
            1.0),
        3: (-0.3654273748397827, 0.28125, 0.45680341124534607, 1.617655634880066, 3784.0, 10.0625, 0.2264828383922577,
            2.0),
        4: (-0.3956294357776642, 0.40625, 0.498990923166275, 1.4799209833145142, 5719.0, 10.46875, 0.2715659737586975,
            2.0),
        5: (-0.08167022466659546, 0.375, 0.49186939001083374, 1.6061086654663086, 7782.0, 15.21875, 0.26300880312919617,
            2.0),
        6: (-0.35738620162010193, 0.34375, 0.4825586974620819, 1.9852529764175415, 9563.0, 8.90625, 0.34820425510406494,
            2.0),
    },
}


# the recipe script, and the same program as `accelerate launch -m trl_ext.cli train dapo` (the installed command)
ENTRY_POINTS = {"script": [str(REPO / "recipes" / "dapo_math.py")], "cli": ["-m", "trl_ext.cli", "train", "dapo"]}


@pytest.mark.timeout(BUILD_TIMEOUT + 300)  # the first test to use embedded_cache builds the warm start
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_embedded_dapo_trajectory_is_unchanged(entry, tmp_path, embedded_cache):
    pinned = PINNED.get(cpu_vendor())
    if pinned is None:
        pytest.skip(f"no trajectory recorded for {cpu_vendor()} CPUs (record one from a trusted commit)")
    out = tmp_path / "dapo"
    env = {**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": "1", "TRL_EXT_CACHE": str(embedded_cache),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--mixed_precision", "no",
           *ENTRY_POINTS[entry], "--max_steps", str(STEPS), "--logging_steps", "1",
           "--eval_before", "false", "--eval_after", "false", "--output_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    logged = {h["step"]: h for h in history if "loss" in h}
    assert sorted(logged) == list(pinned)
    for step, expected in pinned.items():
        got = tuple(logged[step][k] for k in KEYS)
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-6), (step, dict(zip(KEYS, got)))
