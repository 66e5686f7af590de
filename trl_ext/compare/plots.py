"""The comparison's figures (matplotlib, Agg): held-out accuracy during training against samples and training time,
one figure per phenomenon against samples, and the final accuracies. Every curve is the mean over seeds on a common
grid, with a band from the lowest to the highest seed."""

from __future__ import annotations

from pathlib import Path

from trl_ext.compare.report import PHENOMENA, curve_points, labels_of


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mean_band(series_list):
    """Seeds' ``[(x, y), ...]`` -> (xs, mean, low, high) on the union of their x values, each seed held at its last
    value (step function) where it has no point, and only where every seed has started."""
    import numpy as np

    series_list = [sorted(s) for s in series_list if s]
    if not series_list:
        return [], [], [], []
    start = max(s[0][0] for s in series_list)
    end = min(s[-1][0] for s in series_list)
    xs = sorted({x for s in series_list for x, _ in s if start <= x <= end})
    grid = []
    for s in series_list:
        sx, sy = np.array([x for x, _ in s]), np.array([y for _, y in s])
        grid.append(sy[np.searchsorted(sx, xs, side="right") - 1])
    grid = np.array(grid)
    return xs, grid.mean(axis=0), grid.min(axis=0), grid.max(axis=0)


def _save(fig, ax, out_dir: Path, name: str, empty: str) -> str:
    if ax.lines:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, empty, ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out_dir / name, dpi=100)
    _plt().close(fig)
    return name


def _test_runs(records, label):
    return [r for r in records if r["phase"] == "test" and r["label"] == label and r.get("summary")]


def accuracy_curves(records, out_dir: Path) -> list[tuple[str, str]]:
    plt = _plt()
    made = []
    for x_key, name, xlabel in (("samples", "accuracy_vs_samples.png", "samples (completions generated)"),
                                ("train_s", "accuracy_vs_time.png", "training wall time (s, curve evaluations "
                                                                    "excluded)")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label in labels_of(records):
            series = [[(p[x_key], p["flexible"]) for p in curve_points(r) if p[x_key] is not None]
                      for r in _test_runs(records, label)]
            xs, mean, low, high = _mean_band(series)
            if x_key == "samples" and xs and min(xs) == max(xs):  # nothing sampled during training
                how = "no samples" if xs[0] == 0 else f"{xs[0]:.0f} samples drawn before training"
                ax.axhline(mean[-1], ls="--", lw=1, color=f"C{len(ax.lines) % 10}", label=f"{label}: final ({how})")
            elif xs:
                ax.plot(xs, mean, marker="o", ms=3, label=label)
                ax.fill_between(xs, low, high, alpha=0.15)
        ax.set(xlabel=xlabel, ylabel="validation greedy flexible accuracy (%)",
               title="held-out accuracy during training (mean, band: seed range)")
        made.append((_save(fig, ax, out_dir, name, "no accuracy curve logged"),
                     f"validation accuracy vs {xlabel.split(' (')[0]}"))
    return made


def phenomena(records, out_dir: Path) -> list[tuple[str, str]]:
    plt = _plt()
    made = []
    for key, title in PHENOMENA.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        for label in labels_of(records):
            series = [[(h["samples"], h[key]) for h in r.get("history") or []
                       if isinstance(h.get(key), int | float) and isinstance(h.get("samples"), int | float)]
                      for r in _test_runs(records, label)]
            xs, mean, low, high = _mean_band(series)
            if len(xs) > 1:
                ax.plot(xs, mean, label=label)
                ax.fill_between(xs, low, high, alpha=0.15)
        if not ax.lines:
            plt.close(fig)
            continue
        ax.set(xlabel="samples (completions generated)", ylabel=key, title=title)
        name = "phenomenon_" + key.replace("/", "_") + ".png"
        made.append((_save(fig, ax, out_dir, name, ""), title))
    return made


def final_accuracy(rows, out_dir: Path) -> list[tuple[str, str]]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    labels = [r["label"] for r in rows]
    means = [r["after"]["mean"] or 0.0 for r in rows]
    errs = [r["after"]["sd"] or 0.0 for r in rows]
    ax.bar(range(len(rows)), means, yerr=errs, capsize=3)
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right")
    ax.set(ylabel="test greedy flexible accuracy (%)", title="after training (mean ± sd over seeds)")
    fig.tight_layout()
    fig.savefig(out_dir / "final_accuracy.png", dpi=100)
    plt.close(fig)
    return [("final_accuracy.png", "test accuracy after training, every entry")]


def make_plots(records, rows, out_dir) -> list[tuple[str, str]]:
    out_dir = Path(out_dir)
    return accuracy_curves(records, out_dir) + phenomena(records, out_dir) + final_accuracy(rows, out_dir)
