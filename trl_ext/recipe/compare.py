"""The one-command comparison of the math recipes: every algorithm x seed from the same start model, data, budget and
evaluator, then one table (``results.md`` / ``.csv`` / ``.json``) and a few plots. ``recipes/compare_gsm8k.py`` is
the command line; the pieces here are importable, and the table logic (``aggregate``, ``format_markdown``) works on
plain records, without subprocesses.

Same budget = the same number of training prompts. The prompts an algorithm consumes per optimizer step are

* GRPO / DAPO / GSPO / PPO: ``per_device_train_batch_size * num_processes * gradient_accumulation_steps /
  (num_generations * num_iterations)`` (completions per optimizer step / samples per prompt; a generation batch
  reused ``num_iterations`` times brings new prompts only once; ``steps_per_generation`` and GSPO's
  ``num_minibatches`` only slice a rollout batch, they do not change the count). DAPO counts the prompt groups it
  *trains* on; the extra groups that dynamic sampling generates and discards are reported as generation rounds.
* DPO: ``per_device_train_batch_size * num_processes * gradient_accumulation_steps`` pairs, one pair counting as one
  prompt (pairs are built from the start model's samples before training).

With ``--prompts P`` each algorithm gets ``--max_steps round(P / prompts_per_step)`` (at least 1); without it the
steps come from the YAMLs and overrides, and the table shows how many prompts each algorithm saw.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from trl_ext.recipe.checkpoints import checkpoints
from trl_ext.recipe.config import load_recipe_yaml

ALGOS = ("ppo", "dpo", "grpo", "dapo", "gspo")
# Dataclass defaults (TrainingArguments / GRPOConfig in TRL 1.16) for keys that a YAML leaves unset.
BUDGET_DEFAULTS = {"per_device_train_batch_size": 8, "gradient_accumulation_steps": 1, "num_generations": 8,
                   "num_iterations": 1, "max_steps": -1, "num_train_epochs": 3.0}
ALGO_DEFAULTS = {"ppo": {"num_generations": 1}, "dpo": {"num_generations": 1}}
MODES = ("strict", "flexible")


class CompareError(ValueError):
    """A comparison cannot be planned (bad arguments); runs that fail are reported in the table instead."""


# -- planning -----------------------------------------------------------------------------------------------------


def parse_overrides(args) -> dict[str, str]:
    """``--key value`` / ``--key=value`` pairs of a recipe command line (the values as strings; last one wins).
    ``--key v1 v2`` (list fields) keeps the first value, enough for the numeric budget fields."""
    out: dict[str, str] = {}
    args = list(args)
    for i, arg in enumerate(args):
        if not arg.startswith("--") or arg == "--":
            continue
        key, eq, value = arg[2:].partition("=")
        if not eq:
            value = args[i + 1] if i + 1 < len(args) and not args[i + 1].startswith("--") else "true"
        out[key] = value
    return out


def budget_fields(algo: str, config_path, overrides: dict) -> dict:
    """The fields that decide the prompts per optimizer step: YAML chain, then dataclass defaults, then overrides."""
    values, _ = load_recipe_yaml(config_path)
    fields = {**BUDGET_DEFAULTS, **ALGO_DEFAULTS.get(algo, {})}
    for key in fields:
        if key in overrides:
            fields[key] = overrides[key]
        elif values.get(key) is not None:
            fields[key] = values[key]
    return {k: float(v) if k == "num_train_epochs" else int(v) for k, v in fields.items()}


def prompts_per_step(algo: str, fields: dict, num_processes: int) -> float:
    completions = fields["per_device_train_batch_size"] * num_processes * fields["gradient_accumulation_steps"]
    if algo == "dpo":
        return float(completions)  # pairs
    return completions / (fields["num_generations"] * fields["num_iterations"])


def plan_budget(algo: str, fields: dict, num_processes: int, prompts: int | None) -> dict:
    """Steps and prompts of one algorithm; ``prompts`` (the ``--prompts`` budget) sets ``max_steps``."""
    pps = prompts_per_step(algo, fields, num_processes)
    if prompts is not None:
        steps = max(1, round(prompts / pps))
        source = f"--prompts {prompts}"
    else:
        steps = fields["max_steps"]
        source = "config/overrides"
    plan = {"algo": algo, "unit": "pairs" if algo == "dpo" else "prompts", "prompts_per_step": pps,
            "max_steps": steps if steps > 0 else None, "steps_source": source,
            "prompts_seen": pps * steps if steps > 0 else None, "fields": dict(fields)}
    if steps <= 0:
        plan["steps_source"] = f"num_train_epochs {fields['num_train_epochs']:g}; max_steps unset"
    return plan


def format_budget(plans: list[dict]) -> str:
    lines = ["algo   prompts/step  steps  prompts seen  (steps from)"]
    for p in plans:
        steps = p["max_steps"] if p["max_steps"] is not None else "epochs"
        seen = f"{p['prompts_seen']:g}" if p["prompts_seen"] is not None else "?"
        lines.append(f"{p['algo']:6s} {p['prompts_per_step']:12g}  {steps!s:>5}  {seen:>12}  ({p['steps_source']}"
                     f"{'; DPO: pairs' if p['unit'] == 'pairs' else ''})")
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_command(script, config, seed, run_dir, extra=(), launch_config=None, num_processes=1, max_steps=None):
    """The recipe command line: plain python for one process without a launch config, else ``accelerate launch``."""
    recipe_args = ["--config", str(config), *map(str, extra), "--seed", str(seed), "--output_dir", str(run_dir)]
    if max_steps is not None:
        recipe_args += ["--max_steps", str(max_steps)]
    if launch_config is None and num_processes == 1:
        return [sys.executable, str(script), *recipe_args]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(num_processes),
           "--main_process_port", str(free_port())]
    if launch_config is not None:
        cmd += ["--config_file", str(launch_config)]
    if not _has_cuda():
        cmd += ["--mixed_precision", "no"]  # CPU: fp32 (the project configs say bf16)
    return cmd + [str(script), *recipe_args]


def _has_cuda() -> bool:
    return bool(gpu_names())


# -- running --------------------------------------------------------------------------------------------------------

_ERROR_LINE = re.compile(r"^(?:\w+\.)*\w*(?:Error|Exception|Interrupt)\b.*|.*: error: .*|^Killed.*|.*Traceback.*")


def error_from_log(text: str, returncode=None) -> str:
    """The most telling line of a failed run's log: the last exception line (or argparse error), else the last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    hits = [ln for ln in lines if _ERROR_LINE.match(ln) and not ln.startswith("Traceback")]
    msg = hits[-1] if hits else (lines[-1] if lines else "no output")
    if returncode is not None:
        msg = f"exit {returncode}: {msg}"
    return msg[:500]


def _launch(cmd, log_path: Path, env: dict, timeout) -> int:
    """Run one recipe, stdout and stderr into ``log_path``; returns the exit status (124 on timeout)."""
    with open(log_path, "w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        try:
            return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            log.write(f"\nTimeoutError: run killed after {timeout} s\n")
            return 124


def run_one(algo, seed, cmd, run_dir: Path, *, force=False, timeout=None, env=None, dry_run=False) -> dict:
    """Run (or reuse) one algorithm x seed; returns its record (the summary.json contents when it succeeded)."""
    run_dir = Path(run_dir)
    summary_path, log_path, cmd_path = run_dir / "summary.json", run_dir / "run.log", run_dir / "command.json"
    record = {"algo": algo, "seed": seed, "run_dir": str(run_dir), "log": str(log_path), "command": shlex.join(cmd),
              "status": None, "error": None, "seconds": None, "summary": None}
    if summary_path.exists() and not force:
        record["status"] = "reused"
        stored = json.loads(cmd_path.read_text()).get("command") if cmd_path.exists() else None
        if stored is not None and _strip_port(stored) != _strip_port(record["command"]):
            record["note"] = "reused a run made with another command (use --force to re-run it)"
        record["summary"] = json.loads(summary_path.read_text())
        return record
    if dry_run:
        record["status"] = "planned"
        return record
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in (summary_path, run_dir / "history.jsonl"):  # a forced re-run that fails must not look finished
        stale.unlink(missing_ok=True)
    # A run that died after writing checkpoints continues from the latest one; --force starts it over, deleting its
    # checkpoints (the folder belongs to the comparison) so that a later resume cannot pick up the abandoned run.
    if force:
        for old in checkpoints(run_dir, complete=False):
            shutil.rmtree(old)
    complete = checkpoints(run_dir)
    latest = complete[-1] if complete else None
    record["resumed_from"] = str(latest) if latest is not None else None
    if latest is not None:
        cmd = [*cmd, "--resume_from_checkpoint", "true"]
    cmd_path.write_text(json.dumps({"command": record["command"]}))
    start = time.time()
    rc = _launch(cmd, log_path, {**os.environ, "TOKENIZERS_PARALLELISM": "false", **(env or {})}, timeout)
    record["seconds"] = time.time() - start
    if rc == 0 and summary_path.exists():
        record["status"] = "ok"
        record["summary"] = json.loads(summary_path.read_text())
    else:
        record["status"] = "failed"
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        record["error"] = error_from_log(text, rc) if rc != 0 else "exit 0 but no summary.json written"
    return record


def _strip_port(command: str) -> str:
    return re.sub(r"--main_process_port \d+", "", command)


def failed_record(algo, seed, run_dir, error) -> dict:
    return {"algo": algo, "seed": seed, "run_dir": str(run_dir), "log": None, "command": None, "status": "failed",
            "error": error, "seconds": None, "summary": None}


def load_history(record: dict) -> list[dict]:
    path = Path(record["run_dir"]) / "history.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- aggregation (pure) -------------------------------------------------------------------------------------------


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def _std(xs):
    xs = [x for x in xs if x is not None]
    return statistics.stdev(xs) if len(xs) > 1 else None


def _metric_mean(history: list[dict], key: str):
    return _mean([h[key] for h in history if isinstance(h.get(key), int | float)])


def aggregate(records: list[dict], plans: dict | None = None, histories: dict | None = None) -> list[dict]:
    """One row per algorithm (in first-seen order) from run records: mean over the successful seeds of accuracy (in
    %), of the 95% CI bounds and of the gain; seed-to-seed std when more than one seed succeeded; failures listed.

    ``histories`` maps ``(algo, seed)`` to the run's log history (for DAPO's ``dapo/generation_rounds``)."""
    plans, histories = plans or {}, histories or {}
    rows = []
    for algo in dict.fromkeys(r["algo"] for r in records):
        runs = [r for r in records if r["algo"] == algo]
        ok = [r for r in runs if r.get("summary")]
        row = {"algo": algo, "seeds": [r["seed"] for r in runs], "seeds_ok": len(ok), "seeds_total": len(runs),
               "status": "ok" if len(ok) == len(runs) else ("failed" if not ok else "partial"),
               "failures": [{"seed": r["seed"], "error": r.get("error"), "log": r.get("log")}
                            for r in runs if not r.get("summary")]}
        sums = [r["summary"] for r in ok]
        for tag in ("before", "after"):
            for mode in MODES:
                evals = [(s.get(tag) or {}).get(mode) for s in sums]
                evals = [e for e in evals if e]
                acc = [100 * e["accuracy"] for e in evals]
                row[f"{mode}_{tag}"] = _mean(acc)
                row[f"{mode}_{tag}_std"] = _std(acc)
                row[f"{mode}_{tag}_ci95"] = ([_mean([100 * e["ci95"][i] for e in evals]) for i in (0, 1)]
                                             if evals else None)
        for mode in MODES:
            gains = [(s.get("gain_points") or {}).get(mode) for s in sums]
            row[f"gain_{mode}"], row[f"gain_{mode}_std"] = _mean(gains), _std(gains)
        secs = [s.get("train_seconds") for s in sums]
        row["train_seconds"], row["train_seconds_std"] = _mean(secs), _std(secs)
        row["tokens_per_second"] = _mean([s.get("tokens_per_second") for s in sums])
        mem = [s.get("peak_memory") or {} for s in sums]
        row["peak_rss_mb"] = max((m["cpu_max_rss_mb"] for m in mem if m.get("cpu_max_rss_mb")), default=None)
        row["peak_cuda_mb"] = max((m["cuda_max_allocated_mb"] for m in mem if m.get("cuda_max_allocated_mb")),
                                  default=None)
        row["global_step"] = _mean([s.get("global_step") for s in sums])
        plan = plans.get(algo) or {}
        row["prompts_per_step"] = plan.get("prompts_per_step")
        row["prompts_seen"] = (row["prompts_per_step"] * row["global_step"]
                               if row["prompts_per_step"] and row["global_step"] is not None else None)
        rounds = [_metric_mean(histories.get((algo, r["seed"]), []), "dapo/generation_rounds") for r in ok]
        row["generation_rounds"] = _mean(rounds)  # mean rounds per optimizer step (DAPO only)
        row["start_models"] = sorted({s.get("model") for s in sums if s.get("model")})
        rows.append(row)
    return rows


def _pct(row, key):
    v = row.get(key)
    if v is None:
        return "n/a"
    text = f"{v:.1f}"
    ci = row.get(f"{key}_ci95")
    if ci:
        text += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
    if row.get(f"{key}_std") is not None:
        text += f" ± {row[f'{key}_std']:.1f}"
    return text


def _num(v, fmt="{:.1f}", std=None):
    if v is None:
        return "n/a"
    return fmt.format(v) + (f" ± {fmt.replace('+', '').format(std)}" if std is not None else "")


def table_rows(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    header = ["algorithm", "seeds ok", "strict before %", "strict after %", "flexible before %", "flexible after %",
              "gain strict (pts)", "gain flexible (pts)", "train time (s)", "tokens/s", "peak memory (MB)",
              "optimizer steps", "prompts seen", "DAPO gen. rounds/step", "status"]
    out = []
    for r in rows:
        mem = r["peak_cuda_mb"] if r.get("peak_cuda_mb") is not None else r.get("peak_rss_mb")
        mem_text = "n/a" if mem is None else f"{mem:.0f} ({'GPU' if r.get('peak_cuda_mb') is not None else 'RSS'})"
        status = r["status"]
        by_error: dict = {}
        for f in r["failures"]:  # identical errors of several seeds once
            by_error.setdefault(f["error"], []).append(f)
        if by_error:
            status += ": " + "; ".join(
                f"seed {', '.join(str(f['seed']) for f in fs)}: {err} (log: {', '.join(f['log'] or 'none' for f in fs)})"
                for err, fs in by_error.items())
        out.append([
            r["algo"], f"{r['seeds_ok']}/{r['seeds_total']}",
            _pct(r, "strict_before"), _pct(r, "strict_after"), _pct(r, "flexible_before"), _pct(r, "flexible_after"),
            _num(r.get("gain_strict"), "{:+.1f}", r.get("gain_strict_std")),
            _num(r.get("gain_flexible"), "{:+.1f}", r.get("gain_flexible_std")),
            _num(r.get("train_seconds"), "{:.1f}", r.get("train_seconds_std")),
            _num(r.get("tokens_per_second"), "{:.0f}"), mem_text,
            _num(r.get("global_step"), "{:g}"), _num(r.get("prompts_seen"), "{:g}"),
            _num(r.get("generation_rounds"), "{:.2f}") if r["algo"] == "dapo" else "-",
            status.replace("|", "/").replace("\n", " "),
        ])
    return header, out


def _md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in rows])


def format_markdown(rows: list[dict], records: list[dict], meta: dict) -> str:
    header, body = table_rows(rows)
    runs = [[r["algo"], r["seed"], r["status"] + (f" ({r['note']})" if r.get("note") else ""),
             _run_acc(r, "strict"), _run_acc(r, "flexible"),
             (r.get("summary") or {}).get("global_step", "n/a"),
             _num((r.get("summary") or {}).get("train_seconds")), r.get("log") or "-"] for r in records]
    proto = meta.get("evaluation") or {}
    parts = [
        "# Algorithm comparison on GSM8K-format math",
        "",
        f"Generated {meta.get('date')} by:",
        "",
        "```bash\n" + meta.get("command", "") + "\n```",
        "",
        "Accuracy in % on the held-out split: mean over the successful seeds, [mean of the per-run 95% Wilson "
        "intervals], ± seed-to-seed standard deviation (only with more than one seed). Gain = after - before in "
        "points. Train time: `trainer.train()` wall clock. Tokens/s: prompt + completion tokens the trainer "
        "counted (`num_tokens`) / train time (n/a where the trainer logs no count, e.g. DPO). Peak memory: GPU "
        "`max_memory_allocated` during training, else the main process's peak RSS (which includes the evaluation). "
        "Plotted reward: the trainer's logged `reward` (weighted sum of the reward functions; DAPO's includes its "
        "overlong penalty; DPO logs none).",
        "",
        f"Runs: config dir `{meta.get('config_dir')}`, {meta.get('launch')}, seeds {meta.get('seeds')}.",
        "",
        _md_table(header, body),
        "",
        "## Budget",
        "",
        meta.get("budget_note", ""),
        "",
        "```\n" + meta.get("budget_table", "") + "\n```",
        "",
        "## Evaluation protocol",
        "",
        *[f"- {k}: {v}" for k, v in proto.items()],
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in (meta.get("machine") or {}).items()],
        "",
        "## Runs",
        "",
        _md_table(["algorithm", "seed", "status", "strict before -> after %", "flexible before -> after %", "steps",
                   "train s", "log"], runs),
        "",
        "Plots: " + ", ".join(f"`{p}`" for p in meta.get("plots", [])),
        "",
    ]
    return "\n".join(parts)


def _run_acc(record, mode):
    s = record.get("summary") or {}
    vals = [(s.get(tag) or {}).get(mode, {}).get("accuracy") for tag in ("before", "after")]
    return " -> ".join("n/a" if v is None else f"{100 * v:.1f}" for v in vals)


def write_csv(rows: list[dict], path) -> None:
    keys = [k for k in rows[0] if k not in ("failures",)] if rows else []
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys + ["errors"])
        for r in rows:
            vals = [json.dumps(r[k]) if isinstance(r[k], list | dict) else ("" if r[k] is None else r[k]) for k in keys]
            w.writerow(vals + ["; ".join(f"seed {x['seed']}: {x['error']} ({x['log']})" for x in r["failures"])])


# -- plots ----------------------------------------------------------------------------------------------------------


def _mean_curve(histories: list[list[dict]], key: str, x_key: str):
    """Per step: mean of x_key and of key over the seeds that logged it, and the std of key."""
    by_step: dict = {}
    for hist in histories:
        for h in hist:
            if isinstance(h.get(key), int | float) and "step" in h:
                by_step.setdefault(h["step"], []).append((h.get(x_key, h["step"]), h[key]))
    steps = sorted(by_step)
    xs = [statistics.fmean(x for x, _ in by_step[s]) for s in steps]
    ys = [statistics.fmean(y for _, y in by_step[s]) for s in steps]
    sd = [statistics.pstdev([y for _, y in by_step[s]]) for s in steps]
    return xs, ys, sd


def make_plots(rows: list[dict], histories: dict, out_dir, reward_key="reward") -> list[str]:
    """reward_vs_step.png, reward_vs_time.png (mean ± std over seeds) and accuracy.png (before/after per algo)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir, paths = Path(out_dir), []
    for x_key, name, xlabel in (("step", "reward_vs_step.png", "optimizer step"),
                                ("elapsed_s", "reward_vs_time.png", "training wall time (s)")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for algo in dict.fromkeys(a for a, _ in histories):
            xs, ys, sd = _mean_curve([h for (a, _), h in histories.items() if a == algo], reward_key, x_key)
            if xs:
                ax.plot(xs, ys, marker="o", ms=3, label=algo)
                ax.fill_between(xs, [y - s for y, s in zip(ys, sd)], [y + s for y, s in zip(ys, sd)], alpha=0.2)
        ax.set(xlabel=xlabel, ylabel=f"mean training reward ({reward_key})", title="reward (mean ± std over seeds)")
        if ax.lines:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no reward logged", ha="center", transform=ax.transAxes)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        paths.append(name)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    names = [r["algo"] for r in rows]
    top = 1.0
    for ax, mode in zip(axes, MODES):
        for j, tag in enumerate(("before", "after")):
            vals = [r.get(f"{mode}_{tag}") or 0.0 for r in rows]
            errs = [r.get(f"{mode}_{tag}_std") or 0.0 for r in rows]
            top = max([top] + [v + e for v, e in zip(vals, errs)])
            ax.bar([i + (j - 0.5) * 0.4 for i in range(len(rows))], vals, 0.4, yerr=errs, capsize=3, label=tag)
        ax.set_xticks(range(len(rows)), [n if r["seeds_ok"] else f"{n}\n(failed)" for n, r in zip(names, rows)])
        ax.set(title=f"{mode} accuracy (mean ± std over seeds)", ylabel="accuracy (%)")
        ax.legend()
    axes[0].set_ylim(0, top * 1.15)  # shared by both panels: set once, after both are drawn
    fig.tight_layout()
    fig.savefig(out_dir / "accuracy.png", dpi=100)
    plt.close(fig)
    return paths + ["accuracy.png"]


# -- metadata -------------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def gpu_names() -> tuple[str, ...]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(ln.strip() for ln in out.stdout.splitlines() if ln.strip()) if out.returncode == 0 else ()


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus = gpu_names()
    info = {"cpu": cpu, "cpu cores": os.cpu_count(), "gpu": f"{len(gpus)} x {gpus[0]}" if gpus else "none",
            "os": platform.platform(), "python": platform.python_version()}
    if hasattr(os, "getloadavg"):  # other jobs on a shared machine make the timings noisy
        info["load average (1/5/15 min) when the table was written"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    for pkg in ("torch", "trl", "transformers", "accelerate", "deepspeed", "peft", "trl-ext"):
        try:
            info[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    return info


def evaluation_protocol(records: list[dict]) -> dict:
    """What every successful run was evaluated on; keys that differ between runs are listed with all values."""
    sums = [r["summary"] for r in records if r.get("summary")]
    out = {}
    for key, get in (("start model", lambda s: s.get("model")),
                     ("data source", lambda s: (s.get("eval") or {}).get("source")),
                     ("split", lambda s: (s.get("eval") or {}).get("split")),
                     ("problems", lambda s: (s.get("eval") or {}).get("num_problems")),
                     ("max new tokens", lambda s: (s.get("eval") or {}).get("max_new_tokens")),
                     ("scoring", lambda s: (s.get("eval") or {}).get("protocol")),
                     ("hardware line", lambda s: s.get("hardware"))):
        vals = sorted({str(get(s)) for s in sums})
        out[key] = vals[0] if len(vals) == 1 else ("DIFFERS between runs: " + " | ".join(vals) if vals else "n/a")
    return out


# -- command line ---------------------------------------------------------------------------------------------------


def build_parser(prog="compare_gsm8k.py") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                epilog="Recipe overrides for every run go after `--`, e.g. `-- --eval_limit 50`.")
    p.add_argument("--algos", default=",".join(ALGOS), help="comma-separated, default: %(default)s")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds: 0..N-1 (default 1)")
    p.add_argument("--seed-list", default=None, help="explicit seeds, e.g. 1,7,42 (instead of --seeds)")
    p.add_argument("--config-dir", default="recipes/configs/embedded",
                   help="folder with <algo>.yaml (default %(default)s)")
    p.add_argument("--launch-config", default=None, help="accelerate config, e.g. accelerate_configs/zero3.yaml")
    p.add_argument("--num-processes", type=int, default=1)
    p.add_argument("--prompts", type=int, default=None,
                   help="training budget in prompts (DPO: pairs); sets each algorithm's --max_steps")
    p.add_argument("--output-dir", default="comparison")
    p.add_argument("--algo-args", action="append", default=[], metavar="ALGO=ARGS",
                   help="overrides for one algorithm only, e.g. 'dapo=--dynamic_sampling_max_rounds 2' (repeatable)")
    p.add_argument("--force", action="store_true", help="re-run runs whose summary.json exists")
    p.add_argument("--timeout", type=float, default=None, help="seconds per run")
    p.add_argument("--dry-run", action="store_true", help="print the budget and the commands, run nothing")
    return p


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _resolve(path, repo: Path) -> Path:
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path.resolve()
    return (repo / path).resolve()


def main(argv=None, recipes_dir=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    full_argv, extra = list(argv), []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    args = build_parser().parse_args(argv)
    recipes_dir = Path(recipes_dir or Path.cwd() / "recipes").resolve()
    repo = recipes_dir.parent
    algos = [a.strip() for a in args.algos.split(",") if a.strip()]
    seeds = ([int(s) for s in args.seed_list.split(",") if s.strip()] if args.seed_list
             else list(range(args.seeds)))
    per_algo = {}
    for item in args.algo_args:
        algo, eq, rest = item.partition("=")
        if not eq:
            raise CompareError(f"--algo-args wants ALGO=ARGS, got {item!r}")
        per_algo.setdefault(algo.strip(), []).extend(shlex.split(rest))
    if args.prompts is not None and "max_steps" in parse_overrides(extra):
        raise CompareError("give either --prompts or a --max_steps override, not both")
    config_dir = _resolve(args.config_dir, repo)
    launch_config = _resolve(args.launch_config, repo) if args.launch_config else None
    out_dir = Path(args.output_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)

    # plan: every algorithm's budget first, so that the steps are printed before anything runs
    plans, problems = {}, {}
    for algo in algos:
        script, config = recipes_dir / f"{algo}_math.py", config_dir / f"{algo}.yaml"
        if not script.exists():
            known = sorted(p.name[: -len("_math.py")] for p in recipes_dir.glob("*_math.py"))
            problems[algo] = f"unknown algorithm {algo!r}: no recipe {script} (known: {', '.join(known)})"
        elif not config.exists():
            problems[algo] = f"no config {config} for {algo!r}"
        else:
            try:
                overrides = parse_overrides(extra + per_algo.get(algo, []))
                plans[algo] = plan_budget(algo, budget_fields(algo, config, overrides), args.num_processes,
                                          args.prompts)
            except (ValueError, TypeError, KeyError) as e:
                problems[algo] = f"cannot plan {algo!r}: {e}"
    budget_table = format_budget(list(plans.values()))
    print("budget (prompts per optimizer step = per_device_train_batch_size x processes x "
          "gradient_accumulation_steps / (num_generations x num_iterations); DPO: pairs):\n" + budget_table,
          flush=True)
    seen = {p["prompts_seen"] for p in plans.values()}
    budget_warning = ""
    # With --prompts the counts differ only by the rounding to whole steps shown in the table.
    if None in seen or (len(seen) > 1 and args.prompts is None):
        budget_warning = "WARNING: the algorithms see different (or unknown) numbers of prompts; pass --prompts."
        print(f"[compare] {budget_warning}", flush=True)
    for algo, problem in problems.items():
        print(f"[compare] {algo}: {problem}", flush=True)

    records = []
    for algo in algos:
        for seed in seeds:
            run_dir = out_dir / algo / f"seed{seed}"
            if algo in problems:
                records.append(failed_record(algo, seed, run_dir, problems[algo]))
                continue
            cmd = build_command(recipes_dir / f"{algo}_math.py", config_dir / f"{algo}.yaml", seed, run_dir,
                                [*extra, *per_algo.get(algo, [])], launch_config, args.num_processes,
                                plans[algo]["max_steps"] if args.prompts is not None else None)
            print(f"[compare] {algo} seed {seed}: {shlex.join(cmd)}", flush=True)
            rec = run_one(algo, seed, cmd, run_dir, force=args.force, timeout=args.timeout, dry_run=args.dry_run)
            detail = rec["error"] or rec.get("note") or (f"{rec['seconds']:.0f} s" if rec["seconds"] else "")
            print(f"[compare] {algo} seed {seed}: {rec['status']} {detail} (log: {rec['log']})", flush=True)
            records.append(rec)
    if args.dry_run:
        return 0

    histories = {(r["algo"], r["seed"]): load_history(r) for r in records if r.get("summary")}
    rows = aggregate(records, plans, histories)
    plots = make_plots(rows, histories, out_dir)
    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": shlex.join(["python", _relative(recipes_dir / "compare_gsm8k.py"), *full_argv]),
        "cwd": str(Path.cwd()),
        "machine": machine_info(),
        "launch": (f"`accelerate launch --config_file {launch_config}`" if launch_config
                   else ("`accelerate launch`" if args.num_processes > 1 else "plain `python`"))
        + f" with {args.num_processes} process(es) per run",
        "config_dir": str(config_dir),
        "seeds": seeds,
        "evaluation": evaluation_protocol(records),
        "budget_note": ("Same budget = same number of training prompts: prompts per optimizer step = "
                        "per_device_train_batch_size x processes x gradient_accumulation_steps / (num_generations "
                        "x num_iterations); DPO: pairs per step, one pair = one prompt. DAPO counts the groups it "
                        "trains on (dynamic-sampling refills are the generation rounds). "
                        + (f"`--prompts {args.prompts}` set each algorithm's `--max_steps`."
                           if args.prompts is not None else "Steps from the YAMLs and overrides (no `--prompts`). ")
                        + (f"\n\n{budget_warning}" if budget_warning else "")),
        "budget_table": budget_table,
        "plots": plots,
    }
    (out_dir / "results.md").write_text(format_markdown(rows, records, meta))
    write_csv(rows, out_dir / "results.csv")
    slim = [{k: v for k, v in r.items() if k != "summary"} | {"summary_path": str(Path(r["run_dir"]) / "summary.json")
            if r.get("summary") else None} for r in records]
    (out_dir / "results.json").write_text(json.dumps({"meta": meta, "plans": plans, "rows": rows, "runs": slim},
                                                     indent=2, default=str))
    header, body = table_rows(rows)
    print("\n" + _md_table(header, body), flush=True)
    print(f"\n[compare] wrote {out_dir / 'results.md'}, results.csv, results.json, {', '.join(plots)}", flush=True)
    return 0 if all(r["status"] != "failed" for r in records) else 1
