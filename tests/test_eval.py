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
