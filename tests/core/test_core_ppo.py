"""The pure PPO functions of trl_ext.core.ppo against straightforward per-token Python loops."""

import math

import pytest
import torch

from trl_ext.core.ppo import (
    AdaptiveKLController,
    adaptive_kl_update,
    explained_variance,
    gae,
    kl_penalty,
    mean_token_kl,
    token_level_rewards,
    value_loss,
    whiten,
)


def random_mask(B, T, layout, gen):
    """(B, T) 0/1 mask; row 0 is always empty. 'right'/'left' padding, or 'holes' (random masked tokens)."""
    mask = torch.zeros(B, T)
    for b in range(1, B):
        n = int(torch.randint(0, T + 1, (1,), generator=gen))
        if layout == "right":
            mask[b, :n] = 1
        elif layout == "left":
            mask[b, T - n :] = 1
        else:
            mask[b] = (torch.rand(T, generator=gen) < 0.6).float()
    return mask


LAYOUTS = ["right", "left", "holes"]
SEEDS = [0, 1, 2]


def valid_positions(mask, b):
    return [t for t in range(mask.size(1)) if mask[b, t] > 0]


# --- references -----------------------------------------------------------------------------------------------


def ref_gae(rewards, values, mask, gamma, lam):
    B, T = rewards.shape
    adv = [[0.0] * T for _ in range(B)]
    ret = [[0.0] * T for _ in range(B)]
    for b in range(B):
        pos = valid_positions(mask, b)
        running = 0.0
        for k in reversed(range(len(pos))):
            t = pos[k]
            next_v = values[b, pos[k + 1]].item() if k + 1 < len(pos) else 0.0
            delta = rewards[b, t].item() + gamma * next_v - values[b, t].item()
            running = delta + gamma * lam * running
            adv[b][t] = running
            ret[b][t] = running + values[b, t].item()
    return torch.tensor(adv), torch.tensor(ret)


def ref_value_loss(values, old, returns, mask, c):
    losses, clipped_count = [], 0
    for b in range(values.size(0)):
        for t in valid_positions(mask, b):
            v, vo, r = values[b, t].item(), old[b, t].item(), returns[b, t].item()
            vc = vo + min(max(v - vo, -c), c)
            l1, l2 = (v - r) ** 2, (vc - r) ** 2
            losses.append(max(l1, l2))
            clipped_count += abs(v - vo) > c and l2 > l1
    if not losses:
        return 0.0, 0.0
    return 0.5 * sum(losses) / len(losses), clipped_count / len(losses)


def ref_mean_var(x, mask):
    xs = [x[b, t].item() for b in range(x.size(0)) for t in valid_positions(mask, b)]
    mean = sum(xs) / len(xs)
    var = sum((v - mean) ** 2 for v in xs) / (len(xs) - 1)
    return mean, var


# --- tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 1.0), (1.0, 0.0), (0.99, 0.5)])
def test_gae_matches_loop(layout, seed, gamma, lam):
    gen = torch.Generator().manual_seed(seed)
    B, T = 6, 9
    mask = random_mask(B, T, layout, gen)
    rewards = torch.randn(B, T, generator=gen)
    values = torch.randn(B, T, generator=gen)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    ref_adv, ref_ret = ref_gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, ref_adv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret, ref_ret, atol=1e-5, rtol=1e-5)
    # returns = advantages + values on valid tokens; everything is 0 elsewhere
    torch.testing.assert_close(ret * mask, (adv + values) * mask)
    assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()
    assert (adv[0] == 0).all()  # empty completion


def test_gae_ignores_values_and_rewards_at_masked_positions():
    gen = torch.Generator().manual_seed(3)
    mask = random_mask(5, 7, "holes", gen)
    rewards, values = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    noise = torch.randn(5, 7, generator=gen) * 100 * (1 - mask)
    a1, r1 = gae(rewards, values, mask, 1.0, 0.95)
    a2, r2 = gae(rewards + noise, values + noise, mask, 1.0, 0.95)
    torch.testing.assert_close(a1, a2)
    torch.testing.assert_close(r1, r2)


def test_gae_lambda_one_gamma_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.3, 0.1, 0.7, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    adv, ret = gae(rewards, values, mask, 1.0, 1.0)
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    torch.testing.assert_close(adv, torch.tensor([[0.7, 0.9, 0.3, 0.0]]))


def test_gae_zero_length():
    adv, ret = gae(torch.zeros(3, 0), torch.zeros(3, 0), torch.zeros(3, 0), 1.0, 0.95)
    assert adv.shape == (3, 0) and ret.shape == (3, 0)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("c", [0.05, 0.2, 10.0])
def test_value_loss_matches_loop(layout, seed, c):
    gen = torch.Generator().manual_seed(seed)
    B, T = 5, 8
    mask = random_mask(B, T, layout, gen)
    values = torch.randn(B, T, generator=gen, requires_grad=True)
    old = values.detach() + 0.3 * torch.randn(B, T, generator=gen)
    returns = torch.randn(B, T, generator=gen)
    loss, clipfrac = value_loss(values, old, returns, mask, c)
    ref_loss, ref_frac = ref_value_loss(values.detach(), old, returns, mask, c)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    assert clipfrac.item() == pytest.approx(ref_frac, abs=1e-6)
    loss.backward()
    assert (values.grad[mask == 0] == 0).all()


def test_value_loss_empty_batch_is_zero():
    v = torch.randn(2, 3, requires_grad=True)
    loss, frac = value_loss(v, v.detach(), torch.randn(2, 3), torch.zeros(2, 3), 0.2)
    assert loss.item() == 0.0 and frac.item() == 0.0


def test_kl_penalty_matches_loop():
    gen = torch.Generator().manual_seed(0)
    logp, ref = -torch.rand(3, 4, generator=gen) * 3, -torch.rand(3, 4, generator=gen) * 3
    k1, k3 = kl_penalty(logp, ref, "k1"), kl_penalty(logp, ref, "k3")
    for b in range(3):
        for t in range(4):
            lp, rp = logp[b, t].item(), ref[b, t].item()
            assert k1[b, t].item() == pytest.approx(lp - rp, abs=1e-6)
            assert k3[b, t].item() == pytest.approx(math.exp(rp - lp) - (rp - lp) - 1, abs=1e-5)
    assert (k3 >= 0).all()
    with pytest.raises(ValueError, match="k1"):
        kl_penalty(logp, ref, "k2")


def test_k3_kl_is_clamped():
    """K3 = exp(-x) + x - 1 explodes when the policy gives a token far more mass than the reference
    (kl_penalty([-20], [-1], "k3") was 1.8e8 and would swamp the reward). Clamped to [-10, 10] as verl's low-variance KL
    is; the log-ratio is bounded first, so no exp overflows to inf; inside the bound nothing changes."""
    out = kl_penalty(torch.tensor([-20.0, -1.0, 0.0, -300.0]), torch.tensor([-1.0, -20.0, -500.0, 0.0]), "k3")
    assert torch.isfinite(out).all()
    assert out[0].item() == 10.0  # 1.8e8 unclamped
    assert out[1].item() == 10.0  # exp(-19) + 19 - 1 = 18, clamped as well
    assert (out <= 10.0).all() and (out >= 0.0).all()
    moderate = kl_penalty(torch.tensor([-2.0]), torch.tensor([-1.0]), "k3")
    assert moderate.item() == pytest.approx(math.exp(1.0) - 1.0 - 1.0)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", SEEDS)
def test_token_level_rewards_matches_loop(layout, seed):
    gen = torch.Generator().manual_seed(seed)
    B, T = 6, 7
    mask = random_mask(B, T, layout, gen)
    scores, kl = torch.randn(B, generator=gen), torch.randn(B, T, generator=gen)
    rewards = token_level_rewards(scores, kl, mask, 0.1)
    expected = torch.zeros(B, T)
    for b in range(B):
        pos = valid_positions(mask, b)
        for t in pos:
            expected[b, t] = -0.1 * kl[b, t]
        if pos:
            expected[b, pos[-1]] += scores[b]
    torch.testing.assert_close(rewards, expected)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("seed", SEEDS)
def test_whiten_and_explained_variance_match_loop(layout, seed):
    gen = torch.Generator().manual_seed(seed)
    B, T = 6, 9
    mask = random_mask(B, T, layout, gen)
    x = torch.randn(B, T, generator=gen) * 3 + 2
    mean, var = ref_mean_var(x, mask)
    w = whiten(x, mask)
    w_noshift = whiten(x, mask, shift_mean=False)
    for b in range(B):
        for t in range(T):
            if mask[b, t]:
                assert w[b, t].item() == pytest.approx((x[b, t].item() - mean) / math.sqrt(var + 1e-8), abs=1e-5)
                assert w_noshift[b, t].item() == pytest.approx(
                    (x[b, t].item() - mean) / math.sqrt(var + 1e-8) + mean, abs=1e-5
                )
            else:
                assert w[b, t] == 0 and w_noshift[b, t] == 0
    returns = torch.randn(B, T, generator=gen)
    values = returns + 0.5 * torch.randn(B, T, generator=gen)
    _, var_r = ref_mean_var(returns, mask)
    _, var_res = ref_mean_var(returns - values, mask)
    assert explained_variance(values, returns, mask).item() == pytest.approx(1 - var_res / var_r, abs=1e-5)
    assert explained_variance(returns, returns, mask).item() == pytest.approx(1.0)


def test_explained_variance_constant_returns_is_nan():
    assert math.isnan(explained_variance(torch.randn(2, 3), torch.ones(2, 3), torch.ones(2, 3)).item())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_mean_token_kl_matches_loop(layout):
    """The controller's KL is a per-token mean per sequence, averaged over sequences (verl's unit for
    its target 0.1), not a sum over tokens. Loop reference; rows without valid tokens are left out."""
    gen = torch.Generator().manual_seed(3)
    mask = random_mask(5, 7, layout, gen)  # row 0 empty
    kl = torch.randn(mask.shape, generator=gen, dtype=torch.float64)
    per_row = []
    for b in range(mask.size(0)):
        n = int(mask[b].sum())
        if n:
            per_row.append(sum(kl[b, t].item() for t in range(mask.size(1)) if mask[b, t]) / n)
    expected = sum(per_row) / len(per_row) if per_row else 0.0
    assert mean_token_kl(kl, mask).item() == pytest.approx(expected, abs=1e-12)
    # Twice as long sequences with the same per-token KL: the same value (a sum would double).
    ones = torch.ones(2, 8, dtype=torch.float64)
    assert mean_token_kl(ones * 0.1, ones).item() == pytest.approx(
        mean_token_kl(ones[:, :4] * 0.1, ones[:, :4]).item())


def test_adaptive_kl_controller():
    # KL above target raises the coefficient, below lowers it; the error is clipped at +-0.2
    assert adaptive_kl_update(0.1, 0.2, target=0.1, horizon=100, n_steps=10) == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    assert adaptive_kl_update(0.1, 0.09, target=0.1, horizon=100, n_steps=10) == pytest.approx(0.1 * (1 - 0.01))
    assert adaptive_kl_update(0.1, 0.0, target=0.1, horizon=100, n_steps=10) == pytest.approx(0.1 * (1 - 0.02))
    ctl = AdaptiveKLController(0.05, target=1.0, horizon=10)
    values = [ctl.update(5.0, n_steps=1) for _ in range(3)]
    assert values == pytest.approx([0.05 * 1.02, 0.05 * 1.02**2, 0.05 * 1.02**3])
    fixed = AdaptiveKLController(0.05, target=None)
    assert fixed.update(100.0, 64) == 0.05
