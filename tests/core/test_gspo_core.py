"""GSPO's pure functions (trl_ext.core.gspo) against slow, obvious loop references in float64."""

import math

import pytest
import torch

from trl_ext.core.gspo import (
    clipped_surrogate_loss,
    gspo_token_log_ratio,
    sequence_clip_fractions,
    sequence_log_ratio,
)

EPS_LOW, EPS_HIGH = 3e-4, 4e-4


# ----------------------------------------------------------------------------------------------------------------------
# Pure functions vs slow, obvious references (float64)
# ----------------------------------------------------------------------------------------------------------------------


def random_batch(seed, batch=5, length=7, scale=1e-3, max_len=None):
    """Per-token log-probs, old log-probs (close enough that some sequences clip at 3e-4/4e-4), lengths, mask."""
    gen = torch.Generator().manual_seed(seed)
    logp = -torch.rand(batch, length, generator=gen, dtype=torch.float64) * 3
    old = logp + torch.randn(batch, length, generator=gen, dtype=torch.float64) * scale
    lengths = torch.randint(1, (max_len or length) + 1, (batch,), generator=gen).tolist()
    mask = torch.zeros(batch, length, dtype=torch.float64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1.0
    advantages = torch.randn(batch, generator=gen, dtype=torch.float64)
    return logp, old, lengths, mask, advantages


def loop_sequence_gspo_loss(logp, old, lengths, advantages, eps_low, eps_high):
    """GSPO (paper Eq. 5 and 7) one sequence and one token at a time."""
    total = 0.0
    for i, n in enumerate(lengths):
        log_s = 0.0
        for t in range(n):
            log_s = log_s + (logp[i, t] - old[i, t])
        s = torch.exp(log_s / n)
        clipped = torch.clamp(s, 1 - eps_low, 1 + eps_high)
        total = total - torch.minimum(s * advantages[i], clipped * advantages[i])
    return total / len(lengths)


def loop_token_ppo_loss(logp, old, advantages, eps_low, eps_high):
    """Token-level PPO-clip for sequences of one token each."""
    total = 0.0
    for i in range(logp.shape[0]):
        r = torch.exp(logp[i, 0] - old[i, 0])
        total = total - torch.minimum(
            r * advantages[i, 0], torch.clamp(r, 1 - eps_low, 1 + eps_high) * advantages[i, 0]
        )
    return total / logp.shape[0]


def loss_and_grad(fn, logp):
    logp = logp.clone().requires_grad_(True)
    loss = fn(logp)
    (grad,) = torch.autograd.grad(loss, logp)
    return loss.detach(), grad


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("eps", [(EPS_LOW, EPS_HIGH), (0.2, 0.28)])
def test_gspo_token_with_constant_advantages_equals_sequence_gspo(seed, eps):
    logp, old, lengths, mask, adv = random_batch(seed)
    adv_tokens = adv.unsqueeze(-1).expand_as(logp)

    ref_loss, ref_grad = loss_and_grad(lambda lp: loop_sequence_gspo_loss(lp, old, lengths, adv, *eps), logp)
    tok_loss, tok_grad = loss_and_grad(
        lambda lp: clipped_surrogate_loss(gspo_token_log_ratio(lp, old, mask), adv_tokens, mask, *eps), logp
    )
    seq_loss, seq_grad = loss_and_grad(
        lambda lp: clipped_surrogate_loss(sequence_log_ratio(lp, old, mask).unsqueeze(-1), adv, mask, *eps), logp
    )
    for loss, grad in [(tok_loss, tok_grad), (seq_loss, seq_grad)]:
        assert (loss - ref_loss).abs().item() <= 1e-6
        assert (grad - ref_grad).abs().max().item() <= 1e-6
    assert ref_grad.abs().max() > 0  # not everything clipped
    assert (tok_grad * (1 - mask)).abs().max() == 0  # no gradient on padding


@pytest.mark.parametrize("seed", range(4))
def test_gspo_token_with_length_one_sequences_equals_token_ppo_clip(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    logp, old, _, mask, _ = random_batch(seed, batch=8, length=1)
    adv = torch.randn(8, 1, generator=gen, dtype=torch.float64)
    ref_loss, ref_grad = loss_and_grad(lambda lp: loop_token_ppo_loss(lp, old, adv, EPS_LOW, EPS_HIGH), logp)
    loss, grad = loss_and_grad(
        lambda lp: clipped_surrogate_loss(gspo_token_log_ratio(lp, old, mask), adv, mask, EPS_LOW, EPS_HIGH), logp
    )
    assert (loss - ref_loss).abs().item() <= 1e-6
    assert (grad - ref_grad).abs().max().item() <= 1e-6


@pytest.mark.parametrize("seed", range(4))
def test_gspo_token_gradient_with_per_token_advantages(seed):
    """d loss / d logp_i,t = -(1/B) (1/|y_i|) A_i,t s_i on unclipped tokens, 0 elsewhere (paper Eq. 14)."""
    logp, old, lengths, mask, _ = random_batch(seed)
    adv = torch.randn(logp.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    value = gspo_token_log_ratio(logp, old, mask)
    _, grad = loss_and_grad(
        lambda lp: clipped_surrogate_loss(gspo_token_log_ratio(lp, old, mask), adv, mask, EPS_LOW, EPS_HIGH), logp
    )
    expected = torch.zeros_like(logp)
    for i, n in enumerate(lengths):
        s = math.exp(sum((logp[i, t] - old[i, t]).item() for t in range(n)) / n)
        for t in range(n):
            assert value[i, t].item() == pytest.approx(math.log(s), abs=1e-12)
            a = adv[i, t].item()
            clipped = (s > 1 + EPS_HIGH and a > 0) or (s < 1 - EPS_LOW and a < 0)
            expected[i, t] = 0.0 if clipped else -a * s / n / len(lengths)
    assert (grad - expected).abs().max().item() <= 1e-9


def test_sequence_clip_fractions_on_crafted_batch():
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 0]]).double()
    log_s = torch.log(torch.tensor([1 - 1e-3, 1 + 1e-3, 1.0, 1 - 1e-3, 1 + 1e-3, 1 - 1e-3], dtype=torch.float64))
    adv = torch.tensor([-1.0, 1.0, 1.0, 1.0, -1.0, 0.0], dtype=torch.float64)
    low, high = sequence_clip_fractions(log_s, adv, mask, EPS_LOW, EPS_HIGH)
    assert low.tolist() == [1, 0, 0, 0, 0, 0]
    assert high.tolist() == [0, 1, 0, 0, 0, 0]
    # Per-token advantages: the share of the sequence's valid tokens that the clip switches off.
    adv_tok = torch.tensor([[-1.0, 1.0, -1.0, 5.0]]).double()
    low, high = sequence_clip_fractions(
        log_s[:1].fill_(math.log(0.9)), adv_tok, torch.tensor([[1.0, 1, 1, 0]]), 0.2, 0.2
    )
    assert low.tolist() == [0.0] and high.tolist() == [0.0]  # 0.9 is inside [0.8, 1.2]
    low, high = sequence_clip_fractions(
        log_s[:1].fill_(math.log(0.7)), adv_tok, torch.tensor([[1.0, 1, 1, 0]]), 0.2, 0.2
    )
    assert low.tolist() == [pytest.approx(2 / 3)] and high.tolist() == [0.0]
    # Sequence log ratio ignores padding.
    logp = torch.tensor([[0.0, -1.0, 5.0]]).double()
    assert sequence_log_ratio(logp, torch.zeros_like(logp), torch.tensor([[1.0, 1, 0]])).item() == -0.5
