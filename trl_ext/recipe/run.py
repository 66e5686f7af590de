"""``RecipeRun``: what every recipe does around its trainer (the orchestration; the pieces live beside it).

* the start model: ``ModelConfig.model_name_or_path``, or the embedded SFT warm start when it is unset; dtype,
  revision and attention implementation go to the trainer through ``model_init_kwargs``; LoRA through
  ``get_peft_config`` and k-bit loading through ``get_quantization_config``;
* the training prompts (``trl_ext.recipe.prompts``) and the reward functions named in the script arguments;
* ``--resume_from_checkpoint``, checked before any model loads (``trl_ext.recipe.checkpoints.resolve_resume``);
* ``train_and_evaluate(trainer)``: evaluation of the start model on the held-out split (main process; the other
  ranks wait at a barrier; ``trl_ext.recipe.evaluation``), training, ``trainer.save_model(output_dir)`` (a full,
  loadable model also under ZeRO-3; LoRA adapters are merged into ``output_dir/merged`` for the evaluation),
  evaluation of the trained model, and the summary (``trl_ext.recipe.summary``): printed, written to
  ``output_dir/summary.json`` (with the phases' and steps' wall-clock times, tokens/s and peak memory), and one
  ``RECIPE_RESULT {json}`` line per rank (``trl_ext.recipe.distributed``); the trainer's log history goes to
  ``output_dir/history.jsonl``, each entry stamped with ``elapsed_s`` since training started.
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path

from trl_ext.recipe.args import RLScriptArguments, get_reward_funcs
from trl_ext.recipe.callbacks import AccuracyCurveCallback, BudgetCallback, SampleCounter, whole_rollout_steps
from trl_ext.recipe.checkpoints import resolve_resume, warn_checkpoints_inside_rollouts
from trl_ext.recipe.distributed import (
    ensure_full_save,
    max_over_processes,
    print_result,
    shutdown_distributed,
    zero3_init_disabled,
)
from trl_ext.recipe.evaluation import evaluate_model, evaluate_start_model, merge_lora, same_evaluation
from trl_ext.recipe.hardware import log
from trl_ext.recipe.prompts import check_prompt_lengths, check_rollout_fits, load_training_prompts
from trl_ext.recipe.summary import format_run_summary, peak_memory, run_summary, wall_clock_callback

EMBEDDED_MODEL_NAMES = (None, "", "embedded", "warm_start")

# re-exported: the distributed helpers lived here before trl_ext.recipe.distributed
__all__ = ["EMBEDDED_MODEL_NAMES", "RecipeRun", "shutdown_distributed", "zero3_init_disabled"]


class RecipeRun:
    """State shared by a recipe's steps; see the module docstring. ``source`` is the ``ConfigSource`` of the parse
    (``parse_recipe_args(...).source``): which config and hardware adaptation the summary reports."""

    def __init__(self, algo: str, script_args, training_args, model_args, source=None):
        self.algo = algo
        self.script_args = script_args
        self.training_args = training_args
        self.model_args = model_args
        self.source = source
        self.extra: dict = {}
        self.sample_counter: SampleCounter | None = None  # set when the reward functions are built
        self.offline_samples = 0  # completions sampled before training (DPO pairs, RFT)
        self.offline_seconds = 0.0  # the seconds that sampling took: training time too (the data's cost)
        self.phase_seconds: dict[str, float] = {}  # wall time of each phase this process ran, for the summary
        # before any model loads: a bad resume request fails in seconds, not after the warm start and model load
        self.resume_from = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
        training_args.resume_from_checkpoint = self.resume_from
        if self.resume_from is not None:
            log(f"resuming from {self.resume_from}")
        if isinstance(script_args, RLScriptArguments) and script_args.max_samples is not None:  # online RL
            steps = whole_rollout_steps(script_args.max_samples, training_args)
            log(f"max_samples {script_args.max_samples}: max_steps {training_args.max_steps} -> {steps} (whole "
                "rollouts)")
            training_args.max_steps = steps
        warn_checkpoints_inside_rollouts(training_args)
        self.embedded_model = model_args.model_name_or_path in EMBEDDED_MODEL_NAMES
        if self.embedded_model:
            from trl_ext.models.tiny import warm_start

            t0 = time.time()
            model_args.model_name_or_path = str(warm_start())
            self.phase_seconds["warm_start"] = time.time() - t0
            log(f"model: the embedded SFT warm start {model_args.model_name_or_path}")
        self.model_path = model_args.model_name_or_path
        init_kwargs = dict(training_args.model_init_kwargs or {})
        for key, value in (
            ("dtype", model_args.dtype),
            ("revision", model_args.model_revision),
            ("attn_implementation", model_args.attn_implementation),
        ):
            if value is not None:
                init_kwargs.setdefault(key, value)
        training_args.model_init_kwargs = init_kwargs
        self._tokenizer = None
        self.wall_clock = self.budget = self.curve = None  # set by training_callbacks

    # -- model pieces -------------------------------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(self.model_path, revision=self.model_args.model_revision)
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            self._tokenizer = tok
        return self._tokenizer

    @property
    def peft_config(self):
        from trl import get_peft_config

        config = get_peft_config(self.model_args)
        # `--lora_target_modules all-linear` arrives as a one-element list, which PEFT reads as a module name.
        if config is not None and isinstance(config.target_modules, list | set):
            if set(config.target_modules) == {"all-linear"}:
                config.target_modules = "all-linear"
        return config

    @property
    def quantization_config(self):
        from trl import get_quantization_config

        return get_quantization_config(self.model_args)

    @property
    def reward_funcs(self) -> list:
        if not isinstance(self.script_args, RLScriptArguments):
            raise TypeError(f"{self.algo}: reward functions need RLScriptArguments")
        funcs = get_reward_funcs(self.script_args.reward_funcs, self.script_args, self.training_args)
        # the first reward function scores every generated completion once: it counts the samples (callbacks.py)
        self.sample_counter = SampleCounter(funcs[0])
        return [self.sample_counter, *funcs[1:]]

    # -- data ---------------------------------------------------------------------------------------------------
    def train_dataset(self):
        """The training prompts, checked: one rollout fits, no prompt over ``max_prompt_length`` (or dropped)."""
        dataset = load_training_prompts(self.script_args)
        check_rollout_fits(dataset, self.training_args)
        if self.script_args.max_prompt_length is None:
            return dataset
        return check_prompt_lengths(dataset, self.script_args, self.tokenizer)

    # -- evaluation ---------------------------------------------------------------------------------------------
    def evaluate(self, model_path, tag: str) -> dict:
        """Held-out evaluation of a saved model (call on the main process only)."""
        return evaluate_model(model_path, tag, self.script_args, self.training_args.output_dir)

    def _evaluate_start_model(self, acc) -> dict | None:
        """The start model's evaluation on the main process (reused from ``eval_before/`` after a resume when made
        with the same settings); every rank waits for it."""
        if not self.script_args.eval_before:
            return None
        before = None
        if acc.is_main_process:
            folder = Path(self.training_args.output_dir) / "eval_before"
            stored = folder / "summary.json"
            stored = json.loads(stored.read_text()) if self.resume_from is not None and stored.exists() else None
            if stored is not None and same_evaluation(stored, self.script_args, self.model_path):
                before = stored  # the start model did not change
                log(f"resumed run: reusing the start model's evaluation {folder}")
            elif self.script_args.eval_before_cache:
                t0 = time.time()
                before, reused = evaluate_start_model(self.model_path, self.script_args, self.training_args.output_dir)
                self.phase_seconds["eval_before"] = time.time() - t0
                self.extra["eval_before_reused"] = reused
            else:
                t0 = time.time()
                before = self.evaluate(self.model_path, "before")
                self.phase_seconds["eval_before"] = time.time() - t0
        acc.wait_for_everyone()
        return before

    # -- the run ------------------------------------------------------------------------------------------------
    def training_callbacks(self, trainer) -> list:
        """The callbacks ``train_and_evaluate`` adds to the trainer before training, in this order. Run-level
        callbacks (metrics during training, budgets) belong in this list."""
        from trl_ext.data.gsm8k import load_gsm8k

        s = self.script_args
        self.wall_clock = wall_clock_callback()  # elapsed_s in every log entry, step end times
        # the sample / time budget (always: it also stamps the sample count on the log)
        self.budget = BudgetCallback(self.sample_counter, trainer.accelerator.num_processes, s.max_samples,
                                     s.max_train_seconds, self.offline_samples,
                                     reduce_max=functools.partial(max_over_processes, trainer.accelerator),
                                     offline_seconds=self.offline_seconds)
        callbacks = [self.wall_clock, self.budget]
        self.curve = None
        every = s.eval_curve_steps
        if s.eval_curve_points:
            if trainer.args.max_steps <= 0:
                raise ValueError("eval_curve_points spreads the curve over max_steps: set max_steps (or max_samples) "
                                 "or give eval_curve_steps")
            every = math.ceil(trainer.args.max_steps / s.eval_curve_points)
        if every:  # held-out accuracy during training, on eval_curve_split
            dataset = load_gsm8k(s.dataset_source, s.eval_curve_split, limit=s.eval_curve_limit,
                                 **{**s.dataset_kwargs(), "num_examples": s.eval_curve_limit})
            self.curve = AccuracyCurveCallback(trainer, dataset, every, self.budget,
                                               max_new_tokens=s.eval_max_new_tokens, batch_size=s.eval_batch_size)
            callbacks.append(self.curve)
        if self.resume_from is not None:
            from trl_ext.trainers.resume import ResumeStateCallback

            callbacks.append(ResumeStateCallback(trainer))  # the sampler's data order and the RNG of the checkpoint
        return callbacks

    def train_and_evaluate(self, trainer) -> dict:
        acc = trainer.accelerator
        output_dir = Path(self.training_args.output_dir)
        ensure_full_save(trainer)
        before = self._evaluate_start_model(acc)

        for callback in self.training_callbacks(trainer):
            trainer.add_callback(callback)
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.time()
        train_result = trainer.train(resume_from_checkpoint=self.resume_from)
        train_seconds = self.offline_seconds + self.wall_clock.offset + time.time() - start
        self.phase_seconds["train"] = time.time() - start
        self.extra["step_times"] = self.wall_clock.step_times
        self.extra["peak_memory"] = peak_memory()
        self.extra["samples_generated"] = self.budget.samples
        self.extra["budget_stopped_by"] = self.budget.stopped_by
        if self.curve is not None:
            self.extra["curve"] = [{k.removeprefix("curve/"): v for k, v in p.items()} for p in self.curve.points]
            self.extra["curve_eval_seconds"] = self.curve.eval_seconds

        trainer.save_model(str(output_dir))  # every rank: gathers ZeRO-3 shards
        summary = None
        if acc.is_main_process:
            summary = self._finish(trainer, train_result, train_seconds, before)
        acc.wait_for_everyone()

        history = trainer.state.log_history
        result = {
            "algo": self.algo,
            "rank": acc.process_index,
            "world_size": acc.num_processes,
            "global_step": trainer.state.global_step,
            "losses": [h["loss"] for h in history if "loss" in h],
            "output_dir": str(output_dir),
            "peak_memory": self.extra.get("peak_memory"),
        }
        print_result(result)
        shutdown_distributed()
        return summary if summary is not None else result

    def _finish(self, trainer, train_result, train_seconds, before) -> dict:
        """Main process, after training: merge LoRA, evaluate the trained model, write summary.json and
        history.jsonl, print the summary."""
        output_dir = Path(self.training_args.output_dir)
        final_dir = merge_lora(output_dir, self.tokenizer) if self.model_args.use_peft else output_dir
        after = None
        if self.script_args.eval_after:
            t0 = time.time()
            after = self.evaluate(final_dir, "after")
            self.phase_seconds["eval_after"] = time.time() - t0
        summary = run_summary(self, trainer, train_result, train_seconds, before, after, final_dir)
        (output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        with open(output_dir / "history.jsonl", "w") as f:  # one line per trainer log entry (with elapsed_s)
            for entry in trainer.state.log_history:
                f.write(json.dumps(entry) + "\n")
        print(format_run_summary(summary), flush=True)
        return summary
