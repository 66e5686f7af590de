"""The comparison (trl_ext/compare/, recipes/compare_gsm8k.py): budget planning, the statistics against hand
computations and loop references, the sample count (DAPO's refills, DPO's pair sampling), the validation/test
separation, and one tiny end-to-end `--sweep` with two algorithms that a second invocation reuses."""

import json
import os
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from helpers.launch import GSM8K_DIR, RECIPES, REPO, pythonpath
from helpers.rewards import length_reward, reward_path

from trl_ext.compare import plan as P
from trl_ext.compare import stats

EMBEDDED = RECIPES / "configs" / "embedded"


# -- planning ---------------------------------------------------------------------------------------------------------


def embedded_fields(label, overrides=()):
    recipe = P.recipe_of(label)
    return P.budget_fields(recipe, EMBEDDED / f"{recipe}.yaml", P.parse_overrides(overrides))


def test_samples_budget_of_the_embedded_configs():
    budget = P.Budget("samples", 2400)
    for algo in ("grpo", "dapo", "gspo", "ppo"):  # 16 completions per step (PPO: 16 prompts x 1)
        args, steps = P.budget_args(algo, embedded_fields(algo), budget, 1)
        # the run sets its own step bound (whole rollouts, below); the plan shows the estimate
        assert args == ["--max_samples", "2400"] and steps == 150, algo
    # on 2 processes a step consumes twice as many: the step bound halves (rounded up)
    assert P.budget_args("grpo", embedded_fields("grpo"), P.Budget("samples", 2401), 2)[1] == 76
    # a rollout reused twice (num_iterations 2) brings new samples once per two passes
    assert P.samples_per_step(embedded_fields("grpo", ["--num_iterations", "2"]), 1) == 8
    # DPO and RFT spend it on sampling before training; every SFT control trains as many examples as the budget
    # (16 per step): 150 steps, fixed by the budget alone, so the sweep and the test phase train the same steps
    assert P.budget_args("dpo", embedded_fields("dpo"), budget, 1)[0] == ["--max_samples", "2400"]
    assert P.budget_args("rft", embedded_fields("rft"), budget, 1) == (
        ["--max_samples", "2400", "--max_steps", "150"], 150)
    for control in ("sft-gold", "sft-warm-start"):
        assert P.budget_args(control, embedded_fields(control), budget, 1) == (["--max_steps", "150"], 150)
    # rollouts as the YAMLs state them: 16 completions (GRPO), 64 (GSPO, PPO: 4 updates per rollout)
    assert [P.rollout_size(embedded_fields(a), 1) for a in ("grpo", "gspo", "ppo")] == [16, 64, 64]


def test_default_samples_budget_is_whole_rollouts_of_every_online_entry(tmp_path):
    """The configs train 150 x 16 = 2400 completions; GSPO and PPO roll out 64 at a time, so the default budget is
    2432 (38 rollouts): every online entry generates as many completions, all of them trained on."""
    from trl_ext.compare.cli import Comparison, build_parser

    comp = Comparison(build_parser().parse_args(["--output-dir", str(tmp_path), "--dry-run"]), [])
    assert comp.budget.amount == 2432


def _embedded_training_args(algo, *cli):
    """The training arguments a recipe run of the embedded ``algo`` config builds (the real config class)."""
    from trl import TrlParser

    from trl_ext.recipe.algorithms import get_algorithm
    from trl_ext.recipe.config import parse_recipe_args

    algorithm = get_algorithm(algo)
    parsed = parse_recipe_args(TrlParser(algorithm.dataclass_types()), default_config=algorithm.default_config_path(),
                               args=["--output_dir", "unused", *cli])
    return parsed[1]


@pytest.mark.parametrize("algo,steps,on_two", [("grpo", 150, 75), ("dapo", 150, 75), ("gspo", 152, 76),
                                               ("ppo", 152, 76)])
def test_samples_budget_trains_on_whole_rollouts(algo, steps, on_two):
    """GSPO and PPO roll out 64 completions per 4 optimizer steps: a bound of ceil(2400 / 16) = 150 steps stopped
    inside the 38th rollout (2,432 generated, 32 never trained on). The run's bound ends with its rollout."""
    from trl_ext.recipe.callbacks import rollout_used_up, whole_rollout_steps

    args = _embedded_training_args(algo)
    assert whole_rollout_steps(2400, args) == steps and rollout_used_up(args, steps)
    fields = {k: getattr(args, k) for k in ("per_device_train_batch_size", "steps_per_generation",
                                            "gradient_accumulation_steps", "num_iterations")}
    # two processes: rollouts of 32 (GRPO) or 128 (GSPO, PPO) completions: 75 x 32 = 2400, 19 x 128 = 2432
    assert whole_rollout_steps(2400, SimpleNamespace(**fields, world_size=2)) == on_two
    # a rollout trained on twice takes twice the steps
    assert whole_rollout_steps(2400, SimpleNamespace(**{**fields, "num_iterations": 2}, world_size=1)) == 2 * steps


def test_sampled_completions_have_one_length_cap_in_every_config_folder():
    """Online RL, DPO's pairs and RFT's samples are generated under the same max new tokens (RFT sampled 64 tokens on
    the testbed while the others sampled 48)."""
    from trl_ext.configs import CONFIG_ROOT
    from trl_ext.recipe.config import load_recipe_yaml

    folders = {p.parent for p in (CONFIG_ROOT / "recipes").rglob("rl.yaml")}
    assert folders
    for folder in folders:
        caps = {"rl": load_recipe_yaml(folder / "rl.yaml")[0]["max_completion_length"]}
        for recipe, key in (("dpo", "dpo_max_new_tokens"), ("sft", "rft_max_new_tokens")):
            if (folder / f"{recipe}.yaml").exists():
                values = load_recipe_yaml(folder / f"{recipe}.yaml")[0]
                caps[recipe] = values.get(key) or values.get("eval_max_new_tokens")
        assert len(set(caps.values())) == 1, (folder.name, caps)


def test_prompts_and_seconds_budgets():
    f = {"per_device_train_batch_size": 16, "gradient_accumulation_steps": 2, "num_generations": 8,
         "num_iterations": 1, "max_steps": 10}
    assert P.prompts_per_step("grpo", f, 2) == 8  # 16 x 2 x 2 / 8 completions per prompt
    assert P.prompts_per_step("dpo", f, 2) == 64  # pairs
    assert P.budget_args("grpo", f, P.Budget("prompts", 100), 2) == (["--max_steps", "12"], 12)
    args, steps = P.budget_args("dpo", f, P.Budget("seconds", 30), 1)
    assert args[:2] == ["--max_train_seconds", "30"] and steps is None
    with pytest.raises(P.CompareError, match="budget must be one of"):
        P.Budget("tokens", 1)


def test_sweep_parsing_and_picking():
    assert P.parse_sweep("learning_rate=1e-5, 2e-5") == ("learning_rate", ["1e-5", "2e-5"])
    assert P.parse_sweep(None) is None
    for bad in ("learning_rate", "=1e-5", "lr="):
        with pytest.raises(P.CompareError, match="FIELD=v1,v2"):
            P.parse_sweep(bad)
    assert P.pick_best({"1e-5": [0.5, 0.6], "2e-5": [0.6], "4e-5": []}) == ("2e-5", 0.6)  # mean over sweep seeds
    assert P.pick_best({"1e-5": [0.6], "2e-5": [0.6]})[0] == "1e-5"  # a tie goes to the first listed
    with pytest.raises(P.CompareError):
        P.pick_best({"1e-5": []})


def test_widening_past_an_edge_pick():
    grid = ["1e-5", "2e-5", "4e-5"]
    assert P.widen(grid, "4e-5") == "8e-05" and P.widen(grid, "1e-5") == "5e-06"  # one more factor of 2
    assert P.widen(grid, "2e-5") is None  # interior
    assert P.widen(["1e-4", "3e-4"], "3e-4") == "0.0009"
    assert P.widen(["-0.2", "-0.1"], "-0.2") == "-0.3"  # not positive: one more difference
    assert P.widen(["0", "0.1"], "0") is None and P.widen(["-0.1", "0"], "0") is None  # never across zero
    assert P.widen(["grpo", "dapo"], "grpo") is None and P.widen(["1e-5"], "1e-5") is None


def test_sweep_runs_never_score_on_the_test_split(tmp_path):
    """Every sweep job is scored on validation and every test job on test; the splits share no problem, on the
    synthetic testbed and on real GSM8K (whose validation split is carved from train)."""
    from trl_ext.compare.cli import Comparison, build_parser

    args = build_parser().parse_args(["--algos", "grpo,dpo", "--controls", "rft", "--sweep", "learning_rate=1,2",
                                      "--control-sweep", "learning_rate=3", "--output-dir", str(tmp_path),
                                      "--dry-run"])
    comp = Comparison(args, [])
    sweep = comp.sweep_jobs({label: comp.grid(label)[1] for label in comp.labels})
    assert [(j.label, j.setting[1], j.seed) for j in sweep][:4] == [("grpo", "1", 0), ("grpo", "1", 1),
                                                                  ("grpo", "1", 2), ("grpo", "2", 0)]
    assert len(sweep) == 3 * 5  # 3 seeds per value by default
    for job in sweep:
        cmd = comp.command(job)
        assert cmd[cmd.index("--dataset_test_split") + 1] == "validation" and "test" not in cmd
        assert cmd[cmd.index("--eval_limit") + 1] == "1000" and "--eval_curve_points" not in cmd
    for job in comp.test_jobs({"grpo": ("learning_rate", "2")}):
        cmd = comp.command(job)
        assert cmd[cmd.index("--dataset_test_split") + 1] == "test" and cmd[cmd.index("--eval_limit") + 1] == "2000"
        assert cmd[cmd.index("--eval_curve_split") + 1] == "validation"
        assert cmd[cmd.index("--eval_curve_points") + 1] == "12" and cmd[cmd.index("--eval_curve_limit") + 1] == "1000"
        assert (job.label != "grpo") or cmd[cmd.index("--learning_rate") + 1] == "2"

    from trl_ext.data.gsm8k import load_gsm8k

    for source in ("synthetic", str(GSM8K_DIR)):
        q = {s: set(load_gsm8k(source, s)["question"]) for s in ("train", "validation", "test")}
        assert q["validation"] and not (q["validation"] & q["test"]) and not (q["validation"] & q["train"]), source
    assert 300 < len(q["validation"]) < 500 and len(q["train"]) + len(q["validation"]) == 7473  # real GSM8K: 5%


# -- statistics -------------------------------------------------------------------------------------------------------


def test_mean_sd_ci_and_mcnemar_by_hand():
    s = stats.mean_sd_ci([1, 2, 3])
    assert s["mean"] == 2 and s["sd"] == 1 and s["ci95"] == pytest.approx((2 - 4.303 / 3**0.5, 2 + 4.303 / 3**0.5))
    assert stats.mean_sd_ci([5])["ci95"] is None and stats.mean_sd_ci([None])["mean"] is None
    a = [1] * 5 + [0] * 1 + [1] * 4  # only A right on 5 problems, only B on 1, both on 4
    b = [0] * 5 + [1] * 1 + [1] * 4
    m = stats.mcnemar_exact(a, b)
    assert (m["only_a"], m["only_b"]) == (5, 1) and m["p"] == pytest.approx(2 * (1 + 6) / 64)
    assert stats.mcnemar_exact([1, 0], [1, 0])["p"] == 1.0


def _bootstrap_loop(a, b, draws, seed):
    """Loop reference of the paired bootstrap with the same random draws (problems, then A's and B's seeds)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n = len(a[0])
    problems = rng.integers(0, n, size=(draws, n))
    pick_a, pick_b = rng.integers(0, len(a), size=(draws, len(a))), rng.integers(0, len(b), size=(draws, len(b)))
    diffs = []
    for d in range(draws):
        ma = sum(a[s][i] for s in pick_a[d] for i in problems[d]) / (len(a) * n)
        mb = sum(b[s][i] for s in pick_b[d] for i in problems[d]) / (len(b) * n)
        diffs.append(ma - mb)
    mean = sum(diffs) / draws
    se = (sum((d - mean) ** 2 for d in diffs) / (draws - 1)) ** 0.5
    diffs.sort()
    return diffs[int(0.025 * draws)], diffs[min(draws - 1, int(0.975 * draws))], se


def test_paired_bootstrap_against_a_loop_and_by_hand():
    import random

    r = random.Random(1)
    a = [[int(r.random() < 0.7) for _ in range(30)] for _ in range(3)]
    b = [[int(r.random() < 0.5) for _ in range(30)] for _ in range(3)]
    got = stats.paired_bootstrap(a, b, draws=300, seed=4)
    lo, hi, se = _bootstrap_loop(a, b, 300, 4)
    assert got["ci95"] == pytest.approx((lo, hi)) and got["se"] == pytest.approx(se)
    assert got["difference"] == pytest.approx(sum(map(sum, a)) / 90 - sum(map(sum, b)) / 90)
    # degenerate cases one can compute by hand
    ones, zeros = [[1] * 10] * 2, [[0] * 10] * 2
    assert stats.paired_bootstrap(ones, zeros, draws=100) == {"difference": 1.0, "ci95": (1.0, 1.0), "p": 0.0,
                                                              "se": 0.0, "draws": 100}
    same = stats.paired_bootstrap(a, a, draws=200)
    assert same["p"] == 1.0 and same["ci95"][0] <= 0 <= same["ci95"][1]
    with pytest.raises(ValueError, match="same problems"):
        stats.paired_bootstrap(a, [[1] * 29], draws=10)


def test_detectable_difference_has_80_percent_power():
    """2.8 standard errors: a true difference of that size gives |estimate| > 1.96 se in 80% of repetitions."""
    import numpy as np

    se = 0.02
    delta = stats.detectable_difference(se)
    assert delta == pytest.approx((1.959964 + 0.841621) * se)
    estimates = np.random.default_rng(0).normal(delta, se, size=200_000)
    assert np.mean(np.abs(estimates) > 1.959964 * se) == pytest.approx(0.80, abs=0.005)


def test_crossing_bracket_and_interval_by_hand():
    pts = [{"flexible": 30, "samples": 0}, {"flexible": 55, "samples": 400}, {"flexible": 70, "samples": 800}]
    assert stats.crossing_bracket(pts, 50, "samples") == (0.0, 400.0, 320.0)  # 30 -> 55 crosses 50 at 4/5 of 400
    assert stats.crossing_bracket(pts, 60, "samples") == (400.0, 800.0, 400 + 400 / 3)
    assert stats.crossing_bracket(pts, 20, "samples") == (0.0, 0.0, 0.0)  # there from the start
    assert stats.crossing_bracket(pts, 71, "samples") is None
    one = stats.crossing_interval([(0.0, 400.0, 320.0), None])
    assert one["n"] == 1 and one["mean"] == 320.0 and one["ci95"] == (0.0, 400.0)  # one seed: the spacing alone
    three = stats.crossing_interval([(0.0, 400.0, 300.0), (400.0, 800.0, 500.0), (0.0, 400.0, 100.0)])
    lows, highs = stats.mean_sd_ci([0, 400, 0]), stats.mean_sd_ci([400, 800, 400])
    assert three["mean"] == 300.0 and three["ci95"] == (0.0, highs["ci95"][1])  # the lower t-bound < 0: clipped
    assert lows["ci95"][0] < 0


# -- the budget during training -------------------------------------------------------------------------------------


def test_budget_callback_stops_when_the_samples_are_spent_and_the_rollout_used_up():
    from transformers import TrainerControl, TrainerState

    from trl_ext.recipe.callbacks import BudgetCallback, SampleCounter

    counter = SampleCounter(lambda completions, **kw: [0.0] * len(completions))
    assert counter.__name__ == "<lambda>"
    args = SimpleNamespace(steps_per_generation=4, num_iterations=1, gradient_accumulation_steps=1)
    cb = BudgetCallback(counter, world_size=2, max_samples=200)
    state, control = TrainerState(), TrainerControl()
    cb.on_train_begin(args, state, control)
    for step in range(1, 30):  # a rollout of 32 completions per process every 4 steps
        if (step - 1) % 4 == 0:
            counter(completions=["x"] * 32)
        state.global_step = step
        cb.on_step_end(args, state, control)
        if control.should_training_stop:
            break
    # 64 samples per rollout (steps 1, 5, 9, 13): 192 after step 9 (< 200), 256 from step 13, whose rollout lasts
    # until step 16
    assert state.global_step == 16 and cb.samples == 256 and cb.stopped_by == "max_samples 200"
    state.log_history.append({"loss": 1.0, "step": 16})
    cb.on_log(args, state, control)
    assert state.log_history[-1]["samples"] == 256
    # a resumed run counts on from its checkpoint's log
    resumed = BudgetCallback(SampleCounter(lambda completions, **kw: []), world_size=2, max_samples=200)
    resumed.on_train_begin(args, state, TrainerControl())
    assert resumed.samples == 256


# -- end to end -------------------------------------------------------------------------------------------------------


def _env():
    return {**os.environ, "PYTHONPATH": pythonpath(os.environ.get("PYTHONPATH")), "OMP_NUM_THREADS": "1"}


TOY = ["--model_name_or_path", None, "--logging_steps", "1", "--num_train_examples", "32", "--eval_limit", "4",
       "--eval_max_new_tokens", "8", "--eval_num_samples", "1", "--reward_funcs", reward_path(length_reward),
       "--max_completion_length", "8", "--per_device_train_batch_size", "8", "--num_generations", "4"]


def toy_args(out, model, algos="grpo,dapo"):
    extra = [model if x is None else x for x in TOY]
    return ["--algos", algos, "--controls", "none", "--seeds", "1", "--sweep", "learning_rate=1e-5,1e-3",
            "--sweep-seeds", "1", "--max-widen", "1", "--jobs", "2", "--test-problems", "4",
            "--validation-problems", "4", "--samples", "32", "--curve-points", "2", "--output-dir", str(out),
            "--algo-args", "dapo=--overlong_buffer_len 4", "--", *extra]


@pytest.mark.timeout(600)
def test_toy_sweep_end_to_end(tiny_model_path, tmp_path, monkeypatch):
    out = tmp_path / "comparison"
    proc = subprocess.run([sys.executable, str(RECIPES / "compare_gsm8k.py"), *toy_args(out, tiny_model_path)],
                          capture_output=True, text=True, env=_env(), cwd=REPO, timeout=580)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    # 2 values each, then one more past the edge pick (a 2-value grid has no interior), then the test phase
    assert "10/8 runs" not in proc.stdout and "8/8 runs done" in proc.stdout
    for name in ("results.md", "results.csv", "results.json", "readme_table.md", "accuracy_vs_samples.png",
                 "accuracy_vs_time.png", "final_accuracy.png", "phenomenon_entropy.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert set(results["picked"]) == {"grpo", "dapo"}
    runs = results["runs"]
    assert [(r["phase"], r["label"]) for r in runs] == [("sweep", "grpo")] * 2 + [("sweep", "dapo")] * 2 + [
        ("sweep", "grpo"), ("sweep", "dapo"), ("test", "grpo"), ("test", "dapo")]
    assert {r["setting"][1] for r in runs[4:6]} <= {"1e-07", "0.1"}  # a factor of 100 past the picked edge
    # the sweep scored on validation, the test phase on test, and they share no problem
    def questions(run_dir):
        return {json.loads(x)["question"] for x in (out / run_dir / "eval_after" / "samples.jsonl").open()}

    for r in runs:
        summary = json.loads((out / r["run_dir"] / "summary.json").read_text())
        assert summary["eval"]["split"] == ("validation" if r["phase"] == "sweep" else "test")
    assert not questions(runs[0]["run_dir"]) & questions(runs[6]["run_dir"])
    # the samples budget: GRPO generates 8 per step, so 4 steps; DAPO's count includes its refill rounds
    grpo = json.loads((out / runs[6]["run_dir"] / "summary.json").read_text())
    assert grpo["samples_generated"] == 32 and grpo["global_step"] == 4 and grpo["budget_stopped_by"]
    dapo_dir = out / runs[7]["run_dir"]
    dapo = json.loads((dapo_dir / "summary.json").read_text())
    history = [json.loads(x) for x in (dapo_dir / "history.jsonl").open()]
    generated = sum(h["dapo/generated_groups_per_trained_group"] * 2 * 4 for h in history
                    if "dapo/generated_groups_per_trained_group" in h)  # 2 groups of 4 per step
    assert dapo["samples_generated"] == generated >= 32
    curve = [h for h in history if "curve/step" in h]
    assert curve[0]["curve/step"] == 0 and curve[-1]["curve/step"] == dapo["global_step"]
    md = (out / "results.md").read_text()
    for section in ("## Results (test split)", "## Paired differences", "## Sweep (validation split)",
                    "## Budget used", "## What the curves show", "python recipes/compare_gsm8k.py --algos grpo,dapo",
                    "8 of 8 runs were made by this command", "Power between the algorithms",
                    "![validation accuracy vs samples](accuracy_vs_samples.png)"):
        assert section in md, section
    assert all(f"]({name})" in md for name, _ in results["meta"]["plots"])  # every figure is shown
    # no absolute path of this machine, but where the user typed one (the command line, the output folder)
    assert not [ln for ln in md.splitlines() if str(tmp_path) in ln
                and not ln.startswith(("python recipes/", "- Run folders"))]

    # a second invocation reuses every finished run: no subprocess at all
    from trl_ext.compare import cli, runner

    def no_launch(*a, **k):
        raise AssertionError("a finished run was launched again")

    monkeypatch.setattr(runner, "_launch", no_launch)
    start = time.time()
    assert cli.main(toy_args(out, tiny_model_path)) == 0 and time.time() - start < 60
    again = json.loads((out / "results.json").read_text())
    assert {r["status"] for r in again["runs"]} == {"reused"} and again["picked"] == results["picked"]
    assert "0 of 8 runs were made by this command; 8 were reused" in (out / "results.md").read_text()


@pytest.mark.timeout(300)
def test_dpo_spends_its_samples_budget_on_pair_sampling(tiny_model_path, tmp_path):
    out = tmp_path / "dpo"
    cmd = [sys.executable, str(RECIPES / "dpo_math.py"), "--model_name_or_path", tiny_model_path, "--max_samples",
           "20", "--dpo_num_samples", "2", "--dpo_chosen_fallback", "reference", "--dpo_max_new_tokens", "8",
           "--max_steps", "1", "--per_device_train_batch_size", "2", "--eval_limit", "2", "--eval_max_new_tokens",
           "4", "--eval_num_samples", "1", "--output_dir", str(out), "--dpo_pairs_cache_dir", str(tmp_path / "c")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=280)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples_generated"] == 20 and summary["dpo_pairs"]["questions"] == 10
    # the pairs' sampling is training time (it was left out of "train s" and the accuracy-vs-time axis)
    sampling = summary["dpo_pairs"]["sampling_seconds"]
    assert sampling > 0 and summary["offline_seconds"] == sampling
    assert summary["train_seconds"] >= sampling + 0.01
    # a rerun finds the pairs cached and still counts what they cost to make
    proc = subprocess.run([*cmd[:-4], "--output_dir", str(tmp_path / "again"), *cmd[-2:]], capture_output=True,
                          text=True, env=_env(), cwd=REPO, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert again["dpo_pairs"]["cached"] and again["offline_seconds"] == sampling


def test_where_rl_wins_follows_the_intervals():
    from trl_ext.compare.report import where_rl_wins

    paired = [
        {"a": "grpo", "b": "rft", "difference": 5.0, "ci95": [1.0, 9.0]},  # grpo better
        {"a": "rft", "b": "dapo", "difference": 4.0, "ci95": [0.5, 7.5]},  # dapo worse (sign flips)
        {"a": "ppo", "b": "rft", "difference": 1.0, "ci95": [-2.0, 4.0]},  # not told apart
        {"a": "grpo", "b": "dapo", "difference": 1.0, "ci95": [-2.0, 4.0]},  # no control: no sentence
    ]
    (line,) = where_rl_wins(paired)
    assert line.startswith("RL vs rft") and "better: grpo +5.0 [+1.0, +9.0]" in line
    assert "worse: dapo -4.0 [-7.5, -0.5]" in line and "not told apart: ppo +1.0 [-2.0, +4.0]" in line


def test_paired_table_reads_entry_minus_start_and_keeps_every_pair():
    from trl_ext.compare.report import START, paired_table

    rows = [{"label": START, "correct": [[0, 0, 1, 0]]}, {"label": "grpo", "correct": [[1, 1, 1, 0]] * 2},
            {"label": "dapo", "correct": [[1, 0, 1, 0]] * 2}]
    pairs = [(p["a"], p["b"], p["difference"]) for p in paired_table(rows, draws=50)]
    assert pairs == [("grpo", START, 50.0), ("dapo", START, 25.0), ("grpo", "dapo", 25.0)]
