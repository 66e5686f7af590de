"""The reward-function error policy (trl_ext.rewards.guard)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trl_ext.rewards import accuracy_reward, format_reward
from trl_ext.rewards.guard import guard_reward


def flaky(completions, answer, **kwargs):
    out = []
    for c, a in zip(completions, answer):
        if c == "boom":
            raise RuntimeError("cannot score")
        out.append({"nan": math.nan, "inf": math.inf, "none": None}.get(c, float(a)))
    return out


def test_exceptions_and_non_finite_values_become_none_and_are_counted(caplog):
    metrics = []
    guarded = guard_reward(flaky)
    assert guarded.__name__ == "flaky"
    with caplog.at_level("WARNING"):
        values = guarded(completions=["a", "boom", "nan", "inf", "none", "b"], answer=[1, 2, 3, 4, 5, 6],
                         log_metric=lambda name, value: metrics.append((name, value)))
    assert values == [1.0, None, None, None, None, 6.0]
    assert metrics == [("rewards/flaky/errors", 3.0)]  # boom, nan, inf; a plain None is the function's choice
    assert "raised RuntimeError('cannot score') on sample 1" in caplog.text


def test_wrong_length_raises_with_names():
    guarded = guard_reward(lambda completions, **kw: [1.0])
    with pytest.raises(ValueError, match=r"returned 1 values for 2 completions"):
        guarded(completions=["a", "b"])


def test_strict_reraises():
    with pytest.raises(RuntimeError, match="cannot score"):
        guard_reward(flaky, strict=True)(completions=["boom"], answer=[1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(), st.integers(), st.lists(st.dictionaries(st.text(), st.text()))),
                min_size=1, max_size=5),
       st.lists(st.one_of(st.none(), st.text(), st.integers()), min_size=5, max_size=5))
def test_project_rewards_under_the_guard_never_raise(completions, answers):
    for fn in (accuracy_reward, format_reward):
        values = guard_reward(fn, strict=True)(completions=completions, answer=answers[: len(completions)])
        assert len(values) == len(completions) and all(v in (0.0, 1.0) for v in values)
