"""One command to compare the math recipes (PPO, DPO, GRPO, DAPO, GSPO) and the SFT controls on GSM8K-style data:
the same start model, data, budget (completions generated, by default) and evaluator for every entry; a sweep of one
field on the validation split picks each entry's value; the seeds then run on the test split; the report
(``<output-dir>/results.md`` + ``.csv``, ``.json``, PNGs) gives the gains with intervals, paired differences,
accuracy during training, the phenomena the papers argue with, and the budget each entry used.

    # the embedded CPU testbed, the committed protocol (docs/results/embedded/results.md):
    python recipes/compare_gsm8k.py --sweep learning_rate=1e-5,2e-5,4e-5 --control-sweep learning_rate=1e-4,3e-4 \
        --seeds 3 --output-dir outputs/comparison/embedded --report-dir docs/results/embedded
    # GSM8K with Qwen2.5-0.5B-Instruct, each run on 8 GPUs under ZeRO-3 (docs/comparison.md):
    python recipes/compare_gsm8k.py --config-dir recipes/configs/gsm8k/qwen2.5-0.5b-instruct --controls rft \
        --launch-config accelerate_configs/zero3.yaml --num-processes 8 --samples 102400 --curve-points 8 \
        --sweep learning_rate=5e-7,1e-6,2e-6 --output-dir comparison/qwen05
    # --dry-run prints the plan; overrides for every run go after `--`, for one entry with --algo-args:
    python recipes/compare_gsm8k.py --algos grpo,dapo --algo-args "dapo=--dynamic_sampling_max_rounds 2" \
        --dry-run -- --eval_limit 100
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import sys
import threading
import time
from pathlib import Path

from trl_ext.compare import plan as P
from trl_ext.compare.machine import machine_info, machine_line
from trl_ext.compare.markdown import (
    budget_table,
    format_report,
    portable,
    protocol_lines,
    provenance,
    readme_table,
    run_rows,
    sweep_table,
    write_csv,
)
from trl_ext.compare.report import (
    aggregate,
    cost_summary,
    paired_table,
    phenomena_summary,
    power_summary,
    readings,
    speed_table,
)
from trl_ext.compare.runner import Progress, build_command, load_correctness, load_history, run_one


def build_parser(prog="compare_gsm8k.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                epilog="Recipe overrides for every run go after `--`, e.g. `-- --eval_limit 50`.")
    p.add_argument("--algos", default=",".join(P.ALGOS), help="comma-separated, default: %(default)s")
    p.add_argument("--controls", default=",".join(P.CONTROLS),
                   help="SFT controls (%(default)s) or 'none'; rft spends the samples budget, the others get the "
                   "online algorithms' mean training time")
    p.add_argument("--seeds", type=int, default=3, help="test-phase seeds 0..N-1 (default 3)")
    p.add_argument("--seed-list", default=None, help="explicit seeds, e.g. 1,7,42 (instead of --seeds)")
    p.add_argument("--budget", default="samples", choices=P.BUDGETS, help="what is held equal (default samples)")
    p.add_argument("--samples", type=int, default=None,
                   help="samples budget (default: the most any online algorithm's config trains on)")
    p.add_argument("--prompts", type=int, default=None, help="prompts budget (with --budget prompts)")
    p.add_argument("--seconds", type=float, default=None, help="training seconds (with --budget seconds)")
    p.add_argument("--sweep", default=None, help="FIELD=v1,v2,...: tuned for every algorithm on validation")
    p.add_argument("--control-sweep", default=None, help="FIELD=v1,v2,... for the controls (SFT learning rates "
                   "are another scale)")
    p.add_argument("--sweep-seeds", type=int, default=3, help="seeds per swept value (default 3)")
    p.add_argument("--max-widen", type=int, default=2,
                   help="times an entry's grid is extended past an edge pick (one more value at that end, --sweep-seeds "
                   "each) before the report flags the pick as an edge pick (default 2; 0: flag only)")
    p.add_argument("--test-problems", type=int, default=2000,
                   help="test problems evaluated (at most; default 2000: the synthetic testbed generates them, real "
                   "GSM8K has 1,319)")
    p.add_argument("--validation-problems", type=int, default=1000,
                   help="validation problems of the sweep and the curves (at most; default 1000)")
    p.add_argument("--curve-points", type=int, default=None,
                   help="accuracy evaluations during each test-phase run besides the first (default 12 on CPU, 0 on "
                   "GPUs)")
    p.add_argument("--curve-limit", type=int, default=None,
                   help="validation problems per curve point (default: --validation-problems)")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs at a time (each with cores / jobs threads); 2 on a 2-core CPU machine, 1 when each run "
                   "takes every GPU")
    p.add_argument("--config-dir", default="embedded", help="folder with <recipe>.yaml: a path, or a shipped one "
                   "(embedded, gsm8k/qwen2.5-0.5b-instruct; `trl-ext configs` lists them)")
    p.add_argument("--launch-config", default=None, help="accelerate config: a path or a shipped name (zero3)")
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--output-dir", default="comparison", help="run folders (models, logs) and, by default, the report")
    p.add_argument("--report-dir", default=None, help="where the report files go (default: --output-dir), e.g. a "
                   "folder to commit without the run folders")
    p.add_argument("--algo-args", action="append", default=[], metavar="ENTRY=ARGS",
                   help="overrides for one entry, e.g. 'dapo=--dynamic_sampling_max_rounds 2' (repeatable)")
    p.add_argument("--force", action="store_true", help="re-run runs whose summary.json exists")
    p.add_argument("--timeout", type=float, default=None, help="seconds per run")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the sweep commands, run nothing")
    return p


class Comparison:
    """The comparison's state: arguments, each entry's budget fields, and the records of the runs."""

    def __init__(self, args, extra):
        from trl_ext.configs import resolve_config

        self.args, self.extra = args, extra
        self.launch_config = resolve_config(args.launch_config, "accelerate") if args.launch_config else None
        self.out_dir = Path(args.output_dir).resolve()
        controls = [] if args.controls.strip() in ("", "none") else args.controls.split(",")
        self.labels = [a.strip() for a in args.algos.split(",") if a.strip()] + [c.strip() for c in controls]
        for label in self.labels:
            if label not in P.ALGOS and label not in P.CONTROLS:
                raise P.CompareError(f"unknown entry {label!r}: algorithms {', '.join(P.ALGOS)}; controls "
                                     f"{', '.join(P.CONTROLS)}")
        self.seeds = ([int(s) for s in args.seed_list.split(",") if s.strip()] if args.seed_list
                      else list(range(args.seeds)))
        self.per_entry: dict[str, list[str]] = {}
        for item in args.algo_args:
            label, eq, rest = item.partition("=")
            if not eq:
                raise P.CompareError(f"--algo-args wants ENTRY=ARGS, got {item!r}")
            self.per_entry.setdefault(label.strip(), []).extend(shlex.split(rest))
        self.sweep, self.control_sweep = P.parse_sweep(args.sweep), P.parse_sweep(args.control_sweep)
        self.fields = {}
        for label in self.labels:
            recipe = P.recipe_of(label)
            try:
                config = self.config(recipe)
            except FileNotFoundError as err:
                raise P.CompareError(f"no config for {label!r}: {err}") from None
            self.fields[label] = P.budget_fields(recipe, config, P.parse_overrides(self.entry_args(label)))
        self.budget = P.Budget(args.budget, self._amount())
        points = args.curve_points
        if points is None:
            from trl_ext.compare.runner import gpu_names

            points = 0 if gpu_names() else 12
        self.curve_points = points
        self.curve_limit = args.curve_limit or args.validation_problems
        self.threads = max(1, (os.cpu_count() or 1) // max(1, args.jobs))
        self.records: list[dict] = []
        self._lock = threading.Lock()

    def config(self, recipe: str) -> Path:
        from trl_ext.configs import resolve_config

        return resolve_config(str(Path(self.args.config_dir) / f"{recipe}.yaml"), "recipe")

    def entry_args(self, label) -> list[str]:
        sft = ["--sft_data", P.CONTROLS[label]] if label in P.CONTROLS else []
        return [*sft, *self.extra, *self.per_entry.get(label, [])]

    def _amount(self) -> float:
        a = self.args
        if a.budget == "prompts":
            return a.prompts
        if a.budget == "seconds":
            return a.seconds
        if a.samples is not None:
            return a.samples
        online = {label: f for label, f in self.fields.items() if label in P.ONLINE}
        steps = [f["max_steps"] * P.samples_per_step(f, a.num_processes) for f in online.values() if f["max_steps"] > 0]
        if not steps:
            raise P.CompareError("give --samples: no online algorithm's config sets max_steps")
        # the most any config trains on, rounded up to whole rollouts of every online entry: all generate as many
        rollout = math.lcm(*(P.rollout_size(f, a.num_processes) for f in online.values()))
        return math.ceil(max(steps) / rollout) * rollout

    def grid(self, label: str):
        return self.control_sweep if label in P.CONTROLS else self.sweep

    def job(self, label: str, phase: str, setting, seed: int) -> P.Job:
        where = [phase, label] + ([f"{setting[0]}={setting[1]}"] if setting else []) + [f"seed{seed}"]
        return P.Job(label, phase, seed, setting, self.out_dir.joinpath(*where))

    def sweep_jobs(self, values: dict[str, list[str]]) -> list[P.Job]:
        """Sweep jobs for ``{label: [values]}``, over the sweep seeds, in the table's order."""
        return [self.job(label, "sweep", (self.grid(label)[0], v), seed)
                for label in self.labels for v in values.get(label, []) for seed in range(self.args.sweep_seeds)]

    def test_jobs(self, picked: dict) -> list[P.Job]:
        return [self.job(label, "test", picked.get(label), seed) for label in self.labels for seed in self.seeds]

    def command(self, job: P.Job) -> list[str]:
        recipe = P.recipe_of(job.label)
        budget, steps = P.budget_args(job.label, self.fields[job.label], self.budget, self.args.num_processes)
        job.planned_steps = steps
        problems = self.args.validation_problems if job.phase == "sweep" else self.args.test_problems
        # the curves serve the speed table, which reads the test phase
        curve = P.curve_args(steps, self.curve_points, self.curve_limit) if job.phase == "test" else []
        extra = [*self.entry_args(job.label), *budget, *P.phase_args(job.phase, problems), *curve,
                 *P.setting_args(job.setting)]
        return build_command(recipe, self.config(recipe), job.seed, job.run_dir, extra, self.launch_config,
                             self.args.num_processes)

    def _run_job(self, job: P.Job, progress: Progress) -> None:
        try:
            cmd = self.command(job)
        except P.CompareError as err:
            rec = {"status": "failed", "error": str(err), "summary": None, "seconds": None, "log": None,
                   "command": None, "run_dir": str(job.run_dir)}
        else:
            env = {"OMP_NUM_THREADS": str(self.threads)} if self.args.jobs > 1 else None
            rec = run_one(cmd, job.run_dir, force=self.args.force, timeout=self.args.timeout,
                          dry_run=self.args.dry_run, env=env)
        rec.update(label=job.label, phase=job.phase, seed=job.seed, setting=job.setting)
        if self.args.dry_run and rec.get("command"):
            print(f"[compare] {job.name}: {rec['command']}", flush=True)
            return
        if rec.get("summary"):
            rec["history"] = load_history(job.run_dir)
            rec["correct_before"] = load_correctness(job.run_dir, "before")
            rec["correct_after"] = load_correctness(job.run_dir, "after")
        with self._lock:
            self.records.append(rec)
            status = rec["error"] or rec.get("note") or (f"{rec['seconds']:.0f} s" if rec["seconds"] else "")
            print(f"[compare] {job.name}: {rec['status']} {status} ({progress.update(rec)})", flush=True)

    def run(self, jobs, progress: Progress) -> None:
        """Run ``jobs``, ``--jobs`` at a time; the records keep the jobs' order."""
        start = len(self.records)
        if self.args.jobs <= 1 or self.args.dry_run:
            for job in jobs:
                self._run_job(job, progress)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(self.args.jobs) as pool:
                list(pool.map(lambda j: self._run_job(j, progress), jobs))
        position = {(j.label, j.phase, j.seed, j.setting): i for i, j in enumerate(jobs)}
        self.records[start:] = sorted(self.records[start:], key=lambda r: position[(r["label"], r["phase"],
                                                                                   r["seed"], r["setting"])])

    def run_sweep(self, progress: Progress) -> tuple[dict, dict]:
        """The sweep over each entry's grid, widened past edge picks up to ``--max-widen`` times. Returns
        ``(picked, tried)``: ``{label: (field, value)}`` and ``{label: [values tried]}``."""
        tried = {label: list(self.grid(label)[1]) for label in self.labels if self.grid(label)}
        self.run(self.sweep_jobs(tried), progress)
        for _ in range(self.args.max_widen):
            if self.args.dry_run:
                break
            extra = {}
            for label, (_, value) in self.picks().items():
                new = P.widen(tried[label], value)
                if new is not None and new not in tried[label]:
                    extra[label] = [new]
                    print(f"[compare] {label}: picked {value}, an edge of {','.join(tried[label])}: adding {new}",
                          flush=True)
            if not extra:
                break
            for label, values in extra.items():
                tried[label] += values
            jobs = self.sweep_jobs(extra)
            progress.total += len(jobs)
            self.run(jobs, progress)
        return ({} if self.args.dry_run else self.picks()), tried

    def picks(self) -> dict:
        """Each swept entry's value with the best validation flexible accuracy after training."""
        picked = {}
        for label in self.labels:
            runs = [r for r in self.records if r["phase"] == "sweep" and r["label"] == label]
            if not runs:
                continue
            scores: dict = {}
            for r in runs:
                acc = ((r.get("summary") or {}).get("after") or {}).get("flexible")
                scores.setdefault(r["setting"][1], []).extend([acc["accuracy"]] if acc else [])
            try:
                value, _ = P.pick_best(scores)
            except P.CompareError:
                print(f"[compare] {label}: no sweep run finished; the test phase uses its config's value", flush=True)
                continue
            picked[label] = (runs[0]["setting"][0], value)
        return picked


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    full_argv, extra = list(argv), []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    args = build_parser().parse_args(argv)
    comp = Comparison(args, extra)
    comp.out_dir.mkdir(parents=True, exist_ok=True)
    sweep_total = len(comp.sweep_jobs({lb: comp.grid(lb)[1] for lb in comp.labels if comp.grid(lb)}))
    test_total = len(comp.labels) * len(comp.seeds)
    print(f"[compare] budget: {comp.budget.kind} {comp.budget.amount:g}; {sweep_total} sweep runs (validation, "
          f"more if a grid is widened), {test_total} test runs; curve points per test run: {comp.curve_points}; "
          f"{args.jobs} run(s) at a time", flush=True)
    progress = Progress(sweep_total + test_total)
    started = time.time()
    picked, tried = comp.run_sweep(progress)
    if args.dry_run:
        print("[compare] then the test phase, with each entry's value picked on validation:", flush=True)
    for label, setting in picked.items():
        print(f"[compare] {label}: picked {setting[0]}={setting[1]} on validation", flush=True)
    comp.run(comp.test_jobs(picked), progress)
    if args.dry_run:
        return 0
    edges = {label: value for label, (_, value) in picked.items() if P.widen(tried[label], value) is not None}

    rows = aggregate(comp.records, picked)
    paired = paired_table(rows)
    threshold, speed = speed_table(comp.records)
    phen = phenomena_summary(comp.records)
    from trl_ext.compare.plots import make_plots

    out = Path(args.report_dir).resolve() if args.report_dir else comp.out_dir
    out.mkdir(parents=True, exist_ok=True)
    plots = make_plots(comp.records, rows, out)
    command = shlex.join(["python", "recipes/compare_gsm8k.py", *full_argv])
    meta = {
        "title": f"Comparison of RL algorithms and controls on the `{args.config_dir}` configs",
        "command": command, "date": datetime.date.today().isoformat(), "machine_line": machine_line(),
        "machine": machine_info(), "plots": plots,
        "protocol": protocol_lines(comp, picked),
        "sweep_note": ("Validation greedy flexible accuracy after training (%), mean ± sd over the "
                       f"{args.sweep_seeds} sweep seeds; bold: picked; a value added past an edge pick is marked +. "
                       "The validation problems are carved from the training problems and never trained on; the "
                       "test split is not used in this phase." if sweep_total else
                       "No sweep (each entry used its config's values)."),
        "edges": edges,
        "power": power_summary(paired),
        "cost": cost_summary(comp.records, args.jobs, comp.curve_points, time.time() - started),
        "provenance": provenance(comp.records),
    }
    text = format_report(meta, rows, paired, sweep_table(comp.records, picked, comp), threshold, speed,
                         readings(phen, rows, speed, paired), budget_table(rows), run_rows(comp.records, comp.out_dir))
    from trl_ext.configs import CONFIG_ROOT

    roots = (comp.out_dir, CONFIG_ROOT.parent.parent, Path.cwd())
    (out / "results.md").write_text(portable(text, *roots))
    (out / "readme_table.md").write_text(readme_table(rows) + "\n")
    write_csv(rows, out / "results.csv")
    slim = [{k: v for k, v in r.items() if k not in ("summary", "history", "correct_before", "correct_after")}
            for r in comp.records]
    clean_rows = [{k: v for k, v in r.items() if k != "correct"} for r in rows]
    (out / "results.json").write_text(portable(json.dumps(
        {"meta": meta, "rows": clean_rows, "paired": paired, "speed": speed, "threshold": threshold,
         "phenomena": phen, "picked": picked, "runs": slim}, indent=2, default=str), *roots))
    print("\n" + readme_table(rows), flush=True)
    print(f"\n[compare] wrote {out / 'results.md'} (+ .csv, .json, {len(plots)} figures)", flush=True)
    return 0 if all(r["status"] != "failed" for r in comp.records) else 1


if __name__ == "__main__":
    sys.exit(main())

