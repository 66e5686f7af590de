"""DAPO dynamic sampling: the group filter, refill-round sizing and batch re-assembly, as pure tensor functions.

DAPO (Yu et al. 2025, arXiv 2503.14476, eq. 11) trains only on prompt groups whose rewards are not all equal:

    0 < |{o_i : is_equivalent(a, o_i)}| < G

because a group whose G completions all score the same has zero advantage everywhere and contributes no gradient,
only noise in the token-mean normaliser. Filtered groups are replaced by drawing more prompts and generating again.

Layout conventions: a batch holds ``N = num_groups * G`` rows, the G completions of a group in consecutive rows
(the order of TRL's ``RepeatSampler``). Nothing here knows about processes or configs.
"""

from __future__ import annotations

import math

import torch


def select_groups(rewards: torch.Tensor, group_size: int, weights: torch.Tensor | None = None) -> torch.BoolTensor:
    """One flag per group: True when the group gets a non-zero advantage (it carries a learning signal).

    What produces the advantage is the weighted sum ``s_i = sum_k w_k r_ik`` of the reward columns (TRL's
    ``nansum``: a NaN entry, an unscorable sample of one function, adds nothing). A row whose columns are all NaN
    was scored by no function: it is left out. A group is kept when the ``s_i`` of its remaining rows are not all
    equal; a group with fewer than two scored rows is not kept. So a column with weight 0 cannot keep a group, nor
    can a NaN row beside equal rewards.

    Args:
        rewards: ``(N,)`` or ``(N, K)`` rewards, ``N = num_groups * group_size``.
        group_size: G, completions per prompt.
        weights: ``(K,)`` reward weights (default: all 1).

    Returns:
        ``(num_groups,)`` bool tensor.
    """
    if rewards.dim() == 1:
        rewards = rewards.unsqueeze(1)
    n, k = rewards.shape
    if group_size < 1 or n % group_size != 0:
        raise ValueError(f"{n} rows cannot be split into groups of {group_size}")
    weights = torch.ones(k, dtype=rewards.dtype) if weights is None else weights.to(rewards.dtype).reshape(k)
    scored = ~torch.isnan(rewards).all(dim=1)
    total = (rewards * weights).nansum(dim=1).reshape(n // group_size, group_size)
    scored = scored.reshape(n // group_size, group_size)
    inf = torch.tensor(float("inf"), dtype=total.dtype)
    high = torch.where(scored, total, -inf).amax(dim=1)
    low = torch.where(scored, total, inf).amin(dim=1)
    return (scored.sum(dim=1) >= 2) & (high > low)


def group_granularity(group_size: int, num_processes: int) -> int:
    """Smallest number of groups whose rows split evenly over ``num_processes`` (every rank must generate the same
    number of rows, or the gathers inside generation would not match): ``W / gcd(G, W)``."""
    return num_processes // math.gcd(group_size, num_processes)


def plan_refill(missing_groups: int, keep_rate: float, granularity: int, max_groups: int) -> int:
    """Number of groups to generate in the next refill round.

    verl generates a full batch per round and throws away what it does not need. Here a round is sized to what is
    still missing given the keep rate measured so far, ``ceil(missing / keep_rate)``, rounded up to the process
    granularity and capped at ``max_groups`` (one generation batch, the memory the user sized the run for). With no
    estimate yet (``keep_rate <= 0``) the round is a full batch.
    """
    if missing_groups <= 0:
        return 0
    wanted = max_groups if keep_rate <= 0 else math.ceil(missing_groups / keep_rate - 1e-9)
    wanted = min(max(wanted, 1), max_groups)
    # max_groups (one generation batch) is itself a multiple of the granularity, so rounding up never exceeds it.
    return math.ceil(wanted / granularity) * granularity


def choose_groups(kept: torch.BoolTensor, target: int, fill: bool) -> tuple[torch.LongTensor, int]:
    """Indices of the groups to train on, in generation order, and how many zero-std groups filled the batch.

    The first ``target`` kept groups are used (surplus kept groups are dropped). If fewer than ``target`` were kept
    and ``fill`` is set, the batch is completed with the earliest filtered (all-equal) groups.
    """
    kept_idx = torch.nonzero(kept, as_tuple=False).flatten()
    if kept_idx.numel() >= target or not fill:
        return kept_idx[:target], 0
    missing = target - kept_idx.numel()
    filler = torch.nonzero(~kept, as_tuple=False).flatten()[:missing]
    if filler.numel() < missing:
        raise ValueError(f"only {kept.numel()} groups were generated, {target} are needed")
    return torch.sort(torch.cat([kept_idx, filler])).values, missing


def rows_of_groups(groups: torch.LongTensor, group_size: int) -> torch.LongTensor:
    """Row indices of the given groups: group g owns rows ``g*G .. g*G+G-1``."""
    return (groups.unsqueeze(1) * group_size + torch.arange(group_size, device=groups.device)).flatten()


def pad_to_width(tensor: torch.Tensor, width: int, value: float, side: str) -> torch.Tensor:
    """Pad dim 1 of a ``(B, T, ...)`` tensor to ``width`` with ``value`` on the ``"left"`` or ``"right"``."""
    extra = width - tensor.size(1)
    if extra < 0:
        raise ValueError(f"cannot pad width {tensor.size(1)} down to {width}")
    if extra == 0:
        return tensor
    pad = tensor.new_full((tensor.size(0), extra, *tensor.shape[2:]), value)
    return torch.cat([pad, tensor] if side == "left" else [tensor, pad], dim=1)


def concat_padded(tensors: list[torch.Tensor], value: float, side: str) -> torch.Tensor:
    """Concatenate ``(B_i, T_i)`` tensors along dim 0 after padding them to a common width."""
    if tensors[0].dim() < 2:
        return torch.cat(tensors)
    width = max(t.size(1) for t in tensors)
    return torch.cat([pad_to_width(t, width, value, side) for t in tensors])


def trim_padding(tensor: torch.Tensor, mask: torch.Tensor, side: str) -> torch.Tensor:
    """Drop columns that are padding in every row (``mask`` 0), from the ``side`` where padding sits.

    After selecting rows from several rounds the batch may be wider than its longest row; trimming keeps the
    training forward pass as cheap as TRL's own batches.
    """
    used = mask.bool().any(dim=0)
    if not used.any():
        return tensor[:, :1] if side == "right" else tensor[:, -1:]
    idx = torch.nonzero(used).flatten()
    return tensor[:, : int(idx[-1]) + 1] if side == "right" else tensor[:, int(idx[0]) :]


def merge_round_metric(name: str, values: list[float], rows: list[int]) -> float:
    """One optimizer step's value of a metric that the upstream rollout logs once per generation round.

    A mean over what was generated weighs each round by its rows (a one-group refill must not weigh as much as the
    full first round): ``sum_r rows_r * v_r / sum_r rows_r``, rounds whose value is NaN (e.g. no terminated
    completion) left out. Extremes stay extremes: a name whose last part contains ``max`` (``completions/max_length``)
    takes the largest value, one containing ``min`` the smallest.
    """
    pairs = [(v, n) for v, n in zip(values, rows) if not math.isnan(v)]
    if not pairs:
        return math.nan
    last = name.rsplit("/", 1)[-1]
    if "max" in last:
        return max(v for v, _ in pairs)
    if "min" in last:
        return min(v for v, _ in pairs)
    return sum(v * n for v, n in pairs) / sum(n for _, n in pairs)


def _nanstd(x: torch.Tensor) -> float:
    """Unbiased standard deviation of the non-NaN entries (NaN with fewer than two), as TRL's ``nanstd``."""
    x = x[~torch.isnan(x)]
    return float(x.std()) if x.numel() > 1 else math.nan


def reward_stats(rewards: torch.Tensor, weights: torch.Tensor, names: list[str]) -> dict[str, float]:
    """TRL's reward metrics over all generated rows of a step (every round): ``reward`` / ``reward_std`` of the
    weighted sum over the scored rows (rows where every function returned None left out), and each function's
    ``rewards/<name>/mean`` / ``std`` over the rows it scored. ``rewards`` is ``(N, K)``, ``weights`` ``(K,)``."""
    scored = ~torch.isnan(rewards).all(dim=1)
    total = (rewards * weights.to(rewards.dtype)).nansum(dim=1)[scored]
    stats = {"reward": float(total.mean()) if total.numel() else math.nan, "reward_std": _nanstd(total)}
    for k, name in enumerate(names):
        column = rewards[:, k]
        valid = column[~torch.isnan(column)]
        stats[f"rewards/{name}/mean"] = float(valid.mean()) if valid.numel() else math.nan
        stats[f"rewards/{name}/std"] = _nanstd(column)
    return stats
