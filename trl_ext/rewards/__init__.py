"""Verifiable rewards for RL on math tasks (GSM8K): answer extraction, exact numeric checking, TRL reward functions
and DAPO's overlong reward shaping. Importing this package imports neither torch nor trl.

One module per concern: ``answers`` (extraction, canonical numbers, the gold-number parser, ``is_correct``),
``gsm8k`` (the TRL reward functions), ``length`` (DAPO's overlong shaping), ``batch`` (reading TRL's batch
arguments), ``guard`` (the error policy). The public names below are loaded on first access, so that importing one
module (``DAPOTrainer`` imports ``length``) does not load the others.
"""

from trl_ext._lazy import lazy_getattr

_LAZY = {
    "MODES": "trl_ext.rewards.answers",
    "extract_answer": "trl_ext.rewards.answers",
    "is_correct": "trl_ext.rewards.answers",
    "normalize_number": "trl_ext.rewards.answers",
    "accuracy_flexible_reward": "trl_ext.rewards.gsm8k",
    "accuracy_reward": "trl_ext.rewards.gsm8k",
    "completion_text": "trl_ext.rewards.gsm8k",
    "format_reward": "trl_ext.rewards.gsm8k",
    "make_accuracy_reward": "trl_ext.rewards.gsm8k",
    "shows_work": "trl_ext.rewards.gsm8k",
    "OverlongReward": "trl_ext.rewards.length",
    "make_overlong_reward": "trl_ext.rewards.length",
    "overlong_penalty": "trl_ext.rewards.length",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)


def __dir__():
    return sorted(set(globals()) | set(__all__))
