"""PPO math for language models as pure functions of tensors, masks and numbers (no config objects).

Conventions: ``B`` is the number of completions, ``T`` the padded completion length. ``mask`` is a (B, T) tensor of
0/1 (any dtype) marking the valid completion tokens; it may be right-padded (TRL's layout), left-padded, or have
holes (e.g. tool-output tokens masked out of the loss). Masked positions are *skipped*: they are not time steps of
the MDP. A row with no valid token (an empty or fully masked completion) yields zeros everywhere. Means over valid
tokens are ``trl_ext.core.masked.masked_mean`` (re-exported here with ``masked_var``).

References: PPO (Schulman et al. 2017, arXiv 1707.06347), GAE (Schulman et al. 2015, arXiv 1506.02438),
KL-shaped per-token rewards and the adaptive KL controller (Ziegler et al. 2019, arXiv 1909.08593; Ouyang et al.
2022, arXiv 2203.02155), k3 KL estimator (Schulman 2020, "Approximating KL divergence").
"""

from __future__ import annotations

import math

import torch

from trl_ext.core.masked import masked_mean, masked_var

__all__ = [
    "AdaptiveKLController",
    "adaptive_kl_update",
    "explained_variance",
    "gae",
    "kl_penalty",
    "masked_mean",
    "masked_var",
    "token_level_rewards",
    "value_loss",
    "whiten",
]


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Advantage Estimation over the valid tokens of each row (Schulman et al. 2015, eq. 16).

    For the valid tokens ``t_1 < ... < t_n`` of a row, with ``V(t_{n+1}) = 0`` (the episode ends after the last
    valid token)::

        delta_k = r(t_k) + gamma * V(t_{k+1}) - V(t_k)
        A(t_k)  = delta_k + gamma * lam * A(t_{k+1})
        R(t_k)  = A(t_k) + V(t_k)

    Masked positions are skipped, not treated as steps: the "next value" of a valid token is the value of the next
    *valid* token, and rewards/values at masked positions are ignored.

    Args:
        rewards: (B, T) per-token rewards.
        values: (B, T) critic values V(s_t) of the state before each token.
        mask: (B, T) 1 for valid tokens.
        gamma: discount factor in [0, 1].
        lam: GAE lambda in [0, 1] (1 = Monte-Carlo returns minus values, 0 = one-step TD).

    Returns:
        ``(advantages, returns)``, both (B, T), computed before any whitening; 0 at masked positions.
    """
    mask_b = mask.bool()
    rewards = rewards.detach().float()
    values = values.detach().float()
    advantages = torch.zeros_like(values)
    next_value = torch.zeros_like(values[:, 0]) if values.size(1) else values.new_zeros(values.size(0))
    last_gae = torch.zeros_like(next_value)
    for t in reversed(range(values.size(1))):
        valid = mask_b[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        gae_t = delta + gamma * lam * last_gae
        advantages[:, t] = torch.where(valid, gae_t, torch.zeros_like(gae_t))
        next_value = torch.where(valid, values[:, t], next_value)
        last_gae = torch.where(valid, gae_t, last_gae)
    returns = torch.where(mask_b, advantages + values, torch.zeros_like(values))
    return advantages, returns


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss of PPO (Schulman et al. 2017, sec. 5; as in OpenAI baselines ppo2 and Ouyang et al. 2022).

    ``V_clip = old_values + clip(values - old_values, -c, c)``;
    ``loss = 0.5 * token_mean(max((values - R)^2, (V_clip - R)^2))`` over the valid tokens of the batch.

    Args:
        values: (B, T) current critic values (with gradient).
        old_values: (B, T) critic values at rollout time.
        returns: (B, T) GAE returns (targets).
        mask: (B, T) 1 for valid tokens.
        cliprange_value: ``c`` > 0.

    Returns:
        ``(loss, clipfrac)``: scalar loss, and the fraction of valid tokens where the clipped term was chosen.
    """
    values_clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (values_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(unclipped, clipped), mask)
    # The clipped term only differs when |values - old_values| > c (avoids counting float round-off as clipping).
    active = ((values - old_values).abs() > cliprange_value) & (clipped > unclipped)
    clipfrac = masked_mean(active.to(values.dtype), mask).detach()
    return loss, clipfrac


K3_LOG_RATIO_BOUND = 20.0  # verl core_algos.kl_penalty "low_var_kl": clamp of the log-ratio before exp
K3_BOUND = 10.0  # and of the estimate


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi (Schulman 2020).

    ``k1 = logp - ref_logp`` (unbiased, can be negative); ``k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1``
    (unbiased, always >= 0, lower variance). k3 grows exponentially in ``ref_logp - logp``, so as verl's
    low-variance KL it is computed from the log-ratio clamped to [-20, 20] and the result clamped to [-10, 10]: one
    token the reference finds very unlikely cannot swamp the sequence's reward.

    Args:
        logp: (B, T) log-probs of the sampled tokens under the policy that sampled them.
        ref_logp: (B, T) log-probs under the reference policy.
        estimator: ``"k1"`` or ``"k3"``.

    Returns:
        (B, T) per-token KL estimate (not masked).
    """
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        x = log_ratio.clamp(-K3_LOG_RATIO_BOUND, K3_LOG_RATIO_BOUND)
        return (torch.exp(-x) + x - 1.0).clamp(-K3_BOUND, K3_BOUND)
    raise ValueError(f"Unknown KL estimator {estimator!r}: use 'k1' or 'k3'.")


def token_level_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """KL-shaped per-token rewards (Ziegler et al. 2019, eq. 2; Ouyang et al. 2022, eq. 2).

    ``r_t = -kl_coef * kl_t`` on every valid token, plus the sequence score on the *last valid* token of the row.
    A row without valid tokens gets no reward.

    Args:
        scores: (B,) sequence-level scores (e.g. the weighted sum of the reward functions).
        kl: (B, T) per-token KL estimate (see ``kl_penalty``).
        mask: (B, T) 1 for valid tokens.
        kl_coef: coefficient of the in-reward KL penalty.

    Returns:
        (B, T) rewards, 0 at masked positions.
    """
    mask_f = mask.to(kl.dtype)
    rewards = -kl_coef * kl * mask_f
    T = mask.size(1)
    positions = torch.arange(T, device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values  # (B,)
    has_token = last >= 0
    rows = torch.arange(mask.size(0), device=mask.device)[has_token]
    rewards = rewards.clone()
    rewards[rows, last[has_token]] += scores.to(rewards.dtype)[has_token]
    return rewards


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise ``values`` to unit variance over the valid tokens: ``(x - mean) / sqrt(var + eps)``.

    Mean and (unbiased) variance are taken over all valid tokens of the batch. With ``shift_mean=False`` the mean
    is added back (only the scale changes). Masked positions are set to 0.

    Args:
        values: (B, T).
        mask: (B, T) 1 for valid tokens.
        shift_mean: whether the result has zero mean.

    Returns:
        (B, T) whitened values.
    """
    mean = masked_mean(values, mask)
    var = masked_var(values, mask)
    out = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(out.dtype)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - Var[R - V] / Var[R]`` over the valid tokens (1 = perfect critic, 0 = no better than a constant).

    Args:
        values: (B, T) predictions; returns: (B, T) targets; mask: (B, T).

    Returns:
        Scalar tensor; NaN when the returns have zero variance.
    """
    var_r = masked_var(returns, mask)
    var_res = masked_var(returns - values, mask)
    return torch.where(var_r > 0, 1.0 - var_res / var_r.clamp(min=1e-12), torch.full_like(var_r, math.nan))


def mean_token_kl(kl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The KL the adaptive controller tracks: each sequence's mean KL per valid token, averaged over the sequences
    that have a valid token (verl: ``masked_mean(kld, mask, axis=-1).mean()``; its adaptive target 0.1 is in this
    unit). A sum over tokens instead would be about ``length`` times larger and drive ``kl_coef`` up, not down.

    Args:
        kl: (B, T) per-token KL estimates. mask: (B, T) 1 for valid tokens.

    Returns:
        Scalar tensor (0 when no row has a valid token).
    """
    rows = mask.sum(dim=-1) > 0
    if not rows.any():
        return kl.new_zeros(())
    return masked_mean(kl, mask, dim=-1)[rows].mean()


def adaptive_kl_update(kl_coef: float, current_kl: float, target: float, horizon: float, n_steps: int) -> float:
    """One update of the adaptive KL controller (Ziegler et al. 2019, sec. 2.2).

    ``e = clip(current_kl / target - 1, -0.2, 0.2)``; ``kl_coef <- kl_coef * (1 + e * n_steps / horizon)``.
    ``current_kl`` is the per-token mean KL (``mean_token_kl``: the unit of verl's target 0.1), ``n_steps`` the
    number of sequences the estimate came from.
    """
    error = min(max(current_kl / target - 1.0, -0.2), 0.2)
    return kl_coef * (1.0 + error * n_steps / horizon)


class AdaptiveKLController:
    """Stateful wrapper of ``adaptive_kl_update``; ``target=None`` gives a fixed coefficient."""

    def __init__(self, kl_coef: float, target: float | None = None, horizon: float = 10000):
        self.value = float(kl_coef)
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        if self.target is not None and math.isfinite(current_kl):
            self.value = adaptive_kl_update(self.value, current_kl, self.target, self.horizon, n_steps)
        return self.value
