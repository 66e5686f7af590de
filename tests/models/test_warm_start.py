"""The embedded default's start model: the two-strategy ("show your work") SFT warm start, built from scratch.

What RL on the testbed relies on, checked on the model alone: greedy answers mostly take the direct route and land in
the 25-50% band, every answer ends in ``#### N`` (strict = flexible, so a later gain cannot be format), and under
sampling the worked route is both present and right far more often than the direct one: there is a better strategy
for RL to select.
"""

import json
import time

import pytest

from trl_ext.eval import evaluate_path
from trl_ext.models.tiny import WarmStartConfig, warm_start


@pytest.mark.timeout(1200)
def test_warm_start_holds_two_strategies(tmp_path):
    start = time.time()
    path = warm_start(WarmStartConfig(), cache_dir=tmp_path)  # a fresh cache: really trains
    build_seconds = time.time() - start
    common = dict(source="synthetic", split="test", limit=200, max_new_tokens=64, progress=False)
    greedy = evaluate_path(str(path), output_dir=tmp_path / "greedy", **common)
    sampled = evaluate_path(str(path), output_dir=tmp_path / "sampled", num_samples=4, temperature=1.0, **common)
    strict, flexible = greedy["strict"]["accuracy"], greedy["flexible"]["accuracy"]
    worked, direct = sampled["by_strategy"]["worked"], sampled["by_strategy"]["direct"]
    print(f"warm start built in {build_seconds:.0f} s: greedy strict {strict:.3f}, flexible {flexible:.3f}, shows work "
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
    assert warm_start(WarmStartConfig(), cache_dir=tmp_path) == path
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
    import subprocess
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
