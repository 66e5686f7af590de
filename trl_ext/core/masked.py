"""Masked reductions over (B, T) tensors: the one place every ``trl_ext.core`` module takes a mean over valid tokens.

Convention: ``mask`` has the shape of ``values`` (usually (B, T)) and holds 0/1 in any dtype, 1 marking a valid
position (a completion token that counts); it is cast to the dtype of ``values``. A reduction over no valid position
gives 0, never NaN: an empty or fully masked row contributes nothing.
"""

from __future__ import annotations

import torch

__all__ = ["masked_mean", "masked_var"]


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` is 1 (0 when there are none).

    ``dim=None``: one scalar over all valid positions (a token mean over the batch); ``dim=-1``: one mean per row.
    """
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1.0)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of ``values`` over the valid positions, with Bessel's correction if ``unbiased`` (0 if < 2 valid)."""
    mask = mask.to(values.dtype)
    n = mask.sum()
    mean = (values * mask).sum() / n.clamp(min=1.0)
    sq = (((values - mean) ** 2) * mask).sum()
    denom = (n - 1.0) if unbiased else n
    return torch.where(denom > 0, sq / denom.clamp(min=1.0), torch.zeros_like(sq))
