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


def test_real_run_goes_on_through_raising_and_nan_rewards_and_stops_on_a_wrong_count(tiny_model_path, tmp_path):
    """The policy inside a real GRPOTrainer run: a reward that raises on some samples and returns NaN on others
    leaves those samples unscored, logs `rewards/<fn>/errors`, and training finishes; a reward that returns the wrong
    number of values stops the run in the first step with a message naming it."""
    from helpers.configs import tiny_dapo_config
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from trl_ext.data.gsm8k import load_gsm8k

    calls = {"batch": 0, "single": 0}

    def sometimes_broken(completions, **kwargs):
        """Raises on every batch call; the guard then scores the samples one by one, and of each run of 4 single
        calls the 2nd raises and the 3rd returns NaN: 4 errors in a step's 8 completions."""
        if len(completions) > 1:
            calls["batch"] += 1
            raise RuntimeError("grader crashed")
        calls["single"] += 1
        if calls["single"] % 4 == 2:
            raise RuntimeError("grader crashed on one sample")
        return [math.nan if calls["single"] % 4 == 3 else len(completions[0][0]["content"]) / 10]

    def wrong_count(completions, **kwargs):
        return [1.0] * (len(completions) - 1)

    dataset = load_gsm8k("synthetic", "train", num_examples=16)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    args = tiny_dapo_config(tmp_path / "ok", config_class=GRPOConfig)
    trainer = GRPOTrainer(model=tiny_model_path, reward_funcs=[guard_reward(sometimes_broken)], args=args,
                          train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    assert len(logs) == 2 and all(math.isfinite(h["loss"]) for h in logs)
    # per step: 8 completions, of which indices 1, 5 raise and 2, 6 are NaN
    assert [h["rewards/sometimes_broken/errors"] for h in logs] == [4.0, 4.0]
    assert calls == {"batch": 2, "single": 16}

    trainer = GRPOTrainer(model=tiny_model_path, reward_funcs=[guard_reward(wrong_count)],
                          args=tiny_dapo_config(tmp_path / "bad", config_class=GRPOConfig), train_dataset=dataset,
                          processing_class=tokenizer)
    with pytest.raises(ValueError, match=r"reward function 'wrong_count' returned 7 values for 8 completions"):
        trainer.train()
