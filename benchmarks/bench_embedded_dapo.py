"""The embedded default's promise, measured: `accelerate launch recipes/dapo_math.py` on 2 CPU cores raises held-out
strict accuracy by >= 10 points within 10 minutes (mean of 3 seeds).

    python benchmarks/bench_embedded_dapo.py [--seeds 0,1,2] [--output-dir outputs/bench_embedded_dapo]

Each seed is a full run of the recipe as a user starts it (the warm start comes from the cache; build it first with
`python -m trl_ext.models.tiny` so that its one-off 4 minutes are not counted). Prints before/after strict and
flexible accuracy per seed, their means, and the wall time of each run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--output-dir", default=str(REPO / "outputs" / "bench_embedded_dapo"))
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        out = Path(args.output_dir) / f"seed{seed}"
        start = time.time()
        cmd = [sys.executable, "-m", "accelerate.commands.launch", str(REPO / "recipes" / "dapo_math.py"),
               "--seed", str(seed), "--output_dir", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
        wall = time.time() - start
        if proc.returncode != 0:
            print(f"seed {seed}: FAILED ({proc.returncode})\n{proc.stderr[-3000:]}")
            continue
        s = json.loads((out / "summary.json").read_text())
        row = {"seed": seed, "wall_s": wall, "train_s": s["train_seconds"],
               "strict": (s["before"]["strict"]["accuracy"], s["after"]["strict"]["accuracy"]),
               "flexible": (s["before"]["flexible"]["accuracy"], s["after"]["flexible"]["accuracy"])}
        rows.append(row)
        print(f"seed {seed}: strict {100 * row['strict'][0]:.1f} -> {100 * row['strict'][1]:.1f}, flexible "
              f"{100 * row['flexible'][0]:.1f} -> {100 * row['flexible'][1]:.1f}; run {wall:.0f} s "
              f"(training {row['train_s']:.0f} s)", flush=True)
    if rows:
        gain = statistics.mean(100 * (r["strict"][1] - r["strict"][0]) for r in rows)
        flex = statistics.mean(100 * (r["flexible"][1] - r["flexible"][0]) for r in rows)
        print(f"mean over {len(rows)} seeds: strict gain {gain:+.1f} points (target >= +10), flexible gain "
              f"{flex:+.1f} points; slowest run {max(r['wall_s'] for r in rows):.0f} s (target <= 600 s)")


if __name__ == "__main__":
    main()
