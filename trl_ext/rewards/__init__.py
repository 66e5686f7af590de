"""Verifiable rewards for RL on math tasks (GSM8K): answer extraction, exact numeric checking, TRL reward functions
and DAPO's overlong reward shaping. Importing this package imports neither torch nor trl."""

from trl_ext.rewards.answers import MODES, extract_answer, is_correct, normalize_number
from trl_ext.rewards.gsm8k import (
    accuracy_flexible_reward,
    accuracy_reward,
    completion_text,
    format_reward,
    make_accuracy_reward,
    shows_work,
)
from trl_ext.rewards.length import OverlongReward, make_overlong_reward, overlong_penalty

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
