"""Recipes: every YAML parses (with its base chain) into its recipe's dataclasses, unknown keys and reward names fail
clearly, and every recipe trains end to end in real 2-process `accelerate launch` runs (ZeRO-3 by default; ZeRO-2 and
DDP in the slow matrix), plus one in-process LoRA run."""

import json
import math
import runpy
from pathlib import Path

import pytest
from helpers.configs import one_launch_per_trainer, tiny_recipe_args
from helpers.launch import RECIPES, REPO, TESTS, launch
from helpers.worker import tagged_records

from trl_ext.configs import RECIPE_CONFIGS as CONFIGS
from trl_ext.recipe.algorithms import ALGORITHMS, algorithm_names, get_algorithm

HARDWARE_KEYS = {"bf16", "fp16", "tf32", "dtype", "use_vllm", "vllm_mode", "ddp_backend", "use_cpu"}
RECIPE_NAMES = algorithm_names()  # every entry of the table: its YAMLs are parsed
ALGOS = algorithm_names(controls=False)  # the compared algorithms (mission and TRL family): resumed in test_resume


LAUNCHED = one_launch_per_trainer()
SETTINGS_ONLY = [name for name in ALGOS if name not in LAUNCHED]  # dr_grpo, cispo, sapo: GRPOTrainer + a YAML


def dataclass_types(algo):
    return get_algorithm(algo).dataclass_types()


def algo_of(path: Path) -> str | None:
    stem = path.stem
    return stem if stem in RECIPE_NAMES else None


def all_recipe_yamls():
    return sorted(p for p in CONFIGS.rglob("*.yaml") if algo_of(p))


def parse(algo, config, extra=()):
    from trl import TrlParser

    from trl_ext.recipe import parse_recipe_args

    return parse_recipe_args(TrlParser(dataclass_types(algo)), args=["--config", str(config), "--output_dir", "/tmp/x", *extra])


# -- YAML configs ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [p for p in all_recipe_yamls() if algo_of(p) == "ppo"],
                         ids=lambda p: str(p.relative_to(CONFIGS)))
def test_ppo_recipes_update_several_times_per_rollout(path):
    """With one optimizer step per rollout PPO's ratio and value clips never act (the policy that
    sampled is the one being updated); the PPO recipes use verl's 4 mini-batches per rollout."""
    _, args, _ = parse("ppo", path)
    updates_per_rollout = args.steps_per_generation * args.num_iterations // args.gradient_accumulation_steps
    assert updates_per_rollout >= 4, (args.steps_per_generation, args.num_iterations, args.gradient_accumulation_steps)
    if args.save_strategy == "steps":
        assert args.save_steps % updates_per_rollout == 0  # checkpoints at rollout boundaries (exact resume)


@pytest.mark.parametrize("path", all_recipe_yamls(), ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_recipe_yaml_parses(path):
    from trl_ext.recipe import load_recipe_yaml

    values, sources = load_recipe_yaml(path)
    assert str(path.resolve()) in sources.values()
    script_args, training_args, model_args = parse(algo_of(path), path)
    for key, value in values.items():
        if key in ("base", "env", "output_dir"):
            continue
        objs = [o for o in (script_args, training_args, model_args) if hasattr(o, key)]
        assert objs, key
        if isinstance(value, int | float) and not isinstance(value, bool) and key not in HARDWARE_KEYS:
            assert float(getattr(objs[0], key)) == pytest.approx(float(value)), key  # numbers arrive as numbers
    if get_algorithm(algo_of(path)).online:
        assert script_args.reward_funcs


def test_every_yaml_is_reachable_from_a_recipe_yaml():
    """No orphan YAML: each file is a recipe YAML or the base of one (so every YAML is parsed above)."""
    from trl_ext.recipe import load_recipe_yaml

    used = set()
    for path in all_recipe_yamls():
        used.update(load_recipe_yaml(path)[1].values())
    orphans = [p for p in CONFIGS.rglob("*.yaml") if str(p.resolve()) not in used and algo_of(p) is None]
    # A base.yaml can only set keys; it is reachable when some recipe YAML inherits it.
    assert not orphans, orphans


def test_every_algorithm_has_its_configs_and_script():
    """One table entry, one YAML per config folder, one script: an algorithm is complete only with all three, and
    every recipe YAML and script belongs to a table entry. A control (SFT) needs only its embedded YAML."""
    model_folders = [p for p in (CONFIGS / "gsm8k").iterdir() if p.is_dir() and any(p.glob("*.yaml"))]
    assert model_folders
    for algo in ALGORITHMS:
        assert algo.default_config_path() == CONFIGS / "embedded" / f"{algo.name}.yaml"
        for folder in [CONFIGS / "embedded", *([] if algo.control else model_folders)]:
            assert (folder / f"{algo.name}.yaml").is_file(), (algo.name, folder)
        script = RECIPES / algo.script_name
        assert script.is_file(), script
        assert f'main("{algo.name}")' in script.read_text()
        assert algo.description and algo.paper and algo.changes
    names = {a.name for a in ALGORITHMS}
    assert {p.name[: -len("_math.py")] for p in RECIPES.glob("*_math.py")} == names
    assert {p.stem for p in CONFIGS.rglob("*.yaml")} - names <= {"base", "rl"}


def test_algorithm_lookup_and_config_defaults():
    from trl_ext.recipe.algorithms import UnknownAlgorithmError

    # the mission's five first (the headline), then TRL's family, then the SFT control
    assert [a.name for a in ALGORITHMS] == ["ppo", "dpo", "grpo", "dapo", "gspo", "rloo", "dr_grpo", "cispo", "sapo",
                                            "sft"]
    assert ALGOS == ["ppo", "dpo", "grpo", "dapo", "gspo", "rloo", "dr_grpo", "cispo", "sapo"]  # without the control
    assert [a.name for a in ALGORITHMS if a.family == "mission" and not a.control] == ALGOS[:5]
    assert LAUNCHED == ["ppo", "dpo", "grpo", "dapo", "gspo", "rloo"] and SETTINGS_ONLY == ["dr_grpo", "cispo", "sapo"]
    assert get_algorithm("DAPO") is get_algorithm("dapo")
    with pytest.raises(UnknownAlgorithmError, match="unknown algorithm 'kto'; known algorithms: ppo, dpo, grpo, dapo, "
                                                    "gspo, rloo, dr_grpo, cispo, sapo, sft"):
        get_algorithm("kto")
    # the dataclass defaults that the comparison's budget falls back on (its hand-copied BUDGET_DEFAULTS)
    budget = ["per_device_train_batch_size", "gradient_accumulation_steps", "num_generations", "num_iterations",
              "max_steps", "num_train_epochs"]
    for name in ("grpo", "dapo", "gspo", "dr_grpo", "cispo", "sapo"):
        assert get_algorithm(name).config_defaults(budget) == dict(zip(budget, [8, 1, 8, 1, -1, 3.0]))
    # RLOOConfig's own default group is 2 completions: the recipes' YAMLs set num_generations (rl.yaml: 8)
    assert get_algorithm("rloo").config_defaults(budget) == dict(zip(budget, [8, 1, 2, 1, -1, 3.0]))
    assert get_algorithm("ppo").config_defaults(["num_generations"]) == {"num_generations": 1}
    assert get_algorithm("dpo").config_defaults(["num_generations", "beta"]) == {"beta": 0.1}  # no num_generations
    trainers = {a.name: a.trainer_class().__module__.split(".")[0] for a in ALGORITHMS}
    assert trainers == {"ppo": "trl_ext", "dpo": "trl", "grpo": "trl", "dapo": "trl_ext", "gspo": "trl_ext",
                        "rloo": "trl", "dr_grpo": "trl", "cispo": "trl", "sapo": "trl", "sft": "trl"}
    sft = get_algorithm("sft")
    assert sft.run_label(sft.script_args_class()(sft_data="gold")) == "sft-gold"
    assert get_algorithm("dapo").run_label(None) == "dapo"


def test_trl_family_entries_are_stock_trl_with_their_paper():
    """TRL's family: stock TRL trainers and configs (no class of this project), online, each citing its paper by
    arXiv id; the GRPOTrainer loss variants are GRPOTrainer + GRPOConfig + their YAML. The table lists the mission's
    five first, then the family, then the control; an unknown family is refused when the entry is made."""
    import re

    from trl_ext.recipe.algorithms import Algorithm

    family = [a for a in ALGORITHMS if a.family == "trl"]
    assert [a.name for a in family] == ["rloo", "dr_grpo", "cispo", "sapo"]
    order = [0 if a.family == "mission" and not a.control else 1 if a.family == "trl" else 2 for a in ALGORITHMS]
    assert order == sorted(order) and ALGORITHMS[-1].control
    for algo in family:
        assert algo.online and not algo.control and algo.label_arg is None
        assert algo.config_spec.startswith("trl:") and algo.trainer_spec.startswith("trl:")
        assert algo.trainer_class().__module__.startswith("trl.trainer.")
        assert re.search(r"arXiv \d{4}\.\d{5}", algo.paper), algo.paper
    assert {(a.trainer_spec, a.config_spec) for a in family if a.name != "rloo"} == {("trl:GRPOTrainer",
                                                                                    "trl:GRPOConfig")}
    assert get_algorithm("rloo").trainer_spec == "trl:RLOOTrainer"
    with pytest.raises(ValueError, match="family must be one of"):
        Algorithm(name="x", description="x", script_args_spec="", config_spec="", trainer_spec="", training_data_spec="",
                  default_config="", paper="", changes="", family="other")


def test_online_embedded_recipes_share_one_rollout_budget():
    """The comparison gives every online algorithm the same samples: on the embedded testbed each trains 16
    completions per optimizer step (rollouts reused num_iterations times count once) for 150 steps of at most 48
    tokens, whatever its own settings (the family's entries included)."""
    from trl_ext.recipe import load_recipe_yaml

    fields = ["per_device_train_batch_size", "gradient_accumulation_steps", "num_iterations", "max_steps",
              "max_completion_length"]
    for algo in ALGORITHMS:
        if not algo.online:
            continue
        values, _ = load_recipe_yaml(algo.default_config_path())
        f = {**algo.config_defaults(fields), **{k: values[k] for k in fields if k in values}}
        samples_per_step = f["per_device_train_batch_size"] * f["gradient_accumulation_steps"] / f["num_iterations"]
        assert (samples_per_step, f["max_steps"], f["max_completion_length"]) == (16, 150, 48), algo.name


@pytest.mark.parametrize("path", [p for p in all_recipe_yamls() if algo_of(p) in ("cispo", "sapo")],
                         ids=lambda p: str(p.relative_to(CONFIGS)))
def test_importance_weighted_losses_update_several_times_per_rollout(path):
    """CISPO's capped weight and SAPO's gate act on the importance ratio, which is 1 while the policy that sampled is
    the one being updated: on-policy, both are a plain policy gradient. Their recipes split each rollout into several
    optimizer steps, and checkpoints fall at rollout boundaries."""
    _, args, _ = parse(algo_of(path), path)
    updates_per_rollout = args.steps_per_generation * args.num_iterations // args.gradient_accumulation_steps
    assert updates_per_rollout >= 2, (args.steps_per_generation, args.num_iterations, args.gradient_accumulation_steps)
    if args.save_strategy == "steps":
        assert args.save_steps % updates_per_rollout == 0


def test_importing_the_recipe_package_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys, trl_ext.recipe, trl_ext.recipe.algorithms, trl_ext.configs, trl_ext.cli; "
            "trl_ext.recipe.get_algorithm('dapo').default_config_path(); "
            "print(sorted({'torch', 'trl', 'transformers', 'deepspeed'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_inheritance_merges_and_overrides(tmp_path):
    from trl_ext.recipe import load_recipe_yaml

    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text("learning_rate: 1.0e-5\nmax_steps: 3\nmodel_init_kwargs: {a: 1, b: 2}\n")
    (tmp_path / "sub" / "mid.yaml").write_text("base: ../base.yaml\nmax_steps: 4\n")
    (tmp_path / "sub" / "grpo.yaml").write_text("base: mid.yaml\nmodel_init_kwargs: {b: 3}\n")
    values, sources = load_recipe_yaml(tmp_path / "sub" / "grpo.yaml")
    assert values == {"learning_rate": 1e-5, "max_steps": 4, "model_init_kwargs": {"a": 1, "b": 3}}
    assert sources["max_steps"].endswith("mid.yaml") and sources["learning_rate"].endswith("base.yaml")
    _, training_args, _ = parse("grpo", tmp_path / "sub" / "grpo.yaml", ["--max_steps", "7"])
    assert training_args.learning_rate == 1e-5 and training_args.max_steps == 7  # command line wins
    assert training_args.bf16 is False  # no CUDA here


def test_unknown_key_names_key_and_file(tmp_path):
    from trl_ext.recipe import RecipeConfigError

    (tmp_path / "base.yaml").write_text("learning_rate: 1.0e-5\nlearning_rat: 2.0e-5\n")
    (tmp_path / "dapo.yaml").write_text("base: base.yaml\nmax_steps: 2\n")
    with pytest.raises(RecipeConfigError, match=r"unknown key 'learning_rat' in recipe config .*base\.yaml.*learning_rate"):
        parse("dapo", tmp_path / "dapo.yaml")
    # A key of another recipe's config is unknown here too: DAPO's dynamic sampling in a GRPO recipe.
    (tmp_path / "grpo.yaml").write_text("dynamic_sampling: true\n")
    with pytest.raises(RecipeConfigError, match=r"unknown key 'dynamic_sampling' in recipe config .*grpo\.yaml"):
        parse("grpo", tmp_path / "grpo.yaml")


def test_inheritance_cycle(tmp_path):
    from trl_ext.recipe import RecipeConfigError, load_recipe_yaml

    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(RecipeConfigError, match="cycle"):
        load_recipe_yaml(tmp_path / "a.yaml")


def test_unknown_reward_function_name():
    from trl_ext.recipe import RLScriptArguments, get_reward_funcs

    with pytest.raises(ValueError, match=r"unknown reward function name\(s\) \['acuracy'\].*'accuracy', 'accuracy_flexible'"):
        RLScriptArguments(reward_funcs=["acuracy"])
    with pytest.raises(ValueError, match="could not be imported"):
        get_reward_funcs(["no_such_module:f"])
    funcs = get_reward_funcs("accuracy,format")
    assert [f.__name__ for f in funcs] == ["accuracy_reward", "format_reward"]


def test_only_terminated_correct_completions_are_chosen():
    """A correct completion cut off by the generation limit (no EOS) is not a *chosen* answer:
    DPO would learn to stop mid-answer. It can still be rejected when wrong."""
    from trl_ext.recipe.dpo_pairs import make_pairs

    records = [
        {"completions": ["long right", "right", "wrong"], "strict": [True, True, False],
         "terminated": [False, True, True]},
        {"completions": ["cut right", "wrong"], "strict": [True, False], "terminated": [False, True]},
        {"completions": ["right", "cut wrong"], "strict": [True, False], "terminated": [True, False]},
    ]
    rows, stats = make_pairs(records, ["s0", "s1", "s2"])
    assert [(r["index"], r["chosen"], r["rejected"]) for r in rows] == [(0, "right", "wrong"), (2, "right", "cut wrong")]
    assert stats["none_correct"] == 1  # question 1: its only correct completion was truncated


def test_make_pairs_counts_questions_without_pairs():
    from trl_ext.recipe.dpo_pairs import make_pairs

    records = [
        {"completions": ["a", "b", "c"], "strict": [True, False, False]},  # a pair
        {"completions": ["a", "a"], "strict": [True, True]},  # all correct
        {"completions": ["x", "y"], "strict": [False, False]},  # none correct
    ]
    rows, stats = make_pairs(records, ["s0", "s1", "s2"], max_pairs_per_question=2)
    assert [(r["chosen"], r["rejected"]) for r in rows] == [("a", "b")]
    assert stats["all_correct"] == 1 and stats["none_correct"] == 1 and stats["questions_without_pair"] == 2
    rows, stats = make_pairs(records, ["s0", "s1", "s2"], chosen_fallback="reference")
    assert rows[-1] == {"index": 2, "chosen": "s2", "rejected": "x", "pair_source": "reference"}
    assert stats["reference_fallback"] == 1 and stats["pairs"] == 2


# -- end-to-end runs ---------------------------------------------------------------------------------------------


def check_run(summary, results, output_dir, world_size):
    assert sorted(r["rank"] for r in results) == list(range(world_size))
    for r in results:
        assert r["world_size"] == world_size and r["global_step"] == 2
    assert summary["world_size"] == world_size and summary["global_step"] == 2
    assert summary["losses_finite"] and all(math.isfinite(x) for x in summary["losses"])
    assert summary["param_change"]["tensors_changed"] > 0, summary["param_change"]
    assert summary["before"] is not None and summary["after"] is not None
    # the mechanism beside the score: sampled evaluation (mean@4 at T=1), share of answers showing work, by steps
    for tag in ("before", "after"):
        e = summary[tag]
        assert e["sampled"]["num_samples"] == 4 and e["sampled"]["temperature"] == 1.0
        assert 0 <= e["sampled"]["flexible"]["mean@4"] <= 1 and 0 <= e["shows_work"] <= 1
        assert sum(v["problems"] for v in e["by_steps"].values()) == e["num_problems"] == 8
    assert set(summary["gain_points"]) >= {"strict", "flexible", "sampled_flexible", "shows_work"}
    assert {"eval_before", "train", "eval_after"} <= set(summary["phase_seconds"])
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(summary["final_model"])  # a full, loadable model
    assert sum(p.numel() for p in model.parameters()) > 0


def run_launch(algo, config, tiny_model_path, tmp_path, mixed_precision="no"):
    out = tmp_path / f"{algo}-{config}"
    proc = launch(RECIPES / f"{algo}_math.py", tiny_recipe_args(algo, tiny_model_path, str(out)), config=config,
                  timeout=600, mixed_precision=mixed_precision)
    results = [json.loads(r) for r in tagged_records(proc.stdout, "RECIPE_RESULT")]
    summary = json.loads((out / "summary.json").read_text())
    check_run(summary, results, out, world_size=2)
    assert "no CUDA: fp32" in proc.stdout
    return summary, proc


@pytest.mark.timeout(600)
@pytest.mark.parametrize("algo", LAUNCHED)
def test_recipe_two_process_zero3(algo, tiny_model_path, tmp_path):
    # GRPO launches as a user who forgot `--mixed_precision no` on CPU would: the config's bf16 must be switched off
    bf16_config = algo == "grpo"
    summary, proc = run_launch(algo, "zero3", tiny_model_path, tmp_path, mixed_precision=None if bf16_config else "no")
    assert "DeepSpeed ZeRO-3" in summary["hardware"]
    if bf16_config:
        assert "ACCELERATE_MIXED_PRECISION bf16 -> no" in proc.stdout + proc.stderr
    if algo == "dpo":
        assert summary["dpo_pairs"]["pairs"] > 0
        assert "DPO pairs:" in proc.stdout
    if algo == "rloo":  # RLOOTrainer calls the reward functions as GRPOTrainer does: the first one counts the samples
        assert summary["samples_generated"] == 2 * 8 * 2  # 2 steps x 8 completions per process x 2 processes


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_main_job_teaches_the_model_to_show_its_work(tmp_path):
    """README's main job exactly as a user runs it (`accelerate launch recipes/dapo_math.py`, no recipe arguments
    but the output folder; the warm start is built if it is not cached): greedy flexible accuracy on 200 held-out
    problems rises by >= 25 points, the gain is correctness rather than format (strict = flexible within 2 points
    before and after), and it comes with answers that show their work."""
    import os
    import subprocess
    import sys

    out = tmp_path / "dapo"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", str(RECIPES / "dapo_math.py"),
                           "--output_dir", str(out)], capture_output=True, text=True, env=env, cwd=REPO, timeout=1400)
    assert proc.returncode == 0, proc.stderr[-5000:]
    summary = json.loads((out / "summary.json").read_text())
    before, after, gain = summary["before"], summary["after"], summary["gain_points"]
    print({k: round(v, 1) for k, v in gain.items()}, summary["phase_seconds"])
    assert gain["flexible"] >= 25
    for e in (before, after):
        assert abs(e["strict"]["accuracy"] - e["flexible"]["accuracy"]) <= 0.02
    assert after["shows_work"] >= before["shows_work"] + 0.3
    assert "answers showing work" in proc.stdout  # the printed summary reads the mechanism, not just the score


def test_dpo_pair_sampling_resumes_chunk_by_chunk(tiny_model_path, tmp_path, monkeypatch):
    """Finished chunks are kept on disk, so a killed run samples only what is missing; two ranks (two
    processes sharing the cache) split the chunks and end with the same pairs, which one process alone rebuilds."""
    import trl_ext.recipe.dpo_pairs as dpo_pairs
    import trl_ext.recipe.sampling as sampling
    from trl_ext.data.gsm8k import load_gsm8k

    questions = load_gsm8k("synthetic", "train", num_examples=64, seed=0)
    settings = dict(num_samples=2, temperature=1.0, max_new_tokens=8, batch_size=64, chosen_fallback="reference",
                    seed=0, backend="hf")
    sampled = []
    real = sampling.sample_records

    def counting(*args, **kwargs):
        for chunk, records in real(*args, **kwargs):
            sampled.append(chunk)
            yield chunk, records

    monkeypatch.setattr(sampling, "sample_records", counting)
    # rank 1 in a process of its own (sampling seeds torch's global generator, which threads would share)
    import subprocess
    import sys

    code = ("import json, sys; from trl_ext.data.gsm8k import load_gsm8k; from trl_ext.recipe.dpo_pairs import "
            "onpolicy_pairs; q = load_gsm8k('synthetic', 'train', num_examples=64, seed=0); "
            f"p, _, _ = onpolicy_pairs({tiny_model_path!r}, q, cache_dir={str(tmp_path)!r}, rank=1, world_size=2, "
            f"chunk_size=16, **{settings!r}); print('CHOSEN', json.dumps(list(p['chosen'])))")
    other = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {0: dpo_pairs.onpolicy_pairs(tiny_model_path, questions, cache_dir=tmp_path, rank=0, world_size=2,
                                           chunk_size=16, **settings)}
    stdout, stderr = other.communicate(timeout=300)
    assert other.returncode == 0, stderr[-3000:]
    assert sampled == [(0, 16), (32, 48)]  # rank 0's chunks; rank 1 sampled the others
    chosen_1 = json.loads(next(line for line in stdout.splitlines() if line.startswith("CHOSEN "))[7:])
    assert chosen_1 == list(results[0][0]["chosen"]) and len(chosen_1) > 0
    final = results[0][2]
    # A run killed after three of the four chunks: only the missing chunk is sampled again, same pairs.
    import shutil

    shutil.rmtree(final)
    (final.parent / (final.name + ".parts") / "chunk-00000016-00000032.json").unlink()
    sampled.clear()
    again, stats, _ = dpo_pairs.onpolicy_pairs(tiny_model_path, questions, cache_dir=tmp_path, chunk_size=16,
                                               **settings)
    assert sampled == [(16, 32)] and not stats["cached"]
    assert again["chosen"] == results[0][0]["chosen"] and again["rejected"] == results[0][0]["rejected"]


@pytest.mark.timeout(600)
def test_dpo_pairs_sampled_by_every_rank_outlast_a_short_ddp_timeout(tiny_model_path, tmp_path):
    """DPO pair sampling ran on rank 0 while the other ranks waited in a barrier bounded by
    ddp_timeout; on 8 GPUs with GSM8K the NCCL watchdog killed the job before the cache was written, every time.
    Now every rank samples its chunks and waits on files, not on a collective: a 2-process ZeRO-3 run whose sampling
    takes longer than its 4 s ddp_timeout succeeds, resumes chunk by chunk, and gives exactly the pairs that one
    process builds with the same seed."""
    from trl_ext.data.gsm8k import load_gsm8k
    from trl_ext.recipe.dpo_pairs import build_onpolicy_pairs, chunk_bounds

    out, cache = tmp_path / "dpo", tmp_path / "pairs"
    n, chunk = 768, 64  # about 9 s of sampling per rank on 2 cores: twice the timeout
    args = tiny_recipe_args("dpo", tiny_model_path, str(out)) + [
        "--num_train_examples", str(n), "--dpo_num_samples", "4", "--dpo_max_new_tokens", "24", "--ddp_timeout", "4",
        "--dpo_sample_chunk_size", str(chunk), "--dpo_pairs_cache_dir", str(cache), "--eval_before", "false",
        "--eval_after", "false", "--max_steps", "1",
    ]
    proc = launch(RECIPES / "dpo_math.py", args, config="zero3", timeout=600)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phase_seconds"]["dpo_pairs"] > 4, summary["phase_seconds"]  # it outlasted the timeout
    assert summary["global_step"] == 1 and "DPO pairs:" in proc.stdout
    [parts] = list(cache.glob("pairs-*.parts"))
    assert len(list(parts.glob("chunk-*.json"))) == len(chunk_bounds(n, chunk))
    [final] = [p for p in cache.glob("pairs-*") if p.is_dir() and not p.name.endswith(".parts")]

    import datasets

    sharded = datasets.load_from_disk(str(final / "data"))
    questions = load_gsm8k("synthetic", "train", num_examples=n, seed=0)
    single, _ = build_onpolicy_pairs(tiny_model_path, questions, num_samples=4, temperature=1.0, max_new_tokens=24,
                                     batch_size=64, chosen_fallback="reference", seed=0, chunk_size=chunk)
    assert len(sharded) == len(single) > 0
    for column in ("prompt", "chosen", "rejected"):
        assert sharded[column] == single[column]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("config", ["zero2", "multi_gpu"])
@pytest.mark.parametrize("algo", LAUNCHED)  # one per trainer class: a GRPOTrainer loss variant shards as GRPO does
def test_recipe_two_process_matrix(algo, config, tiny_model_path, tmp_path):
    run_launch(algo, config, tiny_model_path, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("algo", SETTINGS_ONLY)
def test_settings_only_entries_two_process_zero3(algo, tiny_model_path, tmp_path):
    """The GRPOTrainer loss variants of TRL's family, launched as their recipes run (their embedded YAML), in the slow
    suite; the default suite checks what reaches their trainer in one process (test_loss_variants_reach_the_trainer)."""
    summary, _ = run_launch(algo, "zero3", tiny_model_path, tmp_path)
    assert "DeepSpeed ZeRO-3" in summary["hardware"]


@pytest.mark.timeout(300)
def test_lora_in_process(tiny_model_path, tmp_path, monkeypatch):
    """One process, GRPO recipe with the ModelConfig LoRA flags: the adapter is trained, merged and evaluated."""
    import sys

    monkeypatch.syspath_prepend(str(TESTS))
    out = tmp_path / "lora"
    argv = ["grpo_math.py", *tiny_recipe_args("grpo", tiny_model_path, str(out)), "--use_cpu", "true",
            "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "all-linear"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(RECIPES / "grpo_math.py"), run_name="__main__")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["use_peft"] and (out / "adapter_config.json").exists()
    assert summary["final_model"] == str(out / "merged")
    assert summary["param_change"]["tensors_changed"] > 0  # the merged LoRA delta moved q/v projections
    check_run(summary, [{"rank": 0, "world_size": 1, "global_step": 2}], out, world_size=1)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("algo", SETTINGS_ONLY)
def test_loss_variants_reach_the_trainer(algo, tiny_model_path, tmp_path):
    """One process, one optimizer step of each GRPOTrainer loss variant of TRL's family, built by the table from its
    embedded YAML (tiny model and sizes on the command line): the YAML's loss settings are the trainer's, and the step
    ran that loss (TRL logs PPO's clip ratios for dr_grpo, the share of capped weights for cispo, neither for sapo's
    soft gate)."""
    from trl import GRPOTrainer

    from trl_ext.recipe import RecipeRun, load_recipe_yaml

    algorithm = get_algorithm(algo)
    values, _ = load_recipe_yaml(algorithm.default_config_path())
    args = tiny_recipe_args(algo, tiny_model_path, str(tmp_path / algo))
    args[args.index("--max_steps") + 1] = "1"
    run = RecipeRun(algo, *parse(algo, algorithm.default_config_path(), args))
    trainer = algorithm.build_trainer(run)
    assert type(trainer) is GRPOTrainer and trainer.loss_type == values["loss_type"]
    loss_keys = ["loss_type", "scale_rewards", "beta", "epsilon", "epsilon_high", "sapo_temperature_pos",
                 "sapo_temperature_neg", "steps_per_generation"]
    assert {k: getattr(trainer.args, k) for k in loss_keys if k in values} == {k: values[k] for k in loss_keys
                                                                                if k in values}
    trainer.train()
    logged = set().union(*trainer.state.log_history)
    assert trainer.state.global_step == 1 and math.isfinite(trainer.state.log_history[0]["loss"])
    assert ("clip_ratio/region_mean" in logged) is (algo == "dr_grpo")
    assert ("cispo_clip_ratio" in logged) is (algo == "cispo")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("algo", ["grpo", "dpo"])
def test_lora_two_process_zero3(algo, tiny_model_path, tmp_path):
    """LoRA under ZeRO-3: the adapter is gathered and saved, merged on the main process and evaluated."""
    out = tmp_path / f"{algo}-lora"
    args = tiny_recipe_args(algo, tiny_model_path, str(out)) + [
        "--use_peft", "true", "--lora_r", "4", "--lora_alpha", "8", "--lora_target_modules", "q_proj", "v_proj"]
    proc = launch(RECIPES / f"{algo}_math.py", args, config="zero3")
    results = [json.loads(r) for r in tagged_records(proc.stdout, "RECIPE_RESULT")]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_model"] == str(out / "merged") and (out / "adapter_config.json").exists()
    check_run(summary, results, out, world_size=2)


def test_too_few_prompts_for_one_rollout_fail_clearly(tiny_model_path, tmp_path):
    """TRL's sampler yields nothing when the training set is smaller than one rollout, and the run ended after 0
    steps without an error (it happened to the PPO recipe test when the YAML moved to 4 mini-batches per rollout)."""
    from trl_ext import PPOConfig
    from trl_ext.recipe import RecipeRun, RLScriptArguments

    def dataset(n):
        args = PPOConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, per_device_train_batch_size=8,
                         steps_per_generation=4, num_generations=1)
        from trl import ModelConfig

        return RecipeRun("ppo", RLScriptArguments(num_train_examples=n), args,
                         ModelConfig(model_name_or_path=tiny_model_path)).train_dataset()

    with pytest.raises(ValueError, match=r"20 training prompts, but one rollout takes 32 .*0 steps.*num_train_examples"):
        dataset(20)
    assert len(dataset(32)) == 32


def test_long_prompts_fail_before_the_model_loads_or_are_dropped(tiny_model_path, tmp_path):
    from trl import GRPOConfig, ModelConfig

    from trl_ext.recipe import RecipeRun, RLScriptArguments

    def run_with(**script):
        return RecipeRun("grpo", RLScriptArguments(num_train_examples=40, **script),
                         GRPOConfig(output_dir=str(tmp_path), bf16=False), ModelConfig(model_name_or_path=tiny_model_path))

    full = run_with(max_prompt_length=None).train_dataset()
    lengths = [len(run_with().tokenizer.apply_chat_template(p, add_generation_prompt=True, return_dict=False))
               for p in full["prompt"]]
    limit = sorted(lengths)[len(lengths) // 2]  # about half the prompts are longer
    longer = sum(n > limit for n in lengths)
    assert 0 < longer < len(lengths)
    first = next(i for i, n in enumerate(lengths) if n > limit)
    with pytest.raises(ValueError, match=rf"{longer} of 40 training prompts .* max_prompt_length={limit} .* row "
                                         rf"{first} \({lengths[first]} tokens\).*--long_prompts drop"):
        run_with(max_prompt_length=limit).train_dataset()
    kept = run_with(max_prompt_length=limit, long_prompts="drop").train_dataset()
    assert len(kept) == len(lengths) - longer
    assert kept["question"] == [q for q, n in zip(full["question"], lengths) if n <= limit]
    with pytest.raises(ValueError, match="long_prompts must be 'error' or 'drop'"):
        RLScriptArguments(long_prompts="truncate")


@pytest.mark.parametrize("path", [p for p in all_recipe_yamls() if "gsm8k" in p.parts],
                         ids=lambda p: str(p.relative_to(CONFIGS)))
def test_gpu_yamls_parse_as_on_a_gpu_machine_with_vllm(path, monkeypatch):
    """The GPU YAMLs keep bf16 and vLLM on a CUDA machine: parse them with the hardware facts of 8 GPUs + vLLM (on
    this CPU machine the recipes switch both off, which would hide a config that is invalid where it matters)."""
    import transformers.training_args

    from trl_ext.recipe import hardware

    monkeypatch.setattr(hardware, "_STATE", {"cuda": True, "num_gpus": 8, "deepspeed": True, "zero_stage": "3",
                                             "vllm": True, "notes": []})
    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda *a, **k: True)
    _, training_args, _ = parse(algo_of(path), path)
    if "smollm2" not in str(path):
        assert training_args.bf16 is True
        assert getattr(training_args, "use_vllm", False) is get_algorithm(algo_of(path)).online
