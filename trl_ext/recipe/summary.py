"""What a recipe run reports: the training wall clock per logged step, peak memory, tokens/s, how much the weights
moved, and the before/after evaluation summary (printed and written to ``summary.json``)."""

from __future__ import annotations

import time
from pathlib import Path

from trl_ext.rewards.answers import MODES


def wall_clock_callback():
    """A ``TrainerCallback`` that stamps each ``log_history`` entry with ``elapsed_s`` (seconds since training
    started; after a resume, counted on from the checkpoint's last logged time, so the time lost to the crash is left
    out) and records the end time of every optimizer step this process ran in ``step_times``."""
    from transformers import TrainerCallback

    class WallClock(TrainerCallback):
        def __init__(self):
            self.start = None
            self.offset = 0.0  # a resumed run goes on from the training time its checkpoint had logged
            self.step_times: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.start = time.time()
            logged = [h["elapsed_s"] for h in state.log_history if isinstance(h.get("elapsed_s"), int | float)]
            self.offset = float(logged[-1]) if logged else 0.0

        def _elapsed(self) -> float:
            return self.offset + time.time() - (self.start if self.start is not None else time.time())

        def on_step_end(self, args, state, control, **kwargs):
            self.step_times.append(self._elapsed())

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.log_history:
                state.log_history[-1].setdefault("elapsed_s", self._elapsed())

    return WallClock()


def peak_memory() -> dict:
    """This process's peak memory: CPU max resident set size (whole process lifetime, so including the evaluation
    before training) and, with CUDA, ``torch.cuda.max_memory_allocated`` since training started."""
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out = {"cpu_max_rss_mb": rss / (1024 * 1024 if sys.platform == "darwin" else 1024), "cuda_max_allocated_mb": None}
    import torch

    if torch.cuda.is_available():
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def tokens_per_second(history: list[dict], train_seconds: float) -> float | None:
    """Tokens processed per second of training, from the last token count the trainer logged (GRPO-family trainers:
    ``num_tokens``, prompt + completion tokens over all processes; Trainer: ``num_input_tokens_seen``)."""
    for key in ("num_tokens", "num_input_tokens_seen"):
        counts = [h[key] for h in history if isinstance(h.get(key), int | float)]
        if counts and train_seconds > 0:
            return float(counts[-1]) / train_seconds
    return None


def _safetensors_index(model_dir: Path) -> dict[str, Path]:
    from safetensors import safe_open

    index = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                index[key] = file
    return index


def parameter_change(start_dir, final_dir) -> dict | None:
    """Compare two saved checkpoints tensor by tensor (one tensor in memory at a time)."""
    from safetensors import safe_open

    start_dir, final_dir = Path(start_dir), Path(final_dir)
    if not start_dir.is_dir() or not final_dir.is_dir():
        return None
    a, b = _safetensors_index(start_dir), _safetensors_index(final_dir)
    common = sorted(set(a) & set(b))
    if not common:
        return None
    changed, max_diff = 0, 0.0
    for key in common:
        with safe_open(str(a[key]), framework="pt") as fa, safe_open(str(b[key]), framework="pt") as fb:
            ta, tb = fa.get_tensor(key).float(), fb.get_tensor(key).float()
        if ta.shape != tb.shape:
            changed += 1
            continue
        diff = float((ta - tb).abs().max()) if ta.numel() else 0.0
        changed += diff > 0
        max_diff = max(max_diff, diff)
    return {"tensors_compared": len(common), "tensors_changed": int(changed), "max_abs_diff": max_diff,
            "only_in_start": len(set(a) - set(b)), "only_in_final": len(set(b) - set(a))}


def eval_view(summary: dict | None) -> dict | None:
    if summary is None:
        return None
    keep = (*MODES, "format_rate", "mean_completion_tokens", "num_problems", "protocol", "model",
            "shows_work", "by_strategy", "by_steps", "sampled")
    return {k: summary[k] for k in keep if k in summary}


def format_eval_lines(tag: str, e: dict) -> list[str]:
    """Greedy accuracy with CIs, the mechanism (``trl_ext.eval.format_mechanism``), and the sampled evaluation when
    there is one."""
    from trl_ext.eval import format_mechanism, percent

    parts = [
        f"{mode} {percent(e[mode]['accuracy'])} (95% CI {100 * e[mode]['ci95'][0]:.1f}-{100 * e[mode]['ci95'][1]:.1f})"
        for mode in MODES
    ]
    lines = [f"{tag:6s}: greedy " + "  ".join(parts) + f"  format {percent(e['format_rate'])}"]
    pad = " " * 8
    mechanism = format_mechanism(e)
    if mechanism:
        lines.append(pad + mechanism)
    sampled = e.get("sampled")
    if sampled:
        k, flex = sampled["num_samples"], sampled["flexible"]
        lines.append(f"{pad}sampled (T={sampled['temperature']:g}, k={k}): flexible mean@{k} {percent(flex[f'mean@{k}'])}"
                     f", pass@{k} {percent(flex[f'pass@{k}'])}, maj@{k} {percent(flex[f'maj@{k}'])}; shows work "
                     f"{percent(sampled['shows_work_share'])}")
    return lines


def format_run_summary(s: dict) -> str:
    lines = [
        f"=== {s['algo']} recipe: {s['global_step']} optimizer steps on {s['world_size']} process(es), "
        f"train wall time {s['train_seconds']:.1f} s ===",
        f"start model: {s['model']}",
        f"final model: {s['final_model']}",
    ]
    for tag in ("before", "after"):
        e = s.get(tag)
        lines += [f"{tag:6s}: (not evaluated)"] if e is None else format_eval_lines(tag, e)
    gain = s.get("gain_points")
    if gain:
        text = f"gain  : greedy strict {gain['strict']:+.1f} points, flexible {gain['flexible']:+.1f} points"
        if gain.get("sampled_flexible") is not None:
            text += f", sampled flexible {gain['sampled_flexible']:+.1f} points"
        if gain.get("shows_work") is not None:
            text += f"; answers showing work {gain['shows_work']:+.1f} points"
        lines.append(text + f" ({s['eval']['num_problems']} held-out problems, {s['eval']['protocol']})")
    lines.append(f"summary: {s['summary_path']}")
    return "\n".join(lines)


def gain_points(before: dict | None, after: dict | None) -> dict | None:
    """After minus before, in points: greedy strict and flexible, the share of answers showing work, and the sampled
    flexible mean@k when both evaluations sampled."""
    if before is None or after is None:
        return None
    gain = {m: 100 * (after[m]["accuracy"] - before[m]["accuracy"]) for m in MODES}
    if "shows_work" in before and "shows_work" in after:
        gain["shows_work"] = 100 * (after["shows_work"] - before["shows_work"])
    sb, sa = before.get("sampled"), after.get("sampled")
    if sb and sa and sb["num_samples"] == sa["num_samples"]:
        key = f"mean@{sb['num_samples']}"
        gain["sampled_flexible"] = 100 * (sa["flexible"][key] - sb["flexible"][key])
    return gain


def run_summary(run, trainer, train_result, train_seconds, before, after, final_dir) -> dict:
    """The contents of ``output_dir/summary.json`` for a finished ``RecipeRun`` (see ``trl_ext.recipe.run``)."""
    import math

    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    s, training_args, source = run.script_args, run.training_args, run.source
    reference = after or before
    start_dir = Path(run.model_path)
    output_dir = Path(training_args.output_dir)
    return {
        "algo": run.algo,
        "model": run.model_path,
        "final_model": str(final_dir),
        "output_dir": training_args.output_dir,
        "summary_path": str(output_dir / "summary.json"),
        "config": source.config if source else None,
        "config_files": source.config_files if source else None,
        "hardware": source.hardware if source else None,
        "use_peft": bool(run.model_args.use_peft),
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        # training time, the sampling of offline training data included (DPO's pairs, RFT's samples: `offline_seconds`,
        # as recorded when they were sampled, also when they came from the cache)
        "train_seconds": train_seconds,
        "offline_seconds": run.offline_seconds,
        # this launch's phases (the warm start only when it was built or looked up here; a cached one takes ~0 s)
        "phase_seconds": dict(run.phase_seconds),
        "resumed_from": run.resume_from,
        "train_loss": getattr(train_result, "training_loss", None),
        "losses": losses,
        "losses_finite": bool(losses) and all(math.isfinite(x) for x in losses),
        "tokens_per_second": tokens_per_second(history, train_seconds - run.offline_seconds),
        "history_path": str(output_dir / "history.jsonl"),
        "before": eval_view(before),
        "after": eval_view(after),
        "gain_points": gain_points(before, after),
        "eval": {
            "source": s.dataset_source,
            "split": s.dataset_test_split,
            "limit": s.eval_limit,
            "max_new_tokens": s.eval_max_new_tokens,
            "num_problems": reference["num_problems"] if reference else None,
            "protocol": reference.get("protocol") if reference else None,
        },
        "param_change": parameter_change(start_dir, final_dir) if start_dir.is_dir() else None,
        **run.extra,
    }
