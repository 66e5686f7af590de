"""Helpers shared by the trainers and configs of ``trl_ext.trainers``; each is written once, here.

* ``loss_mask(batch)``: the completion tokens that count in a loss, from a GRPOTrainer rollout / training batch.
* ``model_inputs(batch)``: the policy's / critic's forward inputs, prompt and completion side by side.
* ``pad_and_gather(accelerator, tensor)``: all processes' rows of a tensor whose width differs between processes.
* ``config_error(...)``: the ValueError every trl_ext config raises; it names the field(s), the value(s) given and
  the fix.

Tensor layout (TRL's): a batch dict holds (B, T) tensors, prompts left-padded, completions right-padded, and (B,)
per-row tensors; B is the number of rows on this process.
"""

from __future__ import annotations

import torch
from accelerate.utils import gather


def loss_mask(batch: dict) -> torch.Tensor:
    """``completion_mask``, times ``tool_mask`` when TRL's tool calling added one (tool-output tokens are part of the
    completion but were not sampled from the policy), as TRL's own loss masks them. Same dtype as the masks."""
    mask = batch["completion_mask"]
    return mask * batch["tool_mask"] if "tool_mask" in batch else mask


def model_inputs(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` of prompt + completion, (B, P + T): what TRL feeds the policy for log-probs."""
    input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    return input_ids, attention_mask


def pad_and_gather(accelerator, tensor: torch.Tensor, pad_index=0, pad_first: bool = False) -> torch.Tensor:
    """Gather ``tensor`` from all processes, dim 1 first padded to the widest process's with ``pad_index`` (at the
    start when ``pad_first``: left-padded prompts). A 1-D tensor is gathered as it is. Every process must call it
    (two collectives: the sizes, then the data)."""
    return gather(accelerator.pad_across_processes(tensor, dim=1, pad_index=pad_index, pad_first=pad_first))


def config_error(requirement: str, fix: str, reason: str = "", **given) -> ValueError:
    """The ValueError of a config check: ``"<requirement> (got <field>=<value>, ...)[: <reason>]. <fix>"``.

    ``requirement`` names the field(s) and what they must be (``"gamma must be in [0, 1]"``); ``given`` holds the
    values received; ``reason`` (optional) says why; ``fix`` says what to set instead. Use ``raise config_error(...)``.
    """
    got = ", ".join(f"{name}={value!r}" for name, value in given.items())
    return ValueError(f"{requirement} (got {got}){': ' + reason if reason else ''}. {fix}")
