"""The comparison's report as Markdown and CSV, from the rows of ``trl_ext.compare.report``."""

from __future__ import annotations

import csv
import json


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
