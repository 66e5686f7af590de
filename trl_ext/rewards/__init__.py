"""Verifiable rewards for RL on math tasks (GSM8K): answer extraction, exact numeric checking, TRL reward functions
and DAPO's overlong reward shaping. Importing this package imports neither torch nor trl."""

from trl_ext.rewards.gsm8k import (
    MODES,
    OverlongReward,
    accuracy_flexible_reward,
    accuracy_reward,
    completion_text,
    extract_answer,
    format_reward,
    is_correct,
    make_accuracy_reward,
    make_overlong_reward,
    normalize_number,
    overlong_penalty,
    shows_work,
)

__all__ = [
    "MODES",
    "OverlongReward",
    "accuracy_flexible_reward",
    "accuracy_reward",
    "completion_text",
    "extract_answer",
    "format_reward",
    "is_correct",
    "make_accuracy_reward",
    "make_overlong_reward",
    "normalize_number",
    "overlong_penalty",
    "shows_work",
]
