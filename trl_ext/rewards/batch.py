"""How reward functions read TRL's batch arguments (``completions``, ``completion_ids``, dataset columns).

Convention: TRL passes one list entry per completion; anything else (``None``, a string, a tuple, an object) is
read as conservatively as possible, never iterated unboundedly and never raising, so that one odd argument costs
the affected samples a neutral score instead of ending the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

__all__ = ["aligned", "as_list"]


def as_list(values) -> list:
    """TRL passes lists; anything else is treated as conservatively as possible (never iterated unboundedly)."""
    if values is None:
        return []
    if isinstance(values, list):
        return values
    if isinstance(values, (str, bytes, dict)):
        return [values]
    if isinstance(values, Sequence):
        try:
            return list(values)
        except Exception:
            return []
    return []


def aligned(values, n: int) -> list:
    """``values`` as a list of length ``n``: a single string is broadcast, missing entries are ``None``."""
    if isinstance(values, (str, int, float, Decimal)) and not isinstance(values, bool):
        return [values] * n
    items = as_list(values)
    return (items + [None] * n)[:n]
