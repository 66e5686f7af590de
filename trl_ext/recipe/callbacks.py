"""Trainer callbacks of the recipes that the comparison reads: the training budget (samples generated or wall time)
and held-out accuracy during training.

Convention: a *sample* is one generated completion. The count includes every completion the trainer generated, also
those it discarded (DAPO's dynamic-sampling refill rounds): it is counted where every online trainer must pass, the
first reward function, which scores each generated completion exactly once. Every rank scores its own share and the
shares are equal (TRL splits a generation batch evenly; DAPO's refill rounds run on all ranks), so the global count
is the local count times the number of processes. Offline data (DPO's pairs, RFT's kept samples) is sampled before
training; the recipe counts it itself and puts ``samples_generated`` in its summary.

Both callbacks write into the trainer's ``log_history`` (so into ``history.jsonl``): every log entry gets the
cumulative ``samples``; every accuracy point is an entry of its own with ``curve/strict``, ``curve/flexible``,
``curve/step``, ``samples``, ``curve/train_s`` (training seconds so far: the sampling of offline training data
included, the curve's own evaluations not) and ``curve/eval_s`` (the seconds spent on these evaluations so far, which
the wall-clock ``elapsed_s`` includes).
"""

from __future__ import annotations

import math
import time

from transformers import TrainerCallback


class SampleCounter:
    """Wraps a reward function (``__name__`` kept) and counts the completions it scores on this process."""

    def __init__(self, reward_func):
        self.reward_func = reward_func
        self.__name__ = getattr(reward_func, "__name__", None) or type(reward_func).__name__
        self.count = 0

    def __call__(self, *args, completions=None, **kwargs):
        self.count += len(completions) if completions is not None else 0
        return self.reward_func(*args, completions=completions, **kwargs)


def whole_rollout_steps(max_samples: int, args) -> int:
    """Optimizer steps that train on whole rollouts until at least ``max_samples`` completions were generated.

    One rollout (TRL's generation batch) is ``per_device_train_batch_size x world_size x steps_per_generation``
    completions, trained on for ``steps_per_generation x num_iterations`` micro-steps. A step bound of
    ``ceil(samples / samples per step)`` can end inside a rollout (GSPO and PPO on the testbed: 150 steps generated 38
    rollouts of 64 and trained on 37.5); this one ends at the end of the first rollout that reaches the budget."""
    spg = args.steps_per_generation or args.gradient_accumulation_steps
    rollouts = math.ceil(max_samples / (args.per_device_train_batch_size * args.world_size * spg))
    return math.ceil(rollouts * spg * args.num_iterations / args.gradient_accumulation_steps)


def rollout_used_up(args, global_step: int) -> bool:
    """Whether the generated batch is fully trained on after ``global_step`` optimizer steps: online trainers
    generate once every ``steps_per_generation * num_iterations`` micro-steps (TRL's ``GRPOConfig``)."""
    every = (getattr(args, "steps_per_generation", None) or 1) * (getattr(args, "num_iterations", None) or 1)
    return global_step * args.gradient_accumulation_steps % every == 0


class BudgetCallback(TrainerCallback):
    """Stops training at the end of the first optimizer step at which ``max_samples`` completions were generated and
    the last rollout is used up, or at which ``max_train_seconds`` of training passed; stamps ``samples`` on every
    log entry. ``counter`` is None for trainers that generate nothing during training (DPO, SFT).

    Every rank must stop on the same step (a rank that stops early enters the end-of-training collectives while the
    others step again: a hang). The sample count is the same on every rank; clocks are not, so with several
    processes the time check uses ``reduce_max`` (``trl_ext.recipe.distributed.max_over_processes``): the largest
    training time of all ranks, one value everywhere."""

    def __init__(self, counter: SampleCounter | None, world_size: int, max_samples: int | None = None,
                 max_train_seconds: float | None = None, offline_samples: int = 0, reduce_max=None,
                 offline_seconds: float = 0.0):
        if world_size > 1 and max_train_seconds is not None and reduce_max is None:
            raise ValueError("a time budget on several processes needs reduce_max: the ranks must agree on when "
                             "to stop")
        self.counter, self.world_size, self.reduce_max = counter, world_size, reduce_max
        self.max_samples, self.max_train_seconds = max_samples, max_train_seconds
        self.offline_samples, self.offline_seconds = offline_samples, offline_seconds
        self.resumed_samples = 0
        self.start = None
        self.stopped_by = None
        self.curve: AccuracyCurveCallback | None = None  # set by AccuracyCurveCallback, whose time is not training

    def train_seconds(self) -> float:
        """Seconds since training began in this launch, less the accuracy-curve evaluations, plus the seconds the
        training data took to sample before training (``offline_seconds``: DPO's pairs, RFT's samples)."""
        curve = self.curve.eval_seconds_here if self.curve is not None else 0.0
        return self.offline_seconds + time.time() - self.start - curve

    def _agreed_train_seconds(self) -> float:
        seconds = self.train_seconds()
        return self.reduce_max(seconds) if self.world_size > 1 else seconds

    @property
    def samples(self) -> int:
        online = self.counter.count * self.world_size if self.counter is not None else 0
        return self.offline_samples + self.resumed_samples + online

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()
        logged = [h["samples"] for h in state.log_history if isinstance(h.get("samples"), int | float)]
        if logged and self.counter is not None:  # a resumed run goes on counting from its checkpoint's log
            self.resumed_samples = int(logged[-1]) - self.offline_samples

    def on_step_end(self, args, state, control, **kwargs):
        if self.max_samples is not None and self.counter is not None and self.samples >= self.max_samples \
                and rollout_used_up(args, state.global_step):
            control.should_training_stop, self.stopped_by = True, f"max_samples {self.max_samples}"
        if self.max_train_seconds is not None and self._agreed_train_seconds() >= self.max_train_seconds:
            control.should_training_stop, self.stopped_by = True, f"max_train_seconds {self.max_train_seconds:g}"
        if control.should_training_stop:
            control.should_log = True  # the last step's numbers (and its sample count) reach the history

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.log_history:
            state.log_history[-1].setdefault("samples", self.samples)


class AccuracyCurveCallback(TrainerCallback):
    """Greedy accuracy of the current policy on held-out problems every ``every`` optimizer steps, at the start and at
    the end of training. Every rank evaluates its slice of ``dataset`` with the full model (gathered under ZeRO-3 by
    TRL's ``unwrap_model_for_generation``); the counts are gathered, so all ranks log the same point."""

    def __init__(self, trainer, dataset, every: int, budget: BudgetCallback | None = None, max_new_tokens: int = 256,
                 batch_size: int = 64):
        self.trainer, self.dataset, self.every, self.budget = trainer, dataset, every, budget
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        if budget is not None:
            budget.curve = self
        self.points: list[dict] = []
        self._last_step = None
        self.start = None  # this launch's start
        self.offset, self.eval_seconds_before = 0.0, 0.0  # training and curve seconds of the run before a resume
        self.eval_seconds_here = 0.0  # seconds of curve evaluations in this launch

    @property
    def eval_seconds(self) -> float:
        """Seconds of curve evaluations over the whole run (resumes included)."""
        return self.eval_seconds_before + self.eval_seconds_here

    def _evaluate(self, state):
        from trl.models import unwrap_model_for_generation

        from trl_ext.eval import evaluate

        if state.global_step == self._last_step:
            return
        self._last_step = state.global_step
        t0 = time.time()
        acc = self.trainer.accelerator
        model = self.trainer.model_wrapped if self.trainer.model_wrapped is not None else self.trainer.model
        shard = self.dataset.shard(acc.num_processes, acc.process_index, contiguous=True)
        was_training = model.training
        model.eval()
        try:
            with unwrap_model_for_generation(model, acc) as unwrapped:
                _, records = evaluate(unwrapped, self.trainer.processing_class, shard,
                                      max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, progress=False)
        finally:
            model.train(was_training)
        counts = [(sum(r["strict"][0] for r in records), sum(r["flexible"][0] for r in records), len(records))]
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            counts = gather_object(counts)
        n = sum(c[2] for c in counts)
        train_s = self.offset + (t0 - self.start) - self.eval_seconds_here
        self.eval_seconds_here += time.time() - t0
        point = {"curve/step": state.global_step, "curve/strict": sum(c[0] for c in counts) / n,
                 "curve/flexible": sum(c[1] for c in counts) / n, "curve/problems": n,
                 "curve/eval_s": self.eval_seconds, "step": state.global_step,
                 "curve/train_s": train_s}
        if self.budget is not None:
            point["samples"] = self.budget.samples
        self.points.append(point)
        state.log_history.append(point)

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.time()
        points = [h for h in state.log_history if "curve/step" in h]
        if points:  # a resumed run has its earlier points; its clocks go on from the last one
            self.offset, self.eval_seconds_before = points[-1]["curve/train_s"], points[-1]["curve/eval_s"]
        else:  # training time starts with the sampling of offline training data (DPO's pairs, RFT's samples)
            self.offset = self.budget.offline_seconds if self.budget is not None else 0.0
            self._evaluate(state)

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0:
            self._evaluate(state)

    def on_train_end(self, args, state, control, **kwargs):
        self._evaluate(state)
