"""DAPO's overlong reward shaping: the soft overlong punishment of a completion's token count.

Convention: lengths are token counts (``len(completion_ids[i])``) and the reward is a penalty ``<= 0``, zero up to
``max_completion_length - buffer_len`` and ``-penalty_factor`` past ``max_completion_length`` (Yu et al. 2025,
arXiv 2503.14476, Eq. 13). A length that is not a finite number scores 0.0 and nothing here raises on odd data;
only an invalid *configuration* raises (``ValueError``/``TypeError``), eagerly. Nothing here knows about the task
being solved; this module imports neither torch nor trl.
"""

from __future__ import annotations

import math

from trl_ext.rewards.batch import as_list

__all__ = ["OVERLONG_REWARD_NAME", "OverlongReward", "make_overlong_reward", "overlong_penalty"]

# The name TRL logs the shaping reward under (``rewards/overlong_reward/mean``), and how DAPO's group filter tells it
# apart from the task rewards.
OVERLONG_REWARD_NAME = "overlong_reward"


def _check_overlong_config(max_completion_length, buffer_len, penalty_factor):
    if isinstance(max_completion_length, bool) or not isinstance(max_completion_length, int):
        raise TypeError(f"max_completion_length must be an int, got {max_completion_length!r}")
    if isinstance(buffer_len, bool) or not isinstance(buffer_len, int):
        raise TypeError(f"buffer_len must be an int, got {buffer_len!r}")
    if max_completion_length <= 0 or not 0 <= buffer_len <= max_completion_length:
        raise ValueError(
            f"need max_completion_length > 0 and 0 <= buffer_len <= max_completion_length, got "
            f"max_completion_length={max_completion_length}, buffer_len={buffer_len}"
        )
    if isinstance(penalty_factor, bool) or not isinstance(penalty_factor, (int, float)):
        raise TypeError(f"penalty_factor must be a number, got {penalty_factor!r}")
    if not math.isfinite(penalty_factor) or penalty_factor < 0:
        raise ValueError(f"penalty_factor must be finite and >= 0, got {penalty_factor!r}")


def _overlong_one(length, max_completion_length: int, buffer_len: int, penalty_factor: float) -> float:
    try:
        if isinstance(length, (str, bytes, bool)) or length is None:
            return 0.0
        length = float(length)
    except Exception:
        return 0.0
    if not math.isfinite(length):
        return 0.0
    threshold = max_completion_length - buffer_len
    if length <= threshold:
        return 0.0
    if length <= max_completion_length:  # here buffer_len > 0
        return (threshold - length) / buffer_len * penalty_factor
    return -float(penalty_factor)


def overlong_penalty(lengths, max_completion_length: int, buffer_len: int, penalty_factor: float = 1.0) -> list[float]:
    """DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476, Eq. 13) for completion token counts.

    With ``L_max = max_completion_length``, ``L_cache = buffer_len`` and factor ``f = penalty_factor``::

        r(L) = 0                                   if L <= L_max - L_cache
        r(L) = ((L_max - L_cache) - L) / L_cache * f   if L_max - L_cache < L <= L_max
        r(L) = -f                                  if L > L_max

    i.e. ``r = max(min(-(L - (L_max - L_cache)) / L_cache * f, 0), -f)``: zero up to ``L_max - L_cache``, then
    linear down to ``-f`` at ``L_max``. For ``f = 1`` the values are bit-for-bit those of TRL's
    ``trl.rewards.get_soft_overlong_punishment(L_max, L_cache)`` (tested); this pure version takes lengths instead
    of token-id lists, scales by ``f`` and does not import trl. A length that is not a finite number gives 0.0.
    Raises ``ValueError``/``TypeError`` for an invalid configuration (not for odd lengths).
    """
    _check_overlong_config(max_completion_length, buffer_len, penalty_factor)
    return [_overlong_one(n, max_completion_length, buffer_len, penalty_factor) for n in as_list(lengths)]


class OverlongReward:
    """TRL reward function applying ``overlong_penalty`` to the lengths of TRL's ``completion_ids`` kwarg.

    A callable class instead of a closure so that it pickles (TRL may ship reward functions to worker processes);
    ``__name__`` is ``overlong_reward``, the name TRL logs it under. Without ``completion_ids`` every completion
    gets 0.0. Never raises.
    """

    def __init__(self, max_completion_length: int, buffer_len: int, penalty_factor: float = 1.0):
        _check_overlong_config(max_completion_length, buffer_len, penalty_factor)
        self.max_completion_length = max_completion_length
        self.buffer_len = buffer_len
        self.penalty_factor = penalty_factor
        self.__name__ = OVERLONG_REWARD_NAME

    def __repr__(self):
        return (
            f"OverlongReward(max_completion_length={self.max_completion_length}, buffer_len={self.buffer_len}, "
            f"penalty_factor={self.penalty_factor})"
        )

    def __call__(self, completions=None, completion_ids=None, **kwargs) -> list[float]:
        try:
            ids = as_list(completion_ids)
            n = len(as_list(completions)) if completions is not None else len(ids)
            ids = (ids + [None] * n)[:n]
            rewards = []
            for token_ids in ids:
                try:
                    length = None if token_ids is None or isinstance(token_ids, (str, bytes)) else len(token_ids)
                except Exception:
                    length = None
                rewards.append(_overlong_one(length, self.max_completion_length, self.buffer_len, self.penalty_factor))
            return rewards
        except Exception:
            return [0.0] * len(as_list(completions))


def make_overlong_reward(max_completion_length: int, buffer_len: int, penalty_factor: float = 1.0) -> OverlongReward:
    """A TRL reward function named ``overlong_reward``: DAPO's soft overlong punishment (arXiv 2503.14476, Eq. 13)
    of each completion's token count ``len(completion_ids[i])``; see ``overlong_penalty`` for the equation.

    Typically ``max_completion_length`` is the trainer's ``max_completion_length`` and ``buffer_len`` a fraction of
    it (DAPO: L_max = 20480, L_cache = 4096). Raises ``ValueError``/``TypeError`` for an invalid configuration.
    """
    return OverlongReward(max_completion_length, buffer_len, penalty_factor)
