"""The one-command comparison (recipes/compare_gsm8k.py, trl_ext/recipe/compare.py): budget planning and the table
logic on plain records, then one toy end-to-end run with the random tiny model (GRPO and DAPO succeed, a bad
override and an unknown algorithm fail in their rows), and a second invocation that reuses the finished runs."""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trl_ext.recipe import compare

REPO = Path(__file__).resolve().parents[1]
RECIPES = REPO / "recipes"


# -- planning and aggregation without subprocesses ----------------------------------------------------------------


def test_prompts_per_step_and_budget():
    f = {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 2, "num_generations": 8,
         "num_iterations": 1, "max_steps": 30, "num_train_epochs": 3.0}
    assert compare.prompts_per_step("grpo", f, 2) == 8  # 16 x 2 x 2 / 8 completions per prompt
    assert compare.prompts_per_step("grpo", {**f, "num_iterations": 2}, 2) == 4  # batch reused twice
    assert compare.prompts_per_step("dpo", f, 2) == 64  # pairs
    plan = compare.plan_budget("grpo", f, 2, prompts=100)
    assert plan["max_steps"] == 12 and plan["prompts_seen"] == 96 and plan["steps_source"] == "--prompts 100"
    assert compare.plan_budget("dpo", f, 1, prompts=1)["max_steps"] == 1  # at least one step
    assert compare.plan_budget("grpo", {**f, "max_steps": -1}, 1, None)["max_steps"] is None  # epochs


def test_budget_of_the_embedded_configs():
    """The embedded YAMLs: 2 prompts per GRPO-family step (16 completions / 8), 16 for PPO and DPO; a --prompts
    budget gives each algorithm the steps that see the same number of prompts, and overrides take part."""
    cfg = RECIPES / "configs" / "embedded"
    plans = {a: compare.plan_budget(a, compare.budget_fields(a, cfg / f"{a}.yaml", {}), 1, 256) for a in compare.ALGOS}
    assert {a: p["max_steps"] for a, p in plans.items()} == {"ppo": 16, "dpo": 16, "grpo": 128, "dapo": 128, "gspo": 128}
    assert {p["prompts_seen"] for p in plans.values()} == {256}
    fields = compare.budget_fields("grpo", cfg / "grpo.yaml", compare.parse_overrides(
        ["--num_generations", "4", "--gradient_accumulation_steps=2", "--use_peft"]))
    assert compare.prompts_per_step("grpo", fields, 2) == 16  # 16 x 2 x 2 / 4
    assert "grpo" in compare.format_budget(list(plans.values()))


def _summary(strict_before, strict_after, seconds=10.0, step=4, tokens=100.0, rss=500.0):
    def ev(acc):
        return {m: {"accuracy": acc, "ci95": [acc - 0.1, acc + 0.1]} for m in ("strict", "flexible")}

    return {"model": "/m", "before": ev(strict_before), "after": ev(strict_after), "global_step": step,
            "gain_points": {m: 100 * (strict_after - strict_before) for m in ("strict", "flexible")},
            "train_seconds": seconds, "tokens_per_second": tokens,
            "peak_memory": {"cpu_max_rss_mb": rss, "cuda_max_allocated_mb": None},
            "eval": {"source": "synthetic", "split": "test", "num_problems": 200, "max_new_tokens": 64,
                     "protocol": "greedy"}}


def test_aggregate_and_tables(tmp_path):
    records = [
        {"algo": "grpo", "seed": 0, "summary": _summary(0.2, 0.4, seconds=10), "status": "ok", "log": "g0.log"},
        {"algo": "grpo", "seed": 1, "summary": _summary(0.2, 0.6, seconds=20, rss=700), "status": "ok", "log": "g1"},
        {"algo": "dapo", "seed": 0, "summary": _summary(0.2, 0.3), "status": "ok", "log": "d0.log"},
        {"algo": "dapo", "seed": 1, "summary": None, "status": "failed", "error": "exit 1: RuntimeError: boom",
         "log": "/out/dapo/seed1/run.log"},
        {"algo": "ppo", "seed": 0, "summary": None, "status": "failed", "error": "unknown", "log": None},
    ]
    histories = {("dapo", 0): [{"step": 1, "dapo/generation_rounds": 1.0}, {"step": 2, "dapo/generation_rounds": 3.0}]}
    plans = {"grpo": {"prompts_per_step": 2.0}}
    rows = {r["algo"]: r for r in compare.aggregate(records, plans, histories)}
    assert list(rows) == ["grpo", "dapo", "ppo"]
    g = rows["grpo"]
    assert g["status"] == "ok" and g["seeds_ok"] == 2
    assert g["strict_after"] == pytest.approx(50.0) and g["strict_after_std"] == pytest.approx(14.142, abs=1e-3)
    assert g["strict_after_ci95"] == pytest.approx([40.0, 60.0]) and g["strict_before_std"] == pytest.approx(0.0)
    assert g["gain_strict"] == pytest.approx(30.0) and g["train_seconds"] == pytest.approx(15.0)
    assert g["peak_rss_mb"] == 700 and g["prompts_seen"] == 8.0
    d = rows["dapo"]
    assert d["status"] == "partial" and d["strict_after_std"] is None  # one successful seed: no std
    assert d["generation_rounds"] == pytest.approx(2.0)
    assert d["failures"] == [{"seed": 1, "error": "exit 1: RuntimeError: boom", "log": "/out/dapo/seed1/run.log"}]
    assert rows["ppo"]["status"] == "failed" and rows["ppo"]["strict_after"] is None

    meta = {"command": "python recipes/compare_gsm8k.py --algos grpo", "machine": {"cpu cores": 2},
            "evaluation": compare.evaluation_protocol(records), "plots": ["accuracy.png"]}
    md = compare.format_markdown(list(rows.values()), records, meta)
    assert "| grpo | 2/2 | 20.0 [10.0, 30.0] ± 0.0 | 50.0 [40.0, 60.0] ± 14.1 |" in md
    assert "RuntimeError: boom (log: /out/dapo/seed1/run.log)" in md and "| ppo | 0/1 |" in md
    assert "python recipes/compare_gsm8k.py --algos grpo" in md and "- problems: 200" in md
    compare.write_csv(list(rows.values()), tmp_path / "r.csv")
    table = list(csv.DictReader(open(tmp_path / "r.csv")))
    assert [r["algo"] for r in table] == ["grpo", "dapo", "ppo"] and "boom" in table[1]["errors"]


def test_error_from_log():
    log = "noise\nTraceback (most recent call last):\n  File x\nValueError: bad value\nnoise after\n"
    assert compare.error_from_log(log, 1) == "exit 1: ValueError: bad value"
    assert compare.error_from_log("usage: x\ngrpo_math.py: error: unrecognized arguments: --nope", 2).endswith(
        "error: unrecognized arguments: --nope")
    assert compare.error_from_log("", 137) == "exit 137: no output"


# -- end to end -----------------------------------------------------------------------------------------------------


def toy_args(out, tiny_model_path, algos="grpo,dapo,gspo,nope"):
    return [
        "--algos", algos, "--seeds", "1", "--output-dir", str(out),
        "--algo-args", "dapo=--overlong_buffer_len 4",
        "--algo-args", "gspo=--no_such_option 1",  # fails in the recipe's argument parser
        "--", "--model_name_or_path", tiny_model_path, "--max_steps", "1", "--logging_steps", "1",
        "--num_train_examples", "16", "--eval_limit", "4", "--eval_max_new_tokens", "8",
        "--reward_funcs", "test_recipes:length_reward", "--max_completion_length", "8",
        "--per_device_train_batch_size", "8", "--num_generations", "4",
    ]


@pytest.mark.timeout(300)
def test_toy_comparison_end_to_end(tiny_model_path, tmp_path, monkeypatch):
    out = tmp_path / "comparison"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(RECIPES / "compare_gsm8k.py"), *toy_args(out, tiny_model_path)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=280)
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]  # some runs failed
    for name in ("results.md", "results.csv", "results.json", "reward_vs_step.png", "reward_vs_time.png",
                 "accuracy.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    rows = {r["algo"]: r for r in results["rows"]}
    assert list(rows) == ["grpo", "dapo", "gspo", "nope"]
    for algo in ("grpo", "dapo"):
        r = rows[algo]
        assert r["status"] == "ok" and r["global_step"] == 1 and r["strict_after"] is not None, r
        assert r["tokens_per_second"] > 0 and r["peak_rss_mb"] > 0 and r["train_seconds"] > 0
        history = [json.loads(x) for x in (out / algo / "seed0" / "history.jsonl").read_text().splitlines()]
        assert any("reward" in h and "elapsed_s" in h for h in history)
    assert rows["dapo"]["generation_rounds"] >= 1
    (gspo_fail,) = rows["gspo"]["failures"]
    assert rows["gspo"]["status"] == "failed" and "--no_such_option" in gspo_fail["error"]
    assert gspo_fail["log"] == str(out / "gspo" / "seed0" / "run.log") and Path(gspo_fail["log"]).exists()
    assert "unknown algorithm 'nope'" in rows["nope"]["failures"][0]["error"]
    md = (out / "results.md").read_text()
    assert "| grpo | 1/1 |" in md and "| dapo | 1/1 |" in md and "| gspo | 0/1 |" in md
    assert "compare_gsm8k.py --algos grpo,dapo,gspo,nope" in md and "## Machine" in md and "- torch:" in md
    assert "## Evaluation protocol" in md and "- problems: 4" in md
    assert "dapo" in proc.stdout and "prompts/step" in proc.stdout

    # a second invocation reuses the finished runs: no subprocess at all, and the same numbers
    def no_launch(*a, **k):
        raise AssertionError("a finished run was launched again")

    monkeypatch.setattr(compare, "_launch", no_launch)
    start = time.time()
    rc = compare.main(toy_args(out, tiny_model_path, algos="grpo,dapo"), recipes_dir=RECIPES)
    assert rc == 0 and time.time() - start < 30
    again = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in again["runs"]] == ["reused", "reused"]
    assert [r["strict_after"] for r in again["rows"]] == [rows["grpo"]["strict_after"], rows["dapo"]["strict_after"]]


def test_run_one_resumes_a_crashed_run_and_force_starts_over(tmp_path):
    """A run folder with a complete checkpoint and no summary.json (the job died) is relaunched with
    --resume_from_checkpoint true; a finished run is reused; --force deletes the checkpoints and starts over."""
    import sys

    from trl_ext.recipe.compare import run_one

    script = tmp_path / "fake_recipe.py"  # records its arguments and writes a summary, like a recipe
    script.write_text("import json, sys, pathlib\n"
                      "out = pathlib.Path(sys.argv[sys.argv.index('--output_dir') + 1])\n"
                      "(out / 'summary.json').write_text(json.dumps({'argv': sys.argv[1:]}))\n")
    run_dir = tmp_path / "run"
    cmd = [sys.executable, str(script), "--output_dir", str(run_dir)]
    (run_dir / "checkpoint-4").mkdir(parents=True)
    (run_dir / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (run_dir / "checkpoint-6").mkdir()  # cut off while saving: not resumable
    record = run_one("grpo", 0, cmd, run_dir)
    assert record["status"] == "ok" and record["resumed_from"] == str(run_dir / "checkpoint-4")
    assert record["summary"]["argv"][-2:] == ["--resume_from_checkpoint", "true"]
    assert run_one("grpo", 0, cmd, run_dir)["status"] == "reused"
    record = run_one("grpo", 0, cmd, run_dir, force=True)
    assert "--resume_from_checkpoint" not in record["summary"]["argv"] and record["resumed_from"] is None
    assert not list(run_dir.glob("checkpoint-*"))
