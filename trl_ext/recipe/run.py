"""``RecipeRun``: what every recipe does around its trainer.

* the start model: ``ModelConfig.model_name_or_path``, or the embedded SFT warm start when it is unset; dtype,
  revision and attention implementation go to the trainer through ``model_init_kwargs``; LoRA through
  ``get_peft_config`` and k-bit loading through ``get_quantization_config``;
* the GSM8K training split and the reward functions named in the script arguments;
* ``--resume_from_checkpoint``, checked before any model loads (``trl_ext.recipe.checkpoints.resolve_resume``);
* ``train_and_evaluate(trainer)``: evaluation of the start model on the held-out split (main process; the other
  ranks wait at a barrier), training, ``trainer.save_model(output_dir)`` (a full, loadable model also under ZeRO-3;
  LoRA adapters are merged into ``output_dir/merged`` for the evaluation), evaluation of the trained model, and the
  summary (``trl_ext.recipe.summary``): printed, written to ``output_dir/summary.json`` (with the phases' and
  steps' wall-clock times, tokens/s and peak memory), and one ``RECIPE_RESULT {json}`` line per rank; the trainer's log history goes to
  ``output_dir/history.jsonl``, each entry stamped with ``elapsed_s`` since training started.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

from trl_ext.recipe.args import RLScriptArguments, get_reward_funcs
from trl_ext.recipe.callbacks import AccuracyCurveCallback, BudgetCallback, SampleCounter
from trl_ext.recipe.checkpoints import resolve_resume, warn_checkpoints_inside_rollouts
from trl_ext.recipe.config import LAST_PARSE
from trl_ext.recipe.hardware import log
from trl_ext.recipe.summary import (
    eval_view,
    format_run_summary,
    gain_points,
    parameter_change,
    peak_memory,
    tokens_per_second,
    wall_clock_callback,
)

EMBEDDED_MODEL_NAMES = (None, "", "embedded", "warm_start")


@contextlib.contextmanager
def zero3_init_disabled():
    """Let ``from_pretrained`` build an ordinary (unpartitioned) model while ZeRO-3 training arguments exist.

    Under ZeRO-3 with ``zero3_init_flag`` transformers partitions every model it loads across the ranks; a model
    loaded by the main process alone (for evaluation) would then wait for ranks that never join.
    """
    import transformers.integrations.deepspeed as hf_ds

    saved = hf_ds._hf_deepspeed_config_weak_ref
    hf_ds._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = saved


class RecipeRun:
    """State shared by a recipe's steps; see the module docstring."""

    def __init__(self, algo: str, script_args, training_args, model_args):
        self.algo = algo
        self.script_args = script_args
        self.training_args = training_args
        self.model_args = model_args
        self.extra: dict = {}
        self.sample_counter: SampleCounter | None = None  # set when the reward functions are built
        self.offline_samples = 0  # completions sampled before training (DPO pairs, RFT)
        self.phase_seconds: dict[str, float] = {}  # wall time of each phase this process ran, for the summary
        # before any model loads: a bad resume request fails in seconds, not after the warm start and model load
        self.resume_from = resolve_resume(training_args.resume_from_checkpoint, training_args.output_dir)
        training_args.resume_from_checkpoint = self.resume_from
        if self.resume_from is not None:
            log(f"resuming from {self.resume_from}")
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
        from trl_ext.data.gsm8k import SYNTHETIC, load_gsm8k

        s = self.script_args
        n = s.num_train_examples
        dataset = load_gsm8k(
            s.dataset_source,
            s.dataset_train_split,
            num_examples=n,
            limit=None if s.dataset_source == SYNTHETIC else n,
            **s.dataset_kwargs(),
        )
        self._check_rollout_fits(dataset)
        return self._check_prompt_lengths(dataset)

    def _check_rollout_fits(self, dataset) -> None:
        """An online RL run draws whole rollouts of ``generation_batch_size / num_generations`` prompts; with fewer
        training prompts TRL's sampler yields no batch at all and the run ends after 0 steps without a word."""
        args = self.training_args
        batch = getattr(args, "generation_batch_size", None)
        if not batch or not getattr(args, "num_generations", None):
            return
        prompts = batch // args.num_generations
        if len(dataset) < prompts:
            raise ValueError(
                f"{len(dataset)} training prompts, but one rollout takes {prompts} (generation_batch_size {batch} = "
                f"per_device_train_batch_size {args.per_device_train_batch_size} x {args.world_size} processes x "
                f"steps_per_generation {args.steps_per_generation}, / num_generations {args.num_generations}): the run "
                "would train 0 steps. Raise --num_train_examples, or lower per_device_train_batch_size or "
                "steps_per_generation."
            )

    def _check_prompt_lengths(self, dataset):
        """Apply ``max_prompt_length`` / ``long_prompts`` to the conversational prompts (tokenizer only, no model)."""
        s = self.script_args
        if s.max_prompt_length is None:
            return dataset

        def num_tokens(prompt) -> int:
            ids = self.tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False)
            return len(ids)

        lengths = [num_tokens(prompt) for prompt in dataset["prompt"]]
        too_long = [i for i, n in enumerate(lengths) if n > s.max_prompt_length]
        if not too_long:
            return dataset
        if s.long_prompts == "error":
            i = too_long[0]
            raise ValueError(
                f"{len(too_long)} of {len(dataset)} training prompts ({s.dataset_source}, split "
                f"{s.dataset_train_split!r}) are longer than max_prompt_length={s.max_prompt_length} tokens with the "
                f"chat template; the first is row {i} ({lengths[i]} tokens): {dataset[i]['question'][:80]!r}... "
                "Raise --max_prompt_length, or pass --long_prompts drop to train without them."
            )
        kept = dataset.select([i for i in range(len(dataset)) if lengths[i] <= s.max_prompt_length])
        log(f"long_prompts=drop: dropped {len(too_long)} of {len(dataset)} training prompts longer than "
            f"max_prompt_length={s.max_prompt_length} tokens (longest: {max(lengths)})")
        if len(kept) == 0:
            raise ValueError(f"every training prompt is longer than max_prompt_length={s.max_prompt_length}")
        return kept

    # -- evaluation ---------------------------------------------------------------------------------------------
    def evaluate(self, model_path, tag: str) -> dict:
        """Held-out evaluation of a saved model (call on the main process only)."""
        from trl_ext.eval import evaluate_path, format_summary

        s = self.script_args
        output_dir = Path(self.training_args.output_dir)
        common = dict(
            limit=s.eval_limit,
            max_new_tokens=s.eval_max_new_tokens,
            batch_size=s.eval_batch_size,
            backend=s.eval_backend,
            progress=False,
            dataset_kwargs={**s.dataset_kwargs(), "num_examples": s.eval_limit},
        )
        with zero3_init_disabled():
            summary = evaluate_path(str(model_path), s.dataset_source, s.dataset_test_split,
                                    output_dir=output_dir / f"eval_{tag}", **common)
            if s.eval_num_samples > 1:
                sampled = evaluate_path(str(model_path), s.dataset_source, s.dataset_test_split,
                                        output_dir=output_dir / f"eval_{tag}_sampled", num_samples=s.eval_num_samples,
                                        temperature=s.eval_temperature, **common)
                strategy = sampled["by_strategy"]
                summary["sampled"] = {
                    "num_samples": sampled["num_samples"],
                    "temperature": sampled["temperature"],
                    **{m: sampled[m] for m in ("strict", "flexible")},
                    "shows_work_share": strategy["worked"]["completions"]
                    / max(1, strategy["worked"]["completions"] + strategy["direct"]["completions"]),
                    "by_strategy": strategy,
                    "mean_completion_tokens": sampled["mean_completion_tokens"],
                }
                (output_dir / f"eval_{tag}" / "summary.json").write_text(json.dumps(summary, indent=2))
        log(f"evaluation {tag} training:\n{format_summary(summary)}")
        return summary

    def _merged_model(self, output_dir: Path) -> Path:
        """LoRA: merge the saved adapter into the base model (main process) and save it next to the adapter."""
        from peft import AutoPeftModelForCausalLM

        merged_dir = output_dir / "merged"
        with zero3_init_disabled():
            model = AutoPeftModelForCausalLM.from_pretrained(str(output_dir), dtype="auto")
            model = model.merge_and_unload()
            model.save_pretrained(merged_dir)
        self.tokenizer.save_pretrained(merged_dir)
        return merged_dir

    @staticmethod
    def _ensure_full_save(trainer) -> None:
        """Under ZeRO-3, make ``save_model`` gather the partitioned weights into one loadable checkpoint."""
        if not getattr(trainer, "is_deepspeed_enabled", False):
            return
        plugin = trainer.accelerator.state.deepspeed_plugin
        zero = plugin.deepspeed_config.setdefault("zero_optimization", {})
        if str(zero.get("stage")) == "3" and zero.get("stage3_gather_16bit_weights_on_model_save") is not True:
            zero["stage3_gather_16bit_weights_on_model_save"] = True
            log("ZeRO-3: set stage3_gather_16bit_weights_on_model_save=true so that save_model writes a full model")

    # -- the run ------------------------------------------------------------------------------------------------
    def train_and_evaluate(self, trainer) -> dict:
        acc = trainer.accelerator
        s = self.script_args
        output_dir = Path(self.training_args.output_dir)
        self._ensure_full_save(trainer)

        before = None
        if s.eval_before:
            if acc.is_main_process:
                stored = output_dir / "eval_before" / "summary.json"
                stored = json.loads(stored.read_text()) if self.resume_from is not None and stored.exists() else None
                if stored is not None and self._same_evaluation(stored):  # the start model did not change
                    before = stored
                    log(f"resumed run: reusing the start model's evaluation {output_dir / 'eval_before'}")
                else:
                    t0 = time.time()
                    before = self.evaluate(self.model_path, "before")
                    self.phase_seconds["eval_before"] = time.time() - t0
            acc.wait_for_everyone()

        wall_clock = wall_clock_callback()
        trainer.add_callback(wall_clock)
        budget, curve = self._budget_callbacks(trainer)
        if self.resume_from is not None:
            from trl_ext.trainers.resume import ResumeStateCallback

            trainer.add_callback(ResumeStateCallback(trainer))
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start = time.time()
        train_result = trainer.train(resume_from_checkpoint=self.resume_from)
        train_seconds = wall_clock.offset + time.time() - start
        self.phase_seconds["train"] = time.time() - start
        self.extra["step_times"] = wall_clock.step_times
        self.extra["peak_memory"] = peak_memory()
        self.extra["samples_generated"] = budget.samples
        self.extra["budget_stopped_by"] = budget.stopped_by
        if curve is not None:
            self.extra["curve"] = [{k.removeprefix("curve/"): v for k, v in p.items()} for p in curve.points]
            self.extra["curve_eval_seconds"] = curve.eval_seconds

        trainer.save_model(str(output_dir))  # every rank: gathers ZeRO-3 shards
        final_dir = output_dir
        is_peft = self.model_args.use_peft
        after = None
        summary = None
        if acc.is_main_process:
            if is_peft:
                final_dir = self._merged_model(output_dir)
            if s.eval_after:
                t0 = time.time()
                after = self.evaluate(final_dir, "after")
                self.phase_seconds["eval_after"] = time.time() - t0
            summary = self._summary(trainer, train_result, train_seconds, before, after, final_dir)
            path = output_dir / "summary.json"
            path.write_text(json.dumps(summary, indent=2))
            with open(output_dir / "history.jsonl", "w") as f:  # one line per trainer log entry (with elapsed_s)
                for entry in trainer.state.log_history:
                    f.write(json.dumps(entry) + "\n")
            print(format_run_summary(summary), flush=True)
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
        # one write (under PYTHONUNBUFFERED print writes the text and the newline separately, and two ranks' lines
        # could interleave on a shared pipe)
        print("RECIPE_RESULT " + json.dumps(result) + "\n", end="", flush=True)
        shutdown_distributed()
        return summary if summary is not None else result

    def _budget_callbacks(self, trainer):
        """The sample / time budget (always: it also stamps the sample count on the log) and, with
        ``eval_curve_steps``, the accuracy curve on ``eval_curve_split``."""
        from trl_ext.data.gsm8k import load_gsm8k

        s = self.script_args
        budget = BudgetCallback(self.sample_counter, trainer.accelerator.num_processes, s.max_samples,
                                s.max_train_seconds, self.offline_samples)
        trainer.add_callback(budget)
        curve = None
        if s.eval_curve_steps:
            dataset = load_gsm8k(s.dataset_source, s.eval_curve_split, limit=s.eval_curve_limit,
                                 **{**s.dataset_kwargs(), "num_examples": s.eval_curve_limit})
            curve = AccuracyCurveCallback(trainer, dataset, s.eval_curve_steps, budget,
                                          max_new_tokens=s.eval_max_new_tokens, batch_size=s.eval_batch_size)
            trainer.add_callback(curve)
        return budget, curve

    def _same_evaluation(self, stored: dict) -> bool:
        """Whether a stored evaluation of the start model was made with the current evaluation settings."""
        s = self.script_args
        wanted = {"model": str(self.model_path), "source": s.dataset_source, "split": s.dataset_test_split,
                  "max_new_tokens": s.eval_max_new_tokens}
        if any(stored.get(k) != v for k, v in wanted.items()):
            return False
        sampled = stored.get("sampled") or {}
        if sampled.get("num_samples", 0) != (s.eval_num_samples if s.eval_num_samples > 1 else 0):
            return False
        if sampled and sampled.get("temperature") != s.eval_temperature:
            return False
        return s.eval_limit is None or stored.get("num_problems") == s.eval_limit

    def _summary(self, trainer, train_result, train_seconds, before, after, final_dir) -> dict:
        history = trainer.state.log_history
        losses = [h["loss"] for h in history if "loss" in h]
        gain = gain_points(before, after)
        s = self.script_args
        reference = after or before
        start_dir = Path(self.model_path)
        summary = {
            "algo": self.algo,
            "model": self.model_path,
            "final_model": str(final_dir),
            "output_dir": self.training_args.output_dir,
            "summary_path": str(Path(self.training_args.output_dir) / "summary.json"),
            "config": LAST_PARSE.get("config"),
            "config_files": LAST_PARSE.get("config_files"),
            "hardware": LAST_PARSE.get("hardware"),
            "use_peft": bool(self.model_args.use_peft),
            "world_size": trainer.accelerator.num_processes,
            "global_step": trainer.state.global_step,
            "train_seconds": train_seconds,
            # this launch's phases (the warm start only when it was built or looked up here; a cached one takes ~0 s)
            "phase_seconds": dict(self.phase_seconds),
            "resumed_from": self.resume_from,
            "train_loss": getattr(train_result, "training_loss", None),
            "losses": losses,
            "losses_finite": bool(losses) and all(math.isfinite(x) for x in losses),
            "tokens_per_second": tokens_per_second(history, train_seconds),
            "history_path": str(Path(self.training_args.output_dir) / "history.jsonl"),
            "before": eval_view(before),
            "after": eval_view(after),
            "gain_points": gain,
            "eval": {
                "source": s.dataset_source,
                "split": s.dataset_test_split,
                "limit": s.eval_limit,
                "max_new_tokens": s.eval_max_new_tokens,
                "num_problems": reference["num_problems"] if reference else None,
                "protocol": reference.get("protocol") if reference else None,
            },
            "param_change": parameter_change(start_dir, final_dir) if start_dir.is_dir() else None,
            **self.extra,
        }
        return summary


def shutdown_distributed() -> None:
    """Tear the process group down explicitly before the interpreter exits: leaving it to interpreter shutdown
    sometimes aborted a rank after a finished 2-process CPU run ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
