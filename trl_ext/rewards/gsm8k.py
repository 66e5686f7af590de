"""TRL reward functions for GSM8K-style math: accuracy (strict and flexible), answer format, shown work.

Convention: TRL's ``f(completions, **kwargs) -> list[float]``, one value per completion; dataset columns such as
``answer`` and TRL's ``completion_ids`` arrive as keyword arguments, and a completion is a string or a conversation
(``completion_text``). Answers are read and compared by ``trl_ext.rewards.answers`` (strict: the last
``#### <number>``; flexible: the last number; exact numeric equality). A bad sample scores 0.0 on its own and the
functions never raise, except ``ValueError`` for an unknown ``mode`` (a configuration error, reported eagerly).
This module imports neither torch nor trl.
"""

from __future__ import annotations

import re

from trl_ext.rewards.answers import check_mode, extract_answer, is_correct
from trl_ext.rewards.batch import aligned, as_list

__all__ = [
    "accuracy_flexible_reward",
    "accuracy_reward",
    "completion_text",
    "format_reward",
    "make_accuracy_reward",
    "shows_work",
]


def _message_text(message) -> str | None:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal content parts: [{"type": "text", "text": ...}, ...]
        parts = [
            part if isinstance(part, str) else part.get("text")
            for part in content
            if isinstance(part, str) or (isinstance(part, dict) and isinstance(part.get("text"), str))
        ]
        return "".join(parts) if parts else None
    return None


def completion_text(completion) -> str | None:
    """Text of one TRL completion: the string itself, or for a conversation (a list of ``{"role", "content"}``
    messages) the assistant messages joined by newlines (the last message if none has role ``assistant``)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        return _message_text(completion)
    if isinstance(completion, (list, tuple)):
        messages = [m for m in completion if isinstance(m, dict)]
        chosen = [m for m in messages if m.get("role") == "assistant"] or messages[-1:]
        texts = [t for t in map(_message_text, chosen) if t is not None]
        return "\n".join(texts) if texts else None
    return None


def _score(completions, answer, mode: str) -> list[float]:
    items = as_list(completions)
    golds = aligned(answer, len(items))
    rewards = []
    for completion, gold in zip(items, golds):
        try:
            rewards.append(1.0 if is_correct(completion_text(completion), gold, mode=mode) else 0.0)
        except Exception:
            rewards.append(0.0)
    return rewards


def accuracy_reward(completions, answer=None, mode: str = "strict", **kwargs) -> list[float]:
    """TRL reward: 1.0 if the completion's answer equals the ground truth (dataset column ``answer``), else 0.0.

    ``r_i = 1[ extract_answer(completion_i, mode) == answer_i ]`` with exact numeric equality (see ``is_correct``).
    ``mode="strict"`` is verl's strict GSM8K scoring (last ``#### <number>``); ``"flexible"`` takes the last number.
    Completions may be strings or conversations; a missing/odd completion or answer scores 0.0. Never raises
    (except ``ValueError`` for an unknown ``mode``).
    """
    check_mode(mode)
    return _score(completions, answer, mode)


def accuracy_flexible_reward(completions, answer=None, **kwargs) -> list[float]:
    """``accuracy_reward`` with ``mode="flexible"`` (the last number in the completion), logged under its own name."""
    return _score(completions, answer, "flexible")


def make_accuracy_reward(mode: str = "strict"):
    """The accuracy reward for ``mode``, as a picklable module-level function whose ``__name__`` is the name TRL
    logs it under (``rewards/<name>/mean``): ``accuracy_reward`` (strict) or ``accuracy_flexible_reward``."""
    check_mode(mode)
    return accuracy_reward if mode == "strict" else accuracy_flexible_reward


def format_reward(completions, **kwargs) -> list[float]:
    """TRL reward: 1.0 if the completion has a final ``#### <number>`` (strict extraction succeeds), else 0.0.

    ``r_i = 1[ extract_answer(completion_i, "strict") is not None ]`` (the answer format of verl's strict GSM8K
    scoring). Never raises; an odd completion scores 0.0.
    """
    rewards = []
    for completion in as_list(completions):
        try:
            rewards.append(1.0 if extract_answer(completion_text(completion), mode="strict") is not None else 0.0)
        except Exception:
            rewards.append(0.0)
    return rewards


# An equation between numbers: "3 + 6 = 9", "2 * 4 = $8", GSM8K's "<<48/2=24>>".
_EQUATION = re.compile(r"[0-9)]\s*=\s*[-\u2212$]?\s*[0-9.]")


def shows_work(text) -> bool:
    """Whether a completion shows its work: some line other than a ``####`` answer line holds an equation between
    numbers (``3 + 6 = 9``; GSM8K's ``<<48/2=24>>``). ``"#### 9"`` alone, or prose with no equation, does not.
    Never raises; a non-string gives ``False``."""
    if not isinstance(text, str):
        return False
    return any("####" not in line and _EQUATION.search(line) for line in text.splitlines())
