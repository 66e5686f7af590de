"""The error policy for reward functions: one bad sample never ends a run silently, and never ends it at all.

``guard_reward(fn)`` wraps a TRL reward function so that

* an exception on the batch call makes the wrapper score the samples one by one; a sample whose call still raises
  gets ``None`` (TRL then leaves it out of the reward mean and, if every function returned None, gives it zero
  advantage), a warning names the function, the exception and the sample index, and the metric
  ``rewards/<fn>/errors`` counts such samples per step;
* a non-finite value (NaN, inf) becomes ``None`` and is counted the same way;
* returning the wrong number of values is a bug in the function, not bad data: it raises at once with a message that
  names the function and both counts.

The recipes wrap every reward function with it; pass ``strict=True`` to re-raise the first exception instead.
"""

from __future__ import annotations

import functools
import logging
import math

logger = logging.getLogger(__name__)


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _clean(value):
    """A float, or None for None / non-numbers / NaN / inf."""
    if value is None or isinstance(value, bool):
        return None if value is None else float(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def guard_reward(fn, strict: bool = False):
    """Wrap reward function ``fn`` with the error policy of the module docstring (``__name__`` is kept)."""
    name = _name(fn)

    @functools.wraps(fn)
    def guarded(*args, completions=None, **kwargs):
        n = len(completions) if completions is not None else 0
        log_metric = kwargs.get("log_metric")
        try:
            values = list(fn(*args, completions=completions, **kwargs))
        except Exception as err:  # the policy is to isolate the failing samples
            if strict:
                raise
            logger.warning("reward function %r raised %r on a batch of %d; scoring samples one by one", name, err, n)
            values = [_one(fn, name, i, args, completions, kwargs, n) for i in range(n)]
        if len(values) != n:
            raise ValueError(
                f"reward function {name!r} returned {len(values)} values for {n} completions: it must return one "
                "value (a float, or None to skip) per completion"
            )
        cleaned = [_clean(v) for v in values]
        # Errors: samples that raised (FAILED) and values that are not finite numbers; a plain None is a choice.
        bad = sum(1 for v, c in zip(values, cleaned) if c is None and v is not None)
        if log_metric is not None:
            log_metric(f"rewards/{name}/errors", float(bad))
        return cleaned

    guarded.__name__ = name
    return guarded


FAILED = object()  # a sample whose reward call raised: scored None, counted as an error


def _one(fn, name, index, args, completions, kwargs, n):
    # Slice every per-sample column (lists as long as the batch) down to this sample.
    sample_kwargs = {k: ([v[index]] if isinstance(v, list) and len(v) == n else v) for k, v in kwargs.items()}
    try:
        values = list(fn(*args, completions=[completions[index]], **sample_kwargs))
        return values[0] if len(values) == 1 else FAILED
    except Exception as err:
        logger.warning("reward function %r raised %r on sample %d: scored None", name, err, index)
        return FAILED
