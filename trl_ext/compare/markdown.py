"""The comparison's report as Markdown and CSV, from the rows of ``trl_ext.compare.report`` and the run records:
the tables, the protocol lines, and paths made portable."""

from __future__ import annotations

import csv
import json
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from trl_ext.compare import plan as P
from trl_ext.compare.report import train_seconds
from trl_ext.compare.stats import mean_sd_ci

if TYPE_CHECKING:
    from trl_ext.compare.cli import Comparison


def md_table(header, body) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(str, r)) + " |" for r in body])


def fmt(stat: dict | None, digits=1, sign=False) -> str:
    """``mean ± sd`` of a ``mean_sd_ci`` dict (``n/a`` when empty)."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    text = f.format(stat["mean"])
    return text + (f" ± {stat['sd']:.{digits}f}" if stat.get("sd") is not None else "")


def with_ci(stat: dict | None, digits=1) -> str:
    """``mean ± sd [lo, hi]`` (the t-interval over seeds) of a ``mean_sd_ci`` dict."""
    text = fmt(stat, digits)
    ci = (stat or {}).get("ci95")
    return text + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else "")


def interval(ci, digits=1) -> str:
    return f"[{ci[0] + 0.0:+.{digits}f}, {ci[1] + 0.0:+.{digits}f}]" if ci else "n/a"


def summary_table(rows) -> tuple[list[str], list[list[str]]]:
    header = ["entry", "supervision", "setting", "seeds", "flexible before -> after %", "gain (mean ± sd)",
              "gain 95% CI", "strict after %", "samples", "steps", "train s"]
    body = []
    for r in rows:
        setting = "=".join(r["setting"]) if r.get("setting") else "-"
        before = f"{r['before']:.1f}" if r.get("before") is not None else "n/a"
        seeds = f"{r['seeds_ok']}/{r['seeds_total']}"
        body.append([r["label"], r["supervision"], setting, seeds, f"{before} -> {fmt(r['after'])}",
                     fmt(r["gain"], sign=True), interval(r.get("gain_ci95")), fmt(r.get("strict_after")),
                     fmt(r.get("samples"), 0), fmt(r.get("steps"), 0), fmt(r.get("train_s"), 0)])
    return header, body


def readme_table(rows) -> str:
    """The five-column summary the README shows."""
    body = [[r["label"], f"{r['before']:.1f} -> {fmt(r['after'])}" if r.get("before") is not None else "n/a",
             fmt(r["gain"], sign=True), interval(r.get("gain_ci95")), fmt(r.get("samples"), 0)] for r in rows]
    seeds = max((r["seeds_ok"] for r in rows if r["label"] != "start model"), default=0)
    return md_table(["entry", "flexible before -> after %", f"gain ({seeds} seeds)", "gain 95% CI", "samples"], body)


def format_report(meta, rows, paired, sweep, threshold, speed, readings, budget_rows, runs) -> str:
    parts = [f"# {meta['title']}", "", "Made by:", "", "```", meta["command"], "```", ""]
    parts += [f"{meta['date']}; {meta['machine_line']}. {meta['provenance']}", "", "## Protocol", ""]
    parts += [f"- {line}" for line in meta["protocol"]] + [""]
    parts += ["## Results (test split)", "", md_table(*summary_table(rows)), ""]
    parts += [("Gain: flexible accuracy after minus before in points; mean ± sd over seeds, and the 95% interval "
               "of a paired bootstrap over test problems x seeds. Setting: the swept value picked on validation.")]
    failures = [f"- {r['label']} seed {f['seed']}: {f['error']}" for r in rows for f in r.get("failures", [])]
    if failures:
        parts += ["", "Failed runs:", "", *failures]
    parts += ["", "## Paired differences (test split, flexible accuracy)", ""]
    parts += ["A minus B in points, paired bootstrap over the same test problems x seeds (10,000 draws). \"Better\" "
              "only where the 95% interval excludes 0. Detectable: the smallest true difference a two-sided 5% test "
              "finds with 80% probability, 2.8 bootstrap standard errors of this pair (the data's own power).", ""]
    power = meta.get("power")
    if power:
        parts += [f"**Power between the algorithms: {power['median']:.1f} points** (median over {power['pairs']} "
                  f"pairs; {power['min']:.1f} to {power['max']:.1f}); {power['told_apart']} of the pairs told "
                  "apart.", ""]
    parts += [md_table(["A", "B", "A - B", "95% CI", "p", "detectable", "reading"],
                       [[p["a"], p["b"], f"{p['difference']:+.1f}", interval(p["ci95"]), f"{p['p']:.3f}",
                         f"{p['detectable']:.1f}", p["verdict"]] for p in paired]), ""]
    parts += ["## Speed: samples and seconds to reach the threshold", ""]
    if threshold is None:
        parts += ["No accuracy curve was logged (run with curve points > 0).", ""]
    else:
        parts += [f"Threshold: 90% of the algorithms' best final validation accuracy = {threshold:.1f}% (the "
                  "controls are left out of the threshold). Per seed the crossing lies between two curve points; the "
                  "value is the mean over the seeds that reached it of the linear interpolation between them (± sd), "
                  "and the interval runs from the 95% t-bound of the points before the crossing to that of the points "
                  "after it, so it holds both the seed spread and the curve spacing (never below 0). n/a in the "
                  "samples column for entries that sample nothing during training.", ""]
        parts += [md_table(["entry", "final validation %", "seeds reaching", "curve spacing (samples)",
                            "samples [95% interval]", "train s [95% interval]"],
                           [[s["label"], f"{s['final']:.1f}", f"{s['reached']}/{s['seeds']}",
                             fmt({"mean": s.get("spacing_samples")}, 0), with_ci(s["samples"], 0),
                             with_ci(s["train_s"], 1)] for s in speed]), ""]
    parts += ["## What the curves show", "", *[f"- {line}" for line in readings], ""]
    parts += ["## Figures", ""]
    for path, title in meta["plots"]:
        parts += [f"![{title}]({path})", "", f"*{title}* (`{path}`)", ""]
    parts += ["## Sweep (validation split)", "", meta["sweep_note"], ""]
    if sweep[1]:
        parts += [md_table(*sweep), ""]
    if meta.get("edges"):
        parts += ["Edge picks after widening (the best value may lie outside the grid): " + ", ".join(
            f"{label} ({value})" for label, value in meta["edges"].items()) + ".", ""]
    parts += ["## Budget used (test phase, mean per run)", "", md_table(*budget_rows), ""]
    cost = meta.get("cost")
    if cost:
        total = f"{cost['total_s'] / 60:.1f} min in all, " if cost.get("total_s") else ""
        parts += ["## Cost", "", f"{total}{cost['runs']} runs made here, {cost['jobs']} at a time: a sweep run took "
                  f"{cost['sweep_run_s']:.0f} s and a test run {cost['test_run_s']:.0f} s (mean wall time of the "
                  "whole launch: start-up, training, evaluations)"
                  + (f", a greedy evaluation {cost['eval_s_per_1000']:.1f} s per 1,000 problems" if
                     cost.get("eval_s_per_1000") else "") + ". At that rate, one more test seed adds about "
                  f"{cost['extra_seed_s'] / 60:.1f} min, one more entry {cost['extra_entry_s'] / 60:.1f} min"
                  + (f", 1,000 more test problems {cost['extra_1000_test_s'] / 60:.1f} min and 1,000 more validation "
                     f"problems (sweep scoring and every curve point) {cost['extra_1000_validation_s'] / 60:.1f} min"
                     if cost.get("eval_s_per_1000") else "") + ".", ""]
    parts += ["## Runs", "", md_table(["phase", "entry", "setting", "seed", "status", "flexible before -> after",
                                        "samples", "steps", "train s", "log"], runs), ""]
    parts += ["## Machine and versions", "", *[f"- {k}: {v}" for k, v in meta["machine"].items()], ""]
    return "\n".join(parts)


def write_csv(rows, path) -> None:
    keys = ["label", "supervision", "setting", "seeds_ok", "seeds_total", "before", "after", "gain", "gain_ci95",
            "strict_after", "samples", "steps", "tokens", "train_s", "wall_s"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in rows:
            w.writerow([json.dumps(r.get(k)) if isinstance(r.get(k), list | dict | tuple) else r.get(k, "")
                        for k in keys])


def portable(text: str, *roots: Path) -> str:
    """``text`` without this machine's absolute paths: the given roots become relative, the interpreter ``python``,
    the home folder ``~``."""
    for root in roots:
        text = text.replace(str(root.resolve()) + "/", "")
    return text.replace(sys.executable, "python").replace(str(Path.home()), "~")


def _rel(path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def sweep_table(records, picked, comp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Validation accuracy per entry and swept value (mean ± sd over seeds), values in numeric order; ``+`` marks a
    value added past an edge pick; the last column says whether the pick is interior."""
    rows: dict = {}
    for r in (r for r in records if r["phase"] == "sweep"):
        acc = ((r.get("summary") or {}).get("after") or {}).get("flexible")
        rows.setdefault(r["label"], {}).setdefault(r["setting"][1], []).append(100 * acc["accuracy"] if acc else None)

    def order(v):
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)

    values = sorted({v for cells in rows.values() for v in cells}, key=order)
    body = []
    for label, cells in rows.items():
        line, pick = [label], picked.get(label, (None, None))[1]
        for v in values:
            stat = mean_sd_ci([a for a in cells.get(v, []) if a is not None])
            text = ("failed" if v in cells else "-") if stat["mean"] is None else \
                f"{stat['mean']:.1f}" + (f" ± {stat['sd']:.1f}" if stat["sd"] is not None else "")
            text = f"**{text}**" if pick == v else text
            line.append(text + (" +" if v in cells and v not in comp.grid(label)[1] else ""))
        tried = list(cells)
        line.append("-" if pick is None else "edge of the grid" if P.widen(tried, pick) is not None else "interior")
        body.append(line)
    return ["entry", *values, "pick"], body


def provenance(records) -> str:
    """Where the runs of this report came from: made by this command, or reused (and with which command)."""
    made = sum(r["status"] == "ok" for r in records)
    reused = [r for r in records if r["status"] == "reused"]
    other = [r for r in reused if r.get("note")]
    failed = sum(r["status"] == "failed" for r in records)
    text = f"{made} of {len(records)} runs were made by this command"
    if reused:
        text += (f"; {len(reused)} were reused from an earlier invocation ({len(other)} of them made with another "
                 "command: rerun with --force to make every run with this one)")
    return text + (f"; {failed} failed (listed below)." if failed else ".")


def budget_table(rows) -> tuple[list[str], list[list[str]]]:
    body = [[r["label"], fmt(r.get("samples"), 0), fmt(r.get("steps"), 0), fmt(r.get("tokens"), 0),
             fmt(r.get("train_s"), 0), fmt(r.get("wall_s"), 0)] for r in rows if "samples" in r]
    return ["entry", "samples generated", "optimizer steps", "tokens (num_tokens)", "train s", "run wall s"], body


def run_rows(records, out_dir) -> list[list[str]]:
    body = []
    for r in records:
        s = r.get("summary") or {}
        acc = [f"{100 * s[t]['flexible']['accuracy']:.1f}" if (s.get(t) or {}).get("flexible") else "n/a"
               for t in ("before", "after")]
        secs = train_seconds(s)
        body.append([r["phase"], r["label"], "=".join(r["setting"]) if r.get("setting") else "-", r["seed"],
                     r["status"] if not r.get("error") else f"{r['status']}: {r['error'][:80]}", " -> ".join(acc),
                     s.get("samples_generated", "n/a"), s.get("global_step", "n/a"),
                     f"{secs:.0f}" if secs else "n/a", f"`{_rel(r['log'], out_dir)}`" if r.get("log") else "-"])
    return body


def protocol_lines(comp: Comparison, picked: dict) -> list[str]:
    b, a = comp.budget, comp.args
    unit = {"samples": "completions generated (DAPO's refills and DPO/RFT sampling included)",
            "prompts": "training prompts (DPO: pairs)", "seconds": "training seconds"}[b.kind]
    control = [f for lb, f in comp.fields.items() if lb in P.CONTROLS]
    lines = [f"Budget: {b.amount:g} {unit} per run" + (
        f"; online RL trains on whole rollouts up to it; the SFT controls train "
        f"{P.control_steps(control[0], b, a.num_processes)} optimizer steps (as many examples as the budget, the "
        "same in both phases)." if b.kind == "samples" and control else "."),
             f"Sweep: {a.sweep or 'none'} for the algorithms, {a.control_sweep or 'none'} for the controls, "
             f"{a.sweep_seeds} seed(s) per value, scored on at most {a.validation_problems} validation problems; a "
             f"grid is extended past an edge pick up to {a.max_widen} time(s). Test phase seeds: "
             f"{', '.join(map(str, comp.seeds))}, on at most {a.test_problems} test problems.",
             f"Launch: {'accelerate launch' if comp.launch_config or a.num_processes > 1 else 'python'}, "
             f"{a.num_processes} process(es) per run, {a.jobs} run(s) at a time"
             + (f", `{a.launch_config}`" if comp.launch_config else "") + ".",
             f"Accuracy during training (test phase): {comp.curve_points} greedy evaluations per run besides the "
             f"first, evenly over its steps, on {comp.curve_limit} validation problems."
             if comp.curve_points else "Accuracy during training: off.",
             "Evaluation: greedy, flexible (last number) and strict (last `#### N`) scoring."]
    if comp.extra:
        lines.append(f"Recipe overrides for every run: `{shlex.join(comp.extra)}`.")
    lines.append(f"Run folders (models, logs, histories; the log paths below are relative to it): "
                 f"`{portable(str(comp.out_dir), Path.cwd())}`.")
    return lines
