"""GSPO math as pure tensor functions (Zheng et al. 2025, "Group Sequence Policy Optimization", arXiv 2507.18071).

Notation: ``B`` sequences (completions), ``T`` padded completion length, ``mask`` (B, T) is 1 on the valid completion
tokens (``trl_ext.core.masked``'s convention; its ``masked_mean`` takes every mean over them). ``logp`` are the current
policy's per-token log-probabilities, ``old_logp`` those of the policy that generated the rollout batch.

* Sequence-level importance ratio (paper Eq. 7): ``s_i = exp( (1/|y_i|) sum_t (logp_i,t - old_logp_i,t) )``.
* GSPO objective (Eq. 5): ``J = (1/G) sum_i min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i)``.
* GSPO-token (Eq. 13-14), for per-token advantages ``A_i,t``: ``s_i,t = sg[s_i] * pi(y_i,t) / sg[pi(y_i,t)]``; its value
  equals ``s_i`` on every token, its gradient is ``s_i * grad log pi(y_i,t)``, and the objective is the per-sequence token
  mean ``(1/G) sum_i (1/|y_i|) sum_t min(s_i,t A_i,t, clip(s_i,t) A_i,t)``. With ``A_i,t = A_i`` it equals GSPO in value
  and gradient.

The trainer feeds these weights through TRL's own loss; :func:`clipped_surrogate_loss` is the same objective written
out, for tests and for anyone who wants the loss without a trainer.
"""

from __future__ import annotations

import torch

from trl_ext.core.masked import masked_mean


def sequence_log_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``log s_i``: the length-normalised log importance ratio of each sequence (paper Eq. 7).

    Args:
        logp, old_logp: (B, T) per-token log-probabilities under the current and the rollout policy.
        mask: (B, T) 1 on valid completion tokens, 0 on padding.

    Returns:
        (B,) ``(1/|y_i|) sum_t mask_i,t (logp_i,t - old_logp_i,t)``; 0 for a sequence without valid tokens.
    """
    return masked_mean(logp - old_logp, mask, dim=-1)


def gspo_token_log_ratio(logp: torch.Tensor, old_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """GSPO-token log importance weights ``log s_i,t = sg[log s_i] + log pi(y_i,t) - sg[log pi(y_i,t)]`` (Eq. 13-14).

    Args:
        logp: (B, T) current per-token log-probabilities (carries the gradient).
        old_logp: (B, T) rollout-policy per-token log-probabilities.
        mask: (B, T) 1 on valid completion tokens.

    Returns:
        (B, T) log weights. Value: ``log s_i`` on every token of sequence ``i``. Gradient w.r.t. ``logp_i,t``: exactly 1
        (a token's weight moves only with its own log-probability), unlike the sequence ratio whose gradient spreads
        ``1/|y_i|`` over all tokens of the sequence.
    """
    seq = sequence_log_ratio(logp.detach(), old_logp, mask)
    return seq.unsqueeze(-1) + (logp - logp.detach())


def clipped_surrogate_loss(
    log_weights: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
) -> torch.Tensor:
    """Negative clipped surrogate, token mean per sequence, then mean over sequences (TRL's ``loss_type="grpo"``).

    Args:
        log_weights: (B, 1) sequence-level (GSPO) or (B, T) token-level (GSPO-token, PPO) log importance weights.
        advantages: (B,) per-sequence or (B, T) per-token advantages.
        mask: (B, T) valid completion tokens.
        epsilon_low, epsilon_high: clip range ``[1 - epsilon_low, 1 + epsilon_high]``.

    Returns:
        Scalar ``-(1/B) sum_i (1/|y_i|) sum_t min(w A, clip(w) A)``.
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    ratio = torch.exp(log_weights)
    clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    return masked_mean(per_token, mask, dim=-1).mean()


def sequence_clip_fractions(
    seq_log_ratio: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float,
    epsilon_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence clipped fractions: how much of each sequence the clip switches off, low and high side.

    A token is low-clipped when ``s_i < 1 - epsilon_low`` and its advantage is negative, high-clipped when
    ``s_i > 1 + epsilon_high`` and its advantage is positive (those are the tokens whose gradient the ``min`` removes).

    Args:
        seq_log_ratio: (B,) ``log s_i``.
        advantages: (B,) or (B, T).
        mask: (B, T) valid completion tokens.

    Returns:
        ``(low, high)``, each (B,): the share of the sequence's valid tokens that are clipped on that side. With
        per-sequence advantages (or per-token ones constant over each sequence) the values are exactly 0 or 1, so their
        mean over sequences is the fraction of clipped *sequences*.
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    ratio = torch.exp(seq_log_ratio).unsqueeze(-1)
    low = ((ratio < 1 - epsilon_low) & (advantages < 0)).to(seq_log_ratio.dtype)
    high = ((ratio > 1 + epsilon_high) & (advantages > 0)).to(seq_log_ratio.dtype)
    return masked_mean(low, mask, dim=-1), masked_mean(high, mask, dim=-1)
