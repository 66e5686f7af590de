"""benchmarks/bench_scale.py at a tiny geometry on CPU: every trainer runs, the table comes out, and the counts it
compares against hold (PPO's critic doubles the trainable parameters; DAPO at keep rate ~0.5 generates more rounds)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(900)
def test_bench_scale_smoke(tmp_path):
    out = tmp_path / "scale.md"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_scale.py"), "--geometry", "tiny", "--steps", "4",
         "--warmup", "4", "--completion_length", "8", "--output", str(out)],
        capture_output=True, text=True, timeout=850, check=False, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = {r["algo"]: r for r in json.loads(out.with_suffix(".json").read_text())}
    assert set(rows) == {"grpo", "dapo", "dapo_keep_half", "gspo", "ppo"}
    for r in rows.values():
        parts = r["generation_s"] + r["scoring_s"] + r["other_rollout_s"] + r["training_s"]
        assert r["step_s"] > 0 and parts == pytest.approx(r["step_s"], rel=1e-6)
        assert r["generation_s"] > 0 and r["training_s"] > 0
    assert rows["ppo"]["critic_params"] > 0.9 * rows["ppo"]["policy_params"]  # a full copy with a value head
    assert rows["grpo"]["critic_params"] == 0
    assert rows["dapo"]["generation_rounds"] == 1.0 and rows["dapo_keep_half"]["generation_rounds"] > 1.2
    text = out.read_text()
    assert "| ppo |" in text and "step time / GRPO" in text
