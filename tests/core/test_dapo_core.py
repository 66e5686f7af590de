"""Pure dynamic-sampling logic against slow, obvious references."""

import math
import random

import pytest
import torch

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


def reference_select(rewards, group_size, weights=None):
    """A group is kept when the weighted reward sums of its scored rows (NaN entries add nothing; rows with every
    column NaN are left out) are not all equal."""
    rows = rewards.tolist()
    weights = weights or [1.0] * len(rows[0])
    sums = [None if all(math.isnan(v) for v in row) else sum(w * v for w, v in zip(weights, row) if not math.isnan(v))
            for row in rows]
    keep = []
    for g in range(0, len(rows), group_size):
        scored = [x for x in sums[g : g + group_size] if x is not None]
        keep.append(len(set(scored)) > 1)
    return keep


@pytest.mark.parametrize("seed", range(20))
def test_select_groups_matches_reference(seed):
    rng = random.Random(seed)
    group_size = rng.choice([2, 3, 4, 8])
    groups = rng.randint(1, 12)
    columns = rng.choice([1, 2, 3])
    values = [0.0, 1.0, -0.5, float("nan")]
    rewards = torch.tensor(
        [[rng.choice(values[: rng.randint(1, 4)]) for _ in range(columns)] for _ in range(groups * group_size)]
    )
    weights = [rng.choice([0.0, 0.5, 1.0, 2.0]) for _ in range(columns)]
    assert select_groups(rewards, group_size).tolist() == reference_select(rewards, group_size)
    assert select_groups(rewards, group_size, torch.tensor(weights)).tolist() == reference_select(
        rewards, group_size, weights)


def test_select_groups_crafted():
    nan = float("nan")
    rewards = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, nan, nan, nan, 2.0])
    assert select_groups(rewards, 2).tolist() == [False, True, False, False, False]
    # 1-D and (N, 1) agree.
    assert select_groups(rewards.unsqueeze(1), 2).tolist() == select_groups(rewards, 2).tolist()
    two = torch.tensor([[1.0, 0.0], [1.0, 0.5]])
    assert select_groups(two, 2).tolist() == [True]
    with pytest.raises(ValueError, match="groups of 3"):
        select_groups(torch.zeros(4), 3)


def test_select_groups_keeps_only_groups_with_an_advantage():
    """The filter used to keep groups that TRL then gives zero advantage."""
    nan = float("nan")
    # An unscorable row (NaN) beside equal rewards: no advantage among the scored rows.
    assert select_groups(torch.tensor([1.0, 1.0, nan, 1.0]), 4).tolist() == [False]
    # A column that varies but has weight 0 (e.g. a logged-only format reward).
    varying_unweighted = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert select_groups(varying_unweighted, 2, torch.tensor([1.0, 0.0])).tolist() == [False]
    assert select_groups(varying_unweighted, 2, torch.tensor([1.0, 0.5])).tolist() == [True]
    # Columns that cancel in the weighted sum give equal totals.
    assert select_groups(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 2).tolist() == [False]
    # One function unscorable on a row, the other scored: the row counts with what was scored.
    assert select_groups(torch.tensor([[1.0, nan], [1.0, 1.0]]), 2).tolist() == [True]


def test_group_granularity_splits_rows_evenly():
    for group_size in range(1, 17):
        for world in range(1, 9):
            k = group_granularity(group_size, world)
            assert (k * group_size) % world == 0
            assert all((j * group_size) % world != 0 for j in range(1, k))


def test_plan_refill():
    # Half the groups survive: to get 6 more, generate 12.
    assert plan_refill(6, 0.5, 1, 16) == 12
    # Rounded up to the granularity, capped at one generation batch.
    assert plan_refill(3, 0.5, 4, 16) == 8
    assert plan_refill(10, 0.1, 2, 16) == 16
    # No estimate yet: a full batch, like verl.
    assert plan_refill(5, 0.0, 1, 16) == 16
    assert plan_refill(0, 0.5, 1, 16) == 0


def test_choose_groups_keeps_order_and_fills():
    kept = torch.tensor([False, True, False, True, True, False])
    groups, filled = choose_groups(kept, 2, fill=True)
    assert groups.tolist() == [1, 3] and filled == 0
    groups, filled = choose_groups(kept, 5, fill=True)
    assert groups.tolist() == [0, 1, 2, 3, 4] and filled == 2
    groups, filled = choose_groups(kept, 5, fill=False)
    assert groups.tolist() == [1, 3, 4] and filled == 0


def test_rows_of_groups():
    assert rows_of_groups(torch.tensor([0, 2]), 3).tolist() == [0, 1, 2, 6, 7, 8]


def reference_reassemble(rounds, rows, pad, side):
    """Python lists: pad each row to the widest row of all rounds, then pick rows."""
    all_rows = [r for tensor in rounds for r in tensor.tolist()]
    width = max(len(r) for r in all_rows)
    padded = [([pad] * (width - len(r)) + r) if side == "left" else (r + [pad] * (width - len(r))) for r in all_rows]
    return [padded[i] for i in rows]


@pytest.mark.parametrize("side", ["left", "right"])
def test_reassembly_across_rounds_with_different_widths(side):
    # Three rounds of different sizes and padding widths (as when refill rounds are smaller than the first).
    torch.manual_seed(0)
    rounds = [torch.randint(1, 9, (8, 5)), torch.randint(1, 9, (4, 7)), torch.randint(1, 9, (2, 3))]
    rows = [1, 9, 12, 13, 3]
    got = concat_padded(rounds, 0, side)[torch.tensor(rows)]
    assert got.tolist() == reference_reassemble(rounds, rows, 0, side)


def test_reassembly_groups_straddling_ranks():
    """Two ranks, G=3, 2 groups per round: group 0 = rank0 rows 0-2, group 1 = rank0 row 3 + rank1 rows 0-1..."""
    world, group_size, rows_local = 2, 3, 3
    # Global row r has value r; rank k holds rows [k*3, k*3+3) of each round.
    round_a = torch.arange(6).unsqueeze(1)
    round_b = torch.arange(6, 12).unsqueeze(1)
    kept = torch.tensor([False, True, True, False])  # group 1 of round a (rows 3-5), group 0 of round b (rows 6-8)
    groups, _ = choose_groups(kept, 2, fill=False)
    rows = rows_of_groups(groups, group_size)
    batch = concat_padded([round_a, round_b], -1, "right")[rows]
    slices = [batch[k * rows_local : (k + 1) * rows_local].flatten().tolist() for k in range(world)]
    assert slices == [[3, 4, 5], [6, 7, 8]]


def test_trim_padding():
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 0]])
    x = torch.arange(8).view(2, 4)
    assert trim_padding(x, mask, "right").tolist() == [[0, 1, 2], [4, 5, 6]]
    assert trim_padding(x, mask, "left").tolist() == [[1, 2, 3], [5, 6, 7]]


def test_merge_round_metric_weighs_rounds_by_rows():
    """A step's rounds are merged by rows, not averaged per round."""
    nan = float("nan")
    # a full round of 64 rows at 0.5 and a one-group refill of 8 rows at 1.0
    assert merge_round_metric("reward", [0.5, 1.0], [64, 8]) == pytest.approx((64 * 0.5 + 8 * 1.0) / 72)
    assert merge_round_metric("completions/max_length", [12.0, 30.0], [64, 8]) == 30.0
    assert merge_round_metric("completions/min_terminated_length", [3.0, 2.0], [64, 8]) == 2.0
    assert merge_round_metric("sampling/importance_sampling_ratio/min", [0.9, 0.7], [64, 8]) == 0.7
    assert merge_round_metric("completions/mean_terminated_length", [nan, 4.0], [64, 8]) == 4.0
    assert math.isnan(merge_round_metric("reward", [nan, nan], [1, 1]))


def test_reward_stats_match_loop():
    nan = float("nan")
    rewards = torch.tensor([[1.0, 0.0], [0.0, nan], [nan, nan], [1.0, 1.0], [0.5, 0.0]])
    weights = torch.tensor([1.0, 0.5])
    stats = reward_stats(rewards, weights, ["acc", "fmt"])
    totals = [1.0, 0.0, 1.5, 0.5]  # weighted nansum of the scored rows (row 2 is unscorable)
    mean = sum(totals) / 4
    std = math.sqrt(sum((t - mean) ** 2 for t in totals) / 3)
    assert stats["reward"] == pytest.approx(mean) and stats["reward_std"] == pytest.approx(std)
    assert stats["rewards/acc/mean"] == pytest.approx(2.5 / 4) and stats["rewards/fmt/mean"] == pytest.approx(1 / 3)
    acc = [1.0, 0.0, 1.0, 0.5]
    assert stats["rewards/acc/std"] == pytest.approx(
        math.sqrt(sum((a - 0.625) ** 2 for a in acc) / 3))
