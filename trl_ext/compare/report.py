"""The comparison's numbers from finished runs (pure: records in, rows and Markdown out).

A *record* is one run: ``label``, ``phase`` (sweep | test), ``seed``, ``setting`` (``[field, value]`` or None),
``status``, ``error``, ``summary`` (the recipe's ``summary.json``), ``history`` (its log entries) and
``correct_before`` / ``correct_after`` (per test problem, 1 if the greedy answer was right, flexible scoring).
Accuracies are percentages from here on. The start model is a row of its own (``START``), built from the
before-training evaluations.
"""

from __future__ import annotations

import statistics

from trl_ext.compare.plan import ALGOS
from trl_ext.compare.stats import (
    crossing_bracket,
    crossing_interval,
    detectable_difference,
    mean_sd_ci,
    paired_bootstrap,
)

START = "start model"
NO_DIFFERENCE = "no difference shown"
RL = ALGOS  # the algorithms of the table (the mission's five, then TRL's family); the other entries are controls
SUPERVISION = {
    "dpo": "final-answer check of its own samples (pairs)",
    "rft": "final-answer check of its own samples (SFT)", "sft-warm-start": "the warm start's own data (SFT)",
    "sft-gold": "reference worked solutions (SFT, oracle)", START: "none (no training)",
}


def supervision(label: str) -> str:
    """What an entry learns from: the online algorithms from the final-answer reward, the others as listed."""
    return SUPERVISION.get(label, "final-answer reward (RL)" if label in RL else "")
# (history key, title) of the phenomena figures and readings; the PPO critic's and DAPO's own keys included
PHENOMENA = {
    "entropy": "policy entropy (nats per token)",
    "frac_reward_zero_std": "fraction of zero-std groups (generated)",
    "dapo/kept_group_frac": "DAPO: kept fraction of generated groups",
    "dapo/generation_rounds": "DAPO: generation rounds per batch",
    "completions/mean_length": "mean completion length (tokens)",
    "clip_ratio/low_mean": "clip fraction, low side",
    "clip_ratio/high_mean": "clip fraction, high side",
    "kl": "KL to the reference",
    "ppo/kl": "PPO: per-token KL to the reference",
    "ppo/value_loss": "PPO: value loss",
    "ppo/explained_variance": "PPO: explained variance of the returns",
}


def _acc(summary, tag, mode="flexible"):
    e = (summary or {}).get(tag) or {}
    return 100 * e[mode]["accuracy"] if e.get(mode) else None


def train_seconds(summary) -> float | None:
    """Training wall time without the accuracy-curve evaluations."""
    if not summary or summary.get("train_seconds") is None:
        return None
    return summary["train_seconds"] - (summary.get("curve_eval_seconds") or 0.0)


def curve_points(record) -> list[dict]:
    """The run's accuracy curve: ``{step, samples, train_s, flexible (%)}`` per point, by step."""
    pts = [{"step": h["curve/step"], "samples": h.get("samples"), "train_s": h.get("curve/train_s"),
            "flexible": 100 * h["curve/flexible"]} for h in record.get("history") or [] if "curve/step" in h]
    return sorted(pts, key=lambda p: p["step"])


def _last_num_tokens(history):
    vals = [h["num_tokens"] for h in history or [] if isinstance(h.get("num_tokens"), int | float)]
    return vals[-1] if vals else None


def labels_of(records, phase="test") -> list[str]:
    return list(dict.fromkeys(r["label"] for r in records if r["phase"] == phase))


def aggregate(records: list[dict], picked: dict | None = None, draws: int = 10_000) -> list[dict]:
    """One row per entry of the test phase (in first-seen order), preceded by the start model."""
    test = [r for r in records if r["phase"] == "test"]
    rows = []
    ok_all = [r for r in test if r.get("summary")]
    befores = [r["correct_before"] for r in ok_all if r.get("correct_before")]
    if befores:
        acc = [100 * statistics.fmean(b) for b in befores]
        rows.append({"label": START, "supervision": supervision(START), "seeds_ok": 1, "seeds_total": 1,
                     "after": mean_sd_ci(acc[:1]), "before": acc[0], "gain": mean_sd_ci([0.0]), "gain_ci95": None,
                     "failures": [], "correct": [befores[0]]})
    for label in labels_of(records):
        runs = [r for r in test if r["label"] == label]
        ok = [r for r in runs if r.get("summary")]
        sums = [r["summary"] for r in ok]
        row = {"label": label, "supervision": supervision(label), "seeds_ok": len(ok),
               "seeds_total": len(runs), "setting": (picked or {}).get(label),
               "failures": [{"seed": r["seed"], "error": r.get("error"), "log": r.get("log")}
                            for r in runs if not r.get("summary")]}
        row["before"] = statistics.fmean(a) if (a := [x for s in sums if (x := _acc(s, "before")) is not None]) \
            else None
        row["after"] = mean_sd_ci([_acc(s, "after") for s in sums])
        row["strict_after"] = mean_sd_ci([_acc(s, "after", "strict") for s in sums])
        row["gain"] = mean_sd_ci([(s.get("gain_points") or {}).get("flexible") for s in sums])
        pairs = [(r["correct_after"], r["correct_before"]) for r in ok if r.get("correct_after") and
                 r.get("correct_before")]
        row["correct"] = [a for a, _ in pairs]
        row["gain_ci95"] = None
        if pairs:
            boot = paired_bootstrap([a for a, _ in pairs], [b for _, b in pairs], draws=draws)
            row["gain_ci95"] = [100 * x for x in boot["ci95"]]
        row["samples"] = mean_sd_ci([s.get("samples_generated") for s in sums])
        row["steps"] = mean_sd_ci([s.get("global_step") for s in sums])
        row["tokens"] = mean_sd_ci([_last_num_tokens(r.get("history")) for r in ok])
        row["train_s"] = mean_sd_ci([train_seconds(s) for s in sums])
        row["wall_s"] = mean_sd_ci([r.get("seconds") for r in ok])
        rows.append(row)
    return rows


def paired_table(rows: list[dict], draws: int = 10_000) -> list[dict]:
    """Every pair of rows with test-problem correctness: the paired-bootstrap difference of flexible accuracy, its
    standard error and the smallest difference the comparison detects with 80% power from that standard error
    (``detectable``; the data's own power, so "no difference shown" can say what size of difference it rules out)."""
    out = []
    usable = [r for r in rows if r.get("correct")]
    for i, first in enumerate(usable):
        for second in usable[i + 1:]:
            if len(first["correct"][0]) != len(second["correct"][0]):
                continue
            a, b = (second, first) if first["label"] == START else (first, second)  # "entry minus the start model"
            boot = paired_bootstrap(a["correct"], b["correct"], draws=draws)
            lo, hi = (100 * x for x in boot["ci95"])
            detectable = 100 * detectable_difference(boot["se"])
            verdict = (f"{a['label']} better" if lo > 0 else f"{b['label']} better" if hi < 0
                       else f"{NO_DIFFERENCE}; one above {detectable:.1f} would have been detected")
            out.append({"a": a["label"], "b": b["label"], "difference": 100 * boot["difference"], "ci95": [lo, hi],
                        "p": boot["p"], "se": 100 * boot["se"], "detectable": detectable, "verdict": verdict})
    return out


def power_summary(paired: list[dict], among=None) -> dict | None:
    """The smallest difference detectable with 80% power between the algorithms ``among`` (default: all of them),
    over their pairs: median, lowest and highest, and how many pairs were told apart."""
    among = set(RL if among is None else among)
    pairs = [p for p in paired if p["a"] in among and p["b"] in among]
    if not pairs:
        return None
    sizes = sorted(p["detectable"] for p in pairs)
    return {"pairs": len(pairs), "median": statistics.median(sizes), "min": sizes[0], "max": sizes[-1],
            "told_apart": sum(not p["verdict"].startswith(NO_DIFFERENCE) for p in pairs)}


def speed_table(records: list[dict], fraction: float = 0.9) -> tuple[float | None, list[dict]]:
    """Samples and training seconds each entry needed to first reach ``fraction`` x the best final validation
    accuracy of the *algorithms* (the highest mean over seeds of the last curve point; the controls are left out of
    the threshold, the oracle would set it out of the algorithms' reach). Per seed the crossing lies between two curve
    points (``crossing_bracket``); per entry, the mean interpolated crossing over the seeds that reached it with an
    interval that holds both the seed spread and the spacing (``crossing_interval``)."""
    test = [r for r in records if r["phase"] == "test" and r.get("summary")]
    finals = {}
    for label in labels_of(records):
        last = [pts[-1]["flexible"] for r in test if r["label"] == label and (pts := curve_points(r))]
        if last:
            finals[label] = statistics.fmean(last)
    if not finals:
        return None, []
    algos = [v for k, v in finals.items() if k in RL] or list(finals.values())
    threshold = fraction * max(algos)
    out = []
    for label in finals:
        runs = [r for r in test if r["label"] == label]
        samples = [crossing_bracket(curve_points(r), threshold, "samples") for r in runs]
        if all(len({p["samples"] for p in curve_points(r)}) <= 1 for r in runs):
            samples = [None] * len(runs)  # sampled before training (DPO, RFT) or never: no samples-to-threshold
        seconds = [crossing_bracket(curve_points(r), threshold, "train_s") for r in runs]
        spacing = [statistics.fmean(b - a for a, b in zip(xs, xs[1:])) for r in runs
                   if len(xs := [p["samples"] for p in curve_points(r)]) > 1 and xs[-1] > xs[0]]
        out.append({"label": label, "final": finals[label], "reached": sum(s is not None for s in seconds),
                    "seeds": len(runs), "samples": crossing_interval(samples), "train_s": crossing_interval(seconds),
                    "spacing_samples": statistics.fmean(spacing) if spacing else None})
    return threshold, out


def _series(history, key):
    return [(h["step"], h[key]) for h in history or [] if isinstance(h.get(key), int | float) and "step" in h]


def phenomena_summary(records: list[dict]) -> dict:
    """Per phenomenon and entry: the metric's mean over the first and the last third of each run's logged steps,
    averaged over the seeds (only entries that log it)."""
    test = [r for r in records if r["phase"] == "test" and r.get("history")]
    out = {}
    for key in PHENOMENA:
        per = {}
        for label in labels_of(records):
            early, late = [], []
            for r in (r for r in test if r["label"] == label):
                s = _series(r["history"], key)
                if len(s) >= 3:
                    third = max(1, len(s) // 3)
                    early.append(statistics.fmean(v for _, v in s[:third]))
                    late.append(statistics.fmean(v for _, v in s[-third:]))
            if early:
                per[label] = {"early": statistics.fmean(early), "late": statistics.fmean(late)}
        if per:
            out[key] = per
    return out


def _cmp(a, b, what) -> str:
    word = "above" if a > b else "below" if a < b else "equal to"
    return f"{what}: {a:.3g} vs {b:.3g} ({word})"


def where_rl_wins(paired: list[dict]) -> list[str]:
    """One sentence per control: which RL entries beat it, which lose to it, and which are not told apart, by the
    paired intervals."""
    out = []
    for control in ("rft", "sft-warm-start", "sft-gold", START):
        wins, losses, ties = [], [], []
        for p in paired:
            if {p["a"], p["b"]} & {control} and ({p["a"], p["b"]} - {control}) & set(RL):
                rl = p["a"] if p["b"] == control else p["b"]
                diff = p["difference"] if p["a"] == rl else -p["difference"]
                lo, hi = p["ci95"] if p["a"] == rl else (-p["ci95"][1], -p["ci95"][0])
                diff, lo, hi = diff + 0.0, lo + 0.0, hi + 0.0  # no "-0.0"
                text = f"{rl} {diff:+.1f} [{lo:+.1f}, {hi:+.1f}]"
                (wins if lo > 0 else losses if hi < 0 else ties).append(text)
        if wins or losses or ties:
            out.append(f"RL vs {control} ({supervision(control)}), paired difference in points: "
                       + "; ".join(f"{name}: {', '.join(x)}" for name, x in (("better", wins), ("worse", losses),
                                                                            ("not told apart", ties)) if x) + ".")
    return out


def power_reading(power: dict | None) -> list[str]:
    """The comparison's power between the algorithms, in one sentence (none without paired algorithms)."""
    if not power:
        return []
    return [f"Power between the algorithms: a true difference of {power['median']:.1f} points (over the "
            f"{power['pairs']} pairs: {power['min']:.1f} to {power['max']:.1f}) is detected with 80% probability by a "
            "two-sided 5% test (2.8 paired-bootstrap standard errors of this run's own data); "
            f"{power['told_apart']} of the {power['pairs']} pairs were told apart. Where a pair shows no difference, "
            "a true difference above that size would most likely have been detected; a smaller one would not."]


def readings(phen: dict, rows: list[dict], speed: list[dict], paired: list[dict] | None = None) -> list[str]:
    """Sentences that state what the numbers show, each with its numbers (no claim the numbers do not carry)."""
    out = power_reading(power_summary(paired or [])) + where_rl_wins(paired or [])
    ent = phen.get("entropy", {})
    if ent:
        out.append("Entropy, first third -> last third of training: " + ", ".join(
            f"{k} {v['early']:.3f} -> {v['late']:.3f}" for k, v in ent.items()) + ".")
        if "dapo" in ent and "grpo" in ent:
            out.append("Clip-higher (DAPO) vs GRPO, " + _cmp(ent["dapo"]["late"], ent["grpo"]["late"],
                                                             "late entropy") + ".")
    zs = phen.get("frac_reward_zero_std", {})
    if zs:
        out.append("Share of generated groups with zero reward spread (no gradient), early -> late: " + ", ".join(
            f"{k} {v['early']:.2f} -> {v['late']:.2f}" for k, v in zs.items()) + ".")
    kept, rounds = phen.get("dapo/kept_group_frac", {}).get("dapo"), phen.get("dapo/generation_rounds", {}).get("dapo")
    if kept and rounds:
        out.append(f"DAPO's dynamic sampling kept {kept['early']:.2f} -> {kept['late']:.2f} of the generated groups, "
                   f"with {rounds['early']:.2f} -> {rounds['late']:.2f} generation rounds per batch: every group it "
                   "trains on has a reward spread, while the other algorithms' share of such groups is one minus "
                   "the zero-std share above.")
    length = phen.get("completions/mean_length", {})
    if length:
        out.append("Mean completion length (tokens), early -> late: " + ", ".join(
            f"{k} {v['early']:.1f} -> {v['late']:.1f}" for k, v in length.items()) + ".")
    lo, hi = phen.get("clip_ratio/low_mean", {}), phen.get("clip_ratio/high_mean", {})
    if lo or hi:
        out.append("Clip fractions over the last third (low / high): " + ", ".join(
            f"{k} {lo.get(k, {}).get('late', float('nan')):.4f} / {hi.get(k, {}).get('late', float('nan')):.4f}"
            for k in dict.fromkeys([*lo, *hi])) + ".")
    for key in ("kl", "ppo/kl"):
        if phen.get(key):
            out.append(f"{PHENOMENA[key]}, early -> late: " + ", ".join(
                f"{k} {v['early']:.4f} -> {v['late']:.4f}" for k, v in phen[key].items()) + ".")
    vl, ev = phen.get("ppo/value_loss", {}).get("ppo"), phen.get("ppo/explained_variance", {}).get("ppo")
    if vl and ev:
        out.append(f"PPO's critic: value loss {vl['early']:.4f} -> {vl['late']:.4f}, explained variance "
                   f"{ev['early']:.3f} -> {ev['late']:.3f}.")
    if speed:
        reached = sorted((s for s in speed if s["samples"]["mean"] is not None and s["reached"] == s["seeds"]),
                         key=lambda s: s["samples"]["mean"])
        if reached:
            fastest = reached[0]
            lo, hi = fastest["samples"]["ci95"]
            apart = [s["label"] for s in reached[1:] if s["samples"]["ci95"][0] > hi]
            out.append(f"Fewest samples to the threshold (all seeds reaching it): {fastest['label']} "
                       f"({fastest['samples']['mean']:.0f}, interval {lo:.0f}-{hi:.0f} with the curve spacing); "
                       + (f"its interval lies below those of {', '.join(apart)}." if apart else
                          "no other entry's interval lies wholly above it."))
    return out


def cost_summary(records: list[dict], jobs: int, curve_points: int, total_seconds: float | None = None) -> dict | None:
    """What the comparison cost, from the runs this invocation made: mean wall seconds of a sweep run and of a test run
    (whole launches: start-up, training, evaluations), the seconds of a greedy evaluation per 1,000 held-out problems,
    and what one more test seed, entry, or 1,000 test or validation problems would add at ``jobs`` runs at a time."""
    made = [r for r in records if r["status"] == "ok" and r.get("seconds") and r.get("summary")]
    if not made:
        return None
    sweep = [r["seconds"] for r in made if r["phase"] == "sweep"]
    test = [r["seconds"] for r in made if r["phase"] == "test"]
    per_problem = [s["phase_seconds"]["eval_after"] / s["after"]["num_problems"] for r in made
                   if (s := r["summary"]).get("after") and (s.get("phase_seconds") or {}).get("eval_after")]
    entries = len({r["label"] for r in records if r["phase"] == "test"})
    seeds = max(1, len([r for r in records if r["phase"] == "test"]) // max(1, entries))
    sweep_runs = len([r for r in records if r["phase"] == "sweep"])
    sweep_s, test_s = (statistics.fmean(x) if x else 0.0 for x in (sweep, test))
    eval_1000 = 1000 * statistics.fmean(per_problem) if per_problem else None
    per_entry_sweep = sweep_runs / max(1, entries)
    return {
        "runs": len(made), "jobs": jobs, "total_s": total_seconds, "sweep_run_s": sweep_s, "test_run_s": test_s,
        "eval_s_per_1000": eval_1000,
        "extra_seed_s": entries * test_s / jobs,
        "extra_entry_s": (per_entry_sweep * sweep_s + seeds * test_s) / jobs,
        "extra_1000_test_s": seeds * entries * eval_1000 / jobs if eval_1000 else None,
        "extra_1000_validation_s": (sweep_runs + seeds * entries * (curve_points + 1)) * eval_1000 / jobs
        if eval_1000 else None,
    }
