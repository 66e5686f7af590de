"""The main job's promise, measured: `accelerate launch recipes/dapo_math.py` on the embedded testbed raises held-out
greedy *flexible* accuracy by >= 30 points (mean of 3 seeds, no seed below +25) in <= 10 minutes on 2 CPU cores,
the first warm-start build included.

    python benchmarks/bench_embedded_dapo.py                       # DAPO, seeds 0,1,2, test split
    python benchmarks/bench_embedded_dapo.py --algos grpo,gspo,ppo,dpo,dapo --output docs/results/embedded_recipes.md
    python benchmarks/bench_embedded_dapo.py --algos grpo,dapo --seeds 0 --split validation \
        --sweep learning_rate=5e-6,1e-5,2e-5 --output docs/results/embedded_tuning.md     # tuning, never on test

Each run is the recipe as a user starts it (`accelerate launch recipes/<algo>_math.py --seed S`, everything else from
the embedded YAML; arguments after `--` go to every run). The first run builds the warm start if it is not cached
(`--fresh-cache` forces that, in a temporary cache, so the first-run wall time includes the build). Prints and writes
per seed: greedy strict/flexible before -> after, sampled flexible mean@4, the share of answers that show their work,
and the wall time of each phase (warm start, evaluation before, training, evaluation after, the rest: process start,
imports, model loads, saving); then mean +- sd of the gains per algorithm and the lowest seed. `--split validation`
evaluates on the validation split carved from the training problems (for tuning; never tune on test).
Threads: each run gets `OMP_NUM_THREADS=--threads` (default 2, the machine's cores); `--jobs 2 --threads 1` runs two
recipes at a time, for tuning sweeps where only accuracy matters (wall times are then not comparable).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from trl_ext.rewards.answers import MODES

REPO = Path(__file__).resolve().parents[1]


def run_one(algo: str, setting: str, seed: int, args, extra: list[str], env: dict) -> dict:
    """One recipe launch; ``setting`` is ``FIELD=value`` of a sweep, or ``""``."""
    name = f"{algo}-{setting.replace('=', '')}-seed{seed}" if setting else f"{algo}-seed{seed}"
    out = Path(args.output_dir) / name
    sweep_args = ["--" + setting.split("=", 1)[0], setting.split("=", 1)[1]] if setting else []
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1",
           str(REPO / "recipes" / f"{algo}_math.py"), "--seed", str(seed), "--output_dir", str(out),
           "--dataset_test_split", args.split, *extra, *sweep_args]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    wall = time.time() - start
    (Path(args.output_dir) / f"{name}.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        print(f"{name}: FAILED ({proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
        return {"algo": algo, "setting": setting, "seed": seed, "failed": proc.returncode}
    s = json.loads((out / "summary.json").read_text())
    b, a = s["before"], s["after"]
    k = f"mean@{b['sampled']['num_samples']}" if b.get("sampled") else None
    phases = {name: round(v, 1) for name, v in s["phase_seconds"].items()}
    phases["other"] = round(wall - sum(s["phase_seconds"].values()), 1)
    row = {
        "algo": algo, "setting": setting, "seed": seed, "wall_s": round(wall, 1), "phases_s": phases, "global_step": s["global_step"],
        **{f"{m}_{t}": 100 * e[m]["accuracy"] for m in MODES for t, e in (("before", b), ("after", a))},
        "sampled_before": 100 * b["sampled"]["flexible"][k] if k else None,
        "sampled_after": 100 * a["sampled"]["flexible"][k] if k else None,
        "work_before": 100 * b["shows_work"], "work_after": 100 * a["shows_work"],
        "by_steps_before": {n: 100 * v["flexible"] for n, v in b["by_steps"].items()},
        "by_steps_after": {n: 100 * v["flexible"] for n, v in a["by_steps"].items()},
    }
    row["gain_flexible"] = row["flexible_after"] - row["flexible_before"]
    row["gain_strict"] = row["strict_after"] - row["strict_before"]
    print(f"{name}: flexible {row['flexible_before']:.1f} -> {row['flexible_after']:.1f} "
          f"({row['gain_flexible']:+.1f}), strict {row['strict_before']:.1f} -> {row['strict_after']:.1f}, shows work "
          f"{row['work_before']:.0f}% -> {row['work_after']:.0f}%; wall {wall:.0f} s {phases}", flush=True)
    return row


def _label(row: dict) -> str:
    return f"{row['algo']} {row['setting']}" if row.get("setting") else row["algo"]


def _sd(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def report(rows: list[dict], args, extra: list[str], header: str) -> str:
    lines = [header, "", f"Command: `python benchmarks/bench_embedded_dapo.py {' '.join(sys.argv[1:])}`", "",
             f"Held-out split: `{args.split}`; greedy accuracy on 200 problems (one standard error is about 3.5 "
             "points); sampled = flexible mean@4 at T=1; shows work = share of greedy answers with an equation line "
             "before `#### N`. Phases in seconds: warm start (build or cache look-up), evaluation before, training, "
             "evaluation after, other (process start, imports, model loads, saving).", "",
             "| run | seed | flexible before -> after (gain) | strict before -> after | sampled before -> after | "
             "shows work | by steps 1/2/3 after | steps | wall s | phases s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {_label(r)} | {r['seed']} | FAILED (exit {r['failed']}) | | | | | | | |")
            continue
        sampled = (f"{r['sampled_before']:.1f} -> {r['sampled_after']:.1f}" if r["sampled_before"] is not None
                   else "-")
        by_steps = "/".join(f"{v:.0f}" for v in r["by_steps_after"].values())
        phases = ", ".join(f"{k} {v:.0f}" for k, v in r["phases_s"].items())
        lines.append(
            f"| {_label(r)} | {r['seed']} | {r['flexible_before']:.1f} -> {r['flexible_after']:.1f} "
            f"({r['gain_flexible']:+.1f}) | {r['strict_before']:.1f} -> {r['strict_after']:.1f} | {sampled} | "
            f"{r['work_before']:.0f}% -> {r['work_after']:.0f}% | {by_steps} | {r['global_step']} | "
            f"{r['wall_s']:.0f} | {phases} |")
    lines += ["", "| run | seeds | flexible gain mean +- sd | lowest seed | strict gain mean | sampled gain mean | "
              "slowest wall s |", "|---|---|---|---|---|---|---|"]
    for algo in dict.fromkeys(_label(r) for r in rows):
        ok = [r for r in rows if _label(r) == algo and "failed" not in r]
        failed = sum(1 for r in rows if _label(r) == algo and "failed" in r)
        if not ok:
            lines.append(f"| {algo} | 0 ({failed} failed) | | | | | |")
            continue
        gains = [r["gain_flexible"] for r in ok]
        sampled = [r["sampled_after"] - r["sampled_before"] for r in ok if r["sampled_before"] is not None]
        lines.append(
            f"| {algo} | {len(ok)}{f' ({failed} failed)' if failed else ''} | {statistics.mean(gains):+.1f} +- "
            f"{_sd(gains):.1f} | {min(gains):+.1f} | {statistics.mean(r['gain_strict'] for r in ok):+.1f} | "
            f"{statistics.mean(sampled):+.1f} | {max(r['wall_s'] for r in ok):.0f} |"
            if sampled else f"| {algo} | {len(ok)} | {statistics.mean(gains):+.1f} +- {_sd(gains):.1f} | "
            f"{min(gains):+.1f} | | | {max(r['wall_s'] for r in ok):.0f} |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algos", default="dapo", help="comma-separated recipes (dapo, grpo, gspo, ppo, dpo)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--split", default="test", help="held-out split: test, or validation for tuning")
    parser.add_argument("--output-dir", default=str(REPO / "outputs" / "bench_embedded"))
    parser.add_argument("--output", default=None, help="also write the Markdown report (and a .json beside it) here")
    parser.add_argument("--fresh-cache", action="store_true", help="build the warm start in the first run")
    parser.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--sweep", default=None, help="FIELD=v1,v2,...: run every algorithm and seed with each value")
    args, extra = parser.parse_known_args()
    extra = [x for x in extra if x != "--"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
           "WANDB_MODE": "disabled", "OMP_NUM_THREADS": str(args.threads)}
    if args.fresh_cache:
        env["TRL_EXT_CACHE"] = tempfile.mkdtemp(prefix="trl_ext_cache_")
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    settings = [""]
    if args.sweep:
        field, _, values = args.sweep.partition("=")
        settings = [f"{field}={v}" for v in values.split(",")]
    jobs = [(algo, setting, int(seed)) for algo in args.algos.split(",") for setting in settings
            for seed in args.seeds.split(",")]
    start = time.time()
    # The first run alone (it may build the warm start), then the rest `--jobs` at a time.
    rows = [run_one(*jobs[0], args, extra, env)]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows += list(pool.map(lambda job: run_one(*job, args, extra, env), jobs[1:]))
    import platform

    import torch

    header = (f"# Embedded testbed: recipe gains over seeds\n\nMachine: {os.cpu_count()} CPU cores, {platform.machine()}, "
              f"torch {torch.__version__}, OMP_NUM_THREADS={args.threads}, {args.jobs} run(s) at a time; "
              f"total {time.time() - start:.0f} s. Recipe arguments: `{' '.join(extra) or '(embedded defaults)'}`.")
    text = report(rows, args, extra, header)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
        Path(args.output).with_suffix(".json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
