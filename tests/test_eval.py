"""Evaluator: scoring table, confidence intervals, pass@k / maj@k, and the CLI writing its JSON."""

import json
import subprocess
import sys

import pytest

from trl_ext.eval import score, wilson_interval


def test_wilson_interval():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.404, abs=1e-3) and hi == pytest.approx(0.596, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 0.0)


def test_score_strict_flexible_and_k():
    completions = [
        ["3 + 4 = 7\n#### 7", "#### 8", "The answer is 7."],
        ["#### 5", "#### 5.0", "#### 6"],
    ]
    s = score(completions, ["7", "5"])
    assert s["num_problems"] == 2 and s["num_samples"] == 3
    assert s["strict"]["accuracy"] == 1.0  # first completions
    assert s["strict"]["mean@3"] == pytest.approx(3 / 6)
    assert s["flexible"]["mean@3"] == pytest.approx(4 / 6)
    assert s["strict"]["pass@3"] == 1.0
    # maj@3: problem 1 votes {7, 8} (tie -> first seen, 7), problem 2 votes 5 twice (5 and 5.0 are one answer).
    assert s["strict"]["maj@3"] == 1.0
    assert s["format_rate"] == pytest.approx(5 / 6)


def test_cli_on_tiny_model(tiny_model_path, tmp_path):
    out = tmp_path / "eval"
    proc = subprocess.run(
        [sys.executable, "-m", "trl_ext.eval", "--model", tiny_model_path, "--source", "synthetic", "--limit", "6",
         "--max_new_tokens", "8", "--num_samples", "2", "--output_dir", str(out), "--no_progress"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "strict" in proc.stdout and "95% CI" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_problems"] == 6 and summary["num_samples"] == 2
    assert {"pass@2", "maj@2", "mean@2", "ci95"} <= set(summary["strict"])
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and all(len(s["completions"]) == 2 for s in samples)


def test_score_mechanism_strategy_and_steps():
    """How answers are reached: the share of first completions that show their work, each strategy's accuracy over
    all completions, and greedy accuracy by the reference solution's step count (4 and more pooled)."""
    completions = [
        ["3 + 4 = 7\n#### 7", "#### 8"],  # worked right, direct wrong
        ["#### 5", "2 + 2 = 4\n4 + 2 = 6\n#### 6"],  # direct right (gold 5), worked wrong
        ["#### 9", "#### 9"],  # direct right twice
        ["1 + 1 = 2\n2 + 1 = 3\n3 + 1 = 4\n4 + 1 = 5\n#### 5", "#### 1"],
    ]
    s = score(completions, ["7", "5", "9", "5"], steps=[1, 2, 2, 4])
    assert s["shows_work"] == pytest.approx(2 / 4)  # first completions 1 and 4
    assert s["by_strategy"]["worked"] == {"completions": 3, "flexible": pytest.approx(2 / 3)}
    assert s["by_strategy"]["direct"] == {"completions": 5, "flexible": pytest.approx(3 / 5)}
    assert s["by_steps"] == {
        "1": {"problems": 1, "strict": 1.0, "flexible": 1.0},
        "2": {"problems": 2, "strict": 1.0, "flexible": 1.0},
        "4+": {"problems": 1, "strict": 1.0, "flexible": 1.0},
    }
    # No step counts: no by_steps; no completions of a strategy: its accuracy is None, not 0.
    s = score([["#### 7"]], ["7"])
    assert "by_steps" not in s and s["by_strategy"]["worked"] == {"completions": 0, "flexible": None}


def test_sampled_evaluation_is_seeded(tiny_model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_ext.data.gsm8k import load_gsm8k
    from trl_ext.eval import evaluate

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    ds = load_gsm8k("synthetic", "test", num_examples=4)
    kwargs = dict(num_samples=3, temperature=1.0, max_new_tokens=6, progress=False)
    first = evaluate(model, tokenizer, ds, seed=1, **kwargs)[1]
    assert evaluate(model, tokenizer, ds, seed=1, **kwargs)[1] == first
    assert evaluate(model, tokenizer, ds, seed=2, **kwargs)[1] != first


@pytest.mark.parametrize("num_samples", [1, 3])
def test_evaluation_leaves_the_global_rng_as_it_found_it(tiny_model_path, num_samples):
    """The accuracy curve evaluates during training: a reseed here would give every training seed the same sampling
    stream from then on (and undo TRL's per-rank seeds)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_ext.data.gsm8k import load_gsm8k
    from trl_ext.eval import evaluate

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    ds = load_gsm8k("synthetic", "test", num_examples=4)
    torch.manual_seed(1234)
    torch.rand(3)  # a state part-way through a stream, not a fresh seed
    before = torch.get_rng_state()
    evaluate(model, tokenizer, ds, num_samples=num_samples, temperature=1.0, max_new_tokens=6, progress=False, seed=0)
    assert torch.equal(torch.get_rng_state(), before)


def test_checkpoint_generation_config_is_not_inherited(tiny_model_path, tmp_path):
    """Evaluation and DPO's pair sampling pass an explicit sampling config, as TRL's rollouts do.
    A checkpoint whose generation_config.json sets repetition_penalty / top_k / no_repeat_ngram_size must be measured
    exactly like the same weights without them (greedy and seeded sampling); completions report whether they ended
    with EOS."""
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from trl_ext.data.gsm8k import load_gsm8k
    from trl_ext.eval import evaluate

    odd = tmp_path / "odd"
    shutil.copytree(tiny_model_path, odd)
    config = GenerationConfig.from_pretrained(odd)
    config.do_sample, config.repetition_penalty, config.top_k, config.no_repeat_ngram_size = True, 50.0, 2, 1
    config.save_pretrained(odd)
    ds = load_gsm8k("synthetic", "test", num_examples=6)
    runs = []
    for path in (tiny_model_path, odd):
        model, tokenizer = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
        assert model.generation_config.repetition_penalty == (50.0 if path == odd else None)
        greedy = evaluate(model, tokenizer, ds, max_new_tokens=12, progress=False)[1]
        sampled = evaluate(model, tokenizer, ds, num_samples=2, max_new_tokens=12, progress=False, seed=3)[1]
        runs.append((greedy, sampled))
    assert runs[0] == runs[1]
    assert all(len(r["terminated"]) == len(r["completions"]) for r in runs[0][1])


def test_evaluation_saves_only_the_generating_device_rng(tiny_model_path, monkeypatch):
    """Every rank of a launch sees every GPU: saving and restoring all their generators would make each rank touch
    (and create a CUDA context on) every GPU. Only the device the model generates on is forked; on CPU, none."""
    import contextlib

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trl_ext import eval as ev
    from trl_ext.data.gsm8k import load_gsm8k

    forked = []

    @contextlib.contextmanager
    def recording_fork_rng(devices=None, **kwargs):
        forked.append(list(devices) if devices is not None else None)
        yield

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)  # as a rank of an 8-GPU launch sees it
    monkeypatch.setattr(torch.random, "fork_rng", recording_fork_rng)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    ds = load_gsm8k("synthetic", "test", num_examples=2)
    ev.evaluate(model, tokenizer, ds, max_new_tokens=4, progress=False)
    assert forked == [[]]

    class OnGpu3:
        device = torch.device("cuda", 3)

    assert ev.rng_devices(OnGpu3()) == [3]
