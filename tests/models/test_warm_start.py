"""The embedded default's start model: the two-strategy ("show your work") SFT warm start, built from scratch.

What RL on the testbed relies on, checked on the model alone: greedy answers mostly take the direct route and land in
the 25-50% band, every answer ends in ``#### N`` (strict = flexible, so a later gain cannot be format), and under
sampling the worked route is both present and right far more often than the direct one: there is a better strategy
for RL to select.

The build itself is the suite's one build of the default warm start, made the way a new user makes it: README's
2-process ZeRO-3 testbed launch with an empty ``TRL_EXT_CACHE`` (which deadlocked when the build ran inside a rank).
"""

import json
import subprocess
import time

import pytest
from helpers.launch import BUILD_TIMEOUT, REPO, launch
from helpers.worker import records

from trl_ext.eval import evaluate_path
from trl_ext.models.tiny import WarmStartConfig, warm_start


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_two_process_launch_from_an_empty_cache_builds_the_warm_start_and_trains(embedded_cache_launch):
    """README's 2-process testbed command from an empty ``TRL_EXT_CACHE``, as on a fresh machine (conftest's
    ``embedded_cache_launch``): it builds the warm start once and both ranks train."""
    cache, proc, _ = embedded_cache_launch
    results = records(proc.stdout, "RECIPE_RESULT")
    assert sorted(r["rank"] for r in results) == [0, 1] and {r["world_size"] for r in results} == {2}
    assert {r["global_step"] for r in results} == {2}
    assert proc.stderr.count("building the embedded warm start") == 1
    assert (cache / f"tiny-sft-{WarmStartConfig().key()}" / "warm_start.json").exists()


@pytest.mark.timeout(BUILD_TIMEOUT)
def test_warm_start_holds_two_strategies(embedded_cache_launch, tmp_path):
    cache, _, build_seconds = embedded_cache_launch
    path = warm_start(WarmStartConfig(), cache_dir=cache)  # built by the launch from the empty cache
    common = dict(source="synthetic", split="test", limit=200, max_new_tokens=64, progress=False)
    greedy = evaluate_path(str(path), output_dir=tmp_path / "greedy", **common)
    sampled = evaluate_path(str(path), output_dir=tmp_path / "sampled", num_samples=4, temperature=1.0, **common)
    strict, flexible = greedy["strict"]["accuracy"], greedy["flexible"]["accuracy"]
    worked, direct = sampled["by_strategy"]["worked"], sampled["by_strategy"]["direct"]
    print(f"warm start built (and 2 GSPO steps) in {build_seconds:.0f} s: greedy strict {strict:.3f}, flexible {flexible:.3f}, shows work "
          f"{greedy['shows_work']:.2f}; sampled: worked {worked}, direct {direct}")

    assert 0.25 <= flexible <= 0.50
    assert abs(strict - flexible) <= 0.02 and greedy["format_rate"] >= 0.98  # one format: both routes end in #### N
    assert greedy["shows_work"] <= 0.6  # greedy still prefers the direct answer often
    # Under sampling both strategies occur, and the worked route is right far more often than the direct one.
    total = worked["completions"] + direct["completions"]
    assert 0.1 <= worked["completions"] / total <= 0.9
    assert worked["flexible"] >= direct["flexible"] + 0.25

    info = json.loads((path / "warm_start.json").read_text())
    assert info["key"] == WarmStartConfig().key() and info["config"]["direct_fraction"] == WarmStartConfig.direct_fraction
    # Cached: a second call returns at once without training.
    again = time.time()
    assert warm_start(WarmStartConfig(), cache_dir=cache) == path
    assert time.time() - again < 5


def test_sft_data_of_the_two_stages():
    """Stage 1 is worked solutions only; stage 2 replaces about direct_fraction of them with the bare answer line."""
    from trl_ext.models.tiny import direct_solution, sft_dataset

    cfg = WarmStartConfig(num_train_examples=400)
    stage1 = [r["completion"][0]["content"] for r in sft_dataset(cfg, 0.0, stage=1)]
    stage2 = [r["completion"][0]["content"] for r in sft_dataset(cfg, 0.5, stage=2)]
    assert all("=" in c and c.splitlines()[-1].startswith("#### ") for c in stage1)
    direct = [c for c in stage2 if "\n" not in c]
    assert all(c.startswith("#### ") for c in direct) and 0.4 <= len(direct) / len(stage2) <= 0.6  # asked: 0.5
    # The direct answer is the worked solution's answer line, for the same problem.
    assert [direct_solution(a) for a in stage1] == [c.splitlines()[-1] for c in stage2]
    assert direct_solution("3 + 6 = 9\n#### 9\n") == "#### 9"


def test_two_processes_build_the_warm_start_once(tmp_path):
    """A 2-process launch (or parallel tests) asks for the warm start in every process: the lock makes one build it
    while the other waits, and both get the same complete model. A tiny config keeps the build to seconds."""
    import sys

    code = (
        "import logging, sys; logging.basicConfig(level=logging.WARNING)\n"
        "from trl_ext.models.tiny import WarmStartConfig, warm_start\n"
        "cfg = WarmStartConfig(num_train_examples=64, batch_size=8, worked_steps=2, mix_steps=2, hidden_size=32, "
        "intermediate_size=64, num_layers=1)\n"
        f"print('PATH', warm_start(cfg, cache_dir={str(tmp_path)!r}))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    paths = {line.split(" ", 1)[1] for out, _ in outputs for line in out.splitlines() if line.startswith("PATH ")}
    assert len(paths) == 1
    logs = "".join(err for _, err in outputs)
    assert logs.count("building the embedded warm start") == 1, logs[-3000:]
    assert "python -m trl_ext.models.tiny --rebuild" in logs  # the one log line says where it is and how to rebuild
    assert logs.count("warm start built in") == 1
    built = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(built) == 1 and (built[0] / "warm_start.json").exists()  # no half-written or temporary folder left


@pytest.mark.timeout(400)
def test_ranks_of_a_launch_build_the_warm_start_once_and_go_on(tmp_path):
    """Inside a launched process group (2 processes, DDP on CPU), the rank that takes the lock builds the warm start
    outside the group: an in-rank build waited at SFTTrainer's barrier for the rank waiting on the lock (deadlock)."""
    from helpers.launch import TESTS

    try:
        proc = launch(TESTS / "dist" / "warm_start_worker.py", ["--cache_dir", tmp_path], config="multi_gpu",
                      timeout=300)
    except subprocess.TimeoutExpired as err:
        raise AssertionError("the 2-process launch hung (warm-start build inside the process group)") from err
    results = records(proc.stdout, "RESULT")
    assert sorted(r["rank"] for r in results) == [0, 1] and {r["world_size"] for r in results} == {2}
    assert len({r["path"] for r in results}) == 1
    assert proc.stderr.count("building the embedded warm start") == 1


def test_the_build_environment_leaves_every_launcher_out():
    """torchrun / accelerate / DeepSpeed variables and MPI's (accelerate reads PMI_SIZE, OMPI_COMM_WORLD_SIZE and
    MV2_COMM_WORLD_SIZE to run several CPU processes): with any left, the build would wait for ranks that never
    come."""
    from trl_ext.models.tiny import build_environment

    launch_env = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_PORT": "29500", "ACCELERATE_MIXED_PRECISION": "no",
                  "TORCHELASTIC_RUN_ID": "x", "PMI_SIZE": "2", "PMI_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
                  "OMPI_COMM_WORLD_LOCAL_RANK": "1", "MV2_COMM_WORLD_SIZE": "2", "MPI_LOCALNRANKS": "2",
                  "HOME": "/home/u", "PATH": "/usr/bin"}
    env = build_environment(launch_env)
    assert {k: v for k, v in env.items() if k != "PYTHONPATH"} == {"HOME": "/home/u", "PATH": "/usr/bin"}
    assert env["PYTHONPATH"].split(":")[0] == str(REPO)  # a checkout: the build runs this code


def test_an_installed_trl_ext_is_not_put_on_the_build_path(tmp_path, monkeypatch):
    import trl_ext.models.tiny as tiny

    installed = tmp_path / "site-packages" / "trl_ext" / "models" / "tiny.py"  # no pyproject.toml two levels up
    monkeypatch.setattr(tiny, "__file__", str(installed))
    assert "PYTHONPATH" not in tiny.build_environment({"HOME": "/home/u"})
    assert tiny.build_environment({"PYTHONPATH": "/x"})["PYTHONPATH"] == "/x"
