"""DAPOTrainer: TRL's GRPOTrainer plus DAPO's dynamic sampling and overlong reward shaping.

Decoupled clip, token-level loss and overlong filtering are GRPOTrainer options that DAPOConfig only presets. What
this class adds wraps ``GRPOTrainer._generate_and_score_completions`` without copying it:

1. generate and score the generation batch with the upstream method (one *round*);
2. gather the round's output from all processes and flag the prompt groups whose filter rewards vary
   (``trl_ext.core.dynamic_sampling.select_groups`` on the gathered rewards, identical on every rank);
3. while fewer groups are kept than the batch holds and rounds remain, draw fresh prompts from the training set
   (a stream seeded by ``(seed, global_step, micro-step, round)``, the same on every rank and reproducible after a
   resume)
   and run another round, sized to what is still missing at the keep rate measured so far;
4. take the first kept groups (or fill with zero-std groups on exhaustion), and hand every rank its slice, with
   ``num_items_in_batch`` recomputed over the kept tokens.

Every branch depends only on gathered data, so all ranks run the same number of rounds and the collectives inside
generation (gathers, ZeRO-3 parameter gathering, vLLM weight sync) always match: no rank can wait alone.
"""

from __future__ import annotations

import hashlib
import logging

import torch
from trl import GRPOTrainer

from trl_ext.core.dynamic_sampling import (
    choose_groups,
    concat_padded,
    group_granularity,
    merge_round_metric,
    plan_refill,
    reward_stats,
    rows_of_groups,
    select_groups,
    trim_padding,
)
from trl_ext.rewards.length import OVERLONG_REWARD_NAME, make_overlong_reward
from trl_ext.trainers.common import loss_mask, pad_and_gather
from trl_ext.trainers.dapo_config import DAPOConfig

logger = logging.getLogger(__name__)

# How each tensor of GRPOTrainer's rollout output is padded: (padding side, pad value); None = per-row (B,) tensor.
# An unknown key fails loudly instead of being re-assembled wrongly after an upstream change.
_PADDING = {
    "prompt_ids": ("left", "pad"),
    "prompt_mask": ("left", 0),
    "completion_ids": ("right", "pad"),
    "completion_mask": ("right", 0),
    "tool_mask": ("right", 1),
    "old_per_token_logps": ("right", 0.0),
    "ref_per_token_logps": ("right", 0.0),
    "sampling_per_token_logps": ("right", 0.0),
    "importance_sampling_ratio": ("right", 1.0),  # neutral: vespo sums log(ratio) over unmasked columns too
    "advantages": None,
}


class DAPOTrainer(GRPOTrainer):
    """GRPOTrainer with DAPO's dynamic sampling and overlong shaping; takes GRPOTrainer's arguments and a DAPOConfig.

    Example::

        from trl_ext import DAPOConfig, DAPOTrainer
        from trl_ext.rewards import accuracy_reward
        trainer = DAPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", reward_funcs=[accuracy_reward],
                              args=DAPOConfig(output_dir="out", num_generations=8), train_dataset=dataset)
        trainer.train()
    """

    _tag_names = ["trl", "trl-ext", "dapo"]

    def __init__(self, model, reward_funcs, args: DAPOConfig | None = None, **kwargs):
        if args is None:
            args = DAPOConfig(output_dir="dapo-output")
        if not isinstance(args, DAPOConfig):
            raise TypeError(f"DAPOTrainer needs a DAPOConfig, got {type(args).__name__}")
        reward_funcs = list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
        if args.overlong_buffer_len > 0:
            reward_funcs.append(
                make_overlong_reward(args.max_completion_length, args.overlong_buffer_len, args.overlong_penalty_factor)
            )
            if args.reward_weights is not None and len(args.reward_weights) == len(reward_funcs) - 1:
                args.reward_weights = [*args.reward_weights, 1.0]  # the penalty factor already sets its scale
        train_dataset = kwargs.get("train_dataset")
        if args.dynamic_sampling and train_dataset is not None and not hasattr(train_dataset, "__len__"):
            raise ValueError(
                f"dynamic_sampling=True draws refill prompts by index from the training set, and a streamed "
                f"{type(train_dataset).__name__} (IterableDataset) has no index: pass a map-style datasets.Dataset "
                "(e.g. datasets.load_dataset(..., streaming=False)) or set dynamic_sampling=False."
            )
        super().__init__(model=model, reward_funcs=reward_funcs, args=args, **kwargs)

        names = list(self.reward_func_names)
        wanted = args.dynamic_sampling_reward_funcs or [n for n in names if n != OVERLONG_REWARD_NAME] or names
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            raise ValueError(f"dynamic_sampling_reward_funcs names {unknown}, but the reward functions are {names}")
        self._filter_columns = [names.index(n) for n in wanted]
        self._gathered_rewards = None

    # Upstream computes and gathers the rewards inside the rollout; keep the gathered copy for the group filter.
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = rewards_per_func
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        if not (self.model.training and self.args.dynamic_sampling):
            return super()._generate_and_score_completions(inputs)
        if any(k in inputs[0] for k in ("image", "images")):
            raise NotImplementedError("DAPOTrainer's dynamic sampling does not support image inputs yet")

        group_size = self.num_generations
        rows_local = len(inputs)
        target = rows_local * self.accelerator.num_processes // group_size  # groups in one generation batch
        metrics = self._metrics["train"]
        logged_before = {name: len(values) for name, values in metrics.items()}
        outputs, flags, round_rewards, generated, kept = self._generate_rounds(inputs, target)
        rounds = len(outputs)

        all_flags = torch.cat(flags)
        fill = self.args.dynamic_sampling_on_exhaustion == "fill"
        if kept < target and not fill:
            raise RuntimeError(
                f"dynamic sampling kept {kept} of the {target} prompt groups a batch needs after {rounds} rounds "
                f"({generated} groups generated, keep rate {kept / generated:.3f}). Raise "
                "dynamic_sampling_max_rounds, set dynamic_sampling_on_exhaustion='fill', or make the task less "
                "one-sided (every group all-correct or all-wrong)."
            )
        groups, filled = choose_groups(all_flags, target, fill)
        if filled and self.accelerator.is_main_process:
            logger.warning(
                "dynamic sampling: %d rounds kept %d of %d groups; filled the batch with %d zero-std groups",
                rounds, kept, target, filled,
            )  # fmt: skip
        rows = rows_of_groups(groups, group_size)
        batch = self._assemble(outputs, rows.to(self.accelerator.device), rows_local)

        all_rewards = torch.cat(round_rewards)
        self._merge_round_metrics(logged_before, [r.size(0) for r in round_rewards], all_rewards)
        step = {"trained_reward_mean": reward_stats(all_rewards[rows], self.reward_weights.cpu(), [])["reward"],
                "generation_rounds": float(rounds), "kept_group_frac": kept / generated,
                "filled_zero_std_groups": float(filled), "generated_groups_per_trained_group": generated / target}
        for name, value in step.items():
            metrics[f"dapo/{name}"].append(value)
        return batch

    def _generate_rounds(self, inputs, target: int):
        """Upstream's rollout, round after round (the first on ``inputs``, refills on fresh prompts sized to the keep
        rate so far) until ``target`` groups are kept or ``dynamic_sampling_max_rounds`` is reached. Returns each
        round's gathered output, group keep flags and gathered rewards, and the groups generated and kept."""
        group_size, max_rounds = self.num_generations, self.args.dynamic_sampling_max_rounds
        granularity = group_granularity(group_size, self.accelerator.num_processes)
        outputs, flags, round_rewards = [], [], []
        generated, kept = 0, 0
        round_inputs = inputs
        while True:
            out = super()._generate_and_score_completions(round_inputs)
            outputs.append(self._gather_output(out))
            round_rewards.append(self._gathered_rewards.cpu())
            round_flags = select_groups(self._gathered_rewards[:, self._filter_columns].cpu(), group_size,
                                        self.reward_weights[self._filter_columns].cpu())
            flags.append(round_flags)
            generated += round_flags.numel()
            kept += int(round_flags.sum())
            if kept >= target or (max_rounds > 0 and len(outputs) >= max_rounds):
                return outputs, flags, round_rewards, generated, kept
            n_groups = plan_refill(target - kept, kept / generated, granularity, target)
            round_inputs = self._refill_inputs(n_groups, len(outputs))

    def _merge_round_metrics(self, logged_before: dict[str, int], round_rows: list[int], rewards: torch.Tensor):
        """Upstream logs its rollout metrics (``reward``, ``frac_reward_zero_std``, ``completions/*``, ...) once per
        round; make them one value per step over everything generated: row-weighted (``merge_round_metric``), and
        the reward statistics recomputed exactly from all rounds' gathered rewards (``reward_stats``)."""
        if len(round_rows) < 2:
            return
        metrics = self._metrics["train"]
        for name, values in metrics.items():
            start = logged_before.get(name, 0)
            if len(values) - start == len(round_rows):
                values[start:] = [merge_round_metric(name, values[start:], round_rows)]
        for name, value in reward_stats(rewards, self.reward_weights.cpu(), list(self.reward_func_names)).items():
            if name in metrics and len(metrics[name]) > logged_before.get(name, 0):
                metrics[name][-1] = value

    def _refill_inputs(self, num_groups: int, round_index: int) -> list[dict]:
        """This rank's rows of a refill round: ``num_groups`` fresh prompts, each repeated ``num_generations`` times.

        The prompts come from a generator seeded by (seed, global step, micro-step, round): identical on every
        rank, different for each generation of a step (several when ``steps_per_generation x num_iterations`` is
        below ``gradient_accumulation_steps``), and the same again when a run resumes from a checkpoint at this step
        (a resume starts at micro-step 0 of a step).
        """
        micro_step = self._step % self.current_gradient_accumulation_steps
        key = f"{self.args.seed}-{self.state.global_step}-{micro_step}-{round_index}".encode()
        generator = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(key).digest()[:8], "big") >> 1)
        dataset = self.train_dataset
        picks = torch.randint(len(dataset), (num_groups,), generator=generator).tolist()
        rows = [dataset[i] for i in picks for _ in range(self.num_generations)]
        per_rank = len(rows) // self.accelerator.num_processes
        start = self.accelerator.process_index * per_rank
        return rows[start : start + per_rank]

    def _gather_output(self, out: dict) -> dict:
        """All processes' rows of one round's rollout output, padded to a common width (same on every rank)."""
        unknown = sorted(set(out) - set(_PADDING) - {"num_items_in_batch"})
        if unknown:
            raise NotImplementedError(
                f"DAPOTrainer cannot re-assemble rollout fields {unknown} (new in this TRL version?); "
                "set dynamic_sampling=False or pin trl to the tested version"
            )
        pad_id = self._tokenizer.pad_token_id
        gathered = {}
        for key, spec in _PADDING.items():
            if key not in out:
                continue
            side, value = spec if spec is not None else ("right", 0)  # (B,) tensors are gathered as they are
            value = pad_id if value == "pad" else value
            gathered[key] = pad_and_gather(self.accelerator, out[key], value, pad_first=side == "left")
        return gathered

    def _assemble(self, outputs: list[dict], rows: torch.LongTensor, rows_local: int) -> dict:
        """Select ``rows`` from the concatenated rounds and return this rank's slice as a rollout output dict."""
        pad_id = self._tokenizer.pad_token_id
        start = self.accelerator.process_index * rows_local
        local_rows = rows[start : start + rows_local]
        batch = {}
        for key, spec in _PADDING.items():
            if key not in outputs[0]:
                continue
            side, value = spec if spec is not None else ("right", 0)
            value = pad_id if value == "pad" else value
            batch[key] = concat_padded([o[key] for o in outputs], value, side)
        num_items_in_batch = loss_mask(batch)[rows].sum()  # over the whole kept batch, as upstream's gathered sum
        batch = {key: tensor[local_rows] for key, tensor in batch.items()}
        # Rows from different rounds may leave columns that are padding everywhere in this slice: drop them.
        masks = {"left": batch["prompt_mask"], "right": batch["completion_mask"]}
        for key, spec in _PADDING.items():
            if spec is not None and key in batch and batch[key].dim() >= 2:
                mask = masks[spec[0]]
                if batch[key].size(1) == mask.size(1):  # (B, 1) sequence-level ratios stay as they are
                    batch[key] = trim_padding(batch[key], mask, spec[0])
        batch["num_items_in_batch"] = num_items_in_batch
        return batch
