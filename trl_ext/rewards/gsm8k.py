"""Verifiable rewards for GSM8K-style math: answer extraction, numeric equivalence, TRL reward functions.

Scoring protocol (the same as verl's GSM8K scorer, ``verl/utils/reward_score/gsm8k.py``):

* **strict**: the answer is the number of the *last* ``#### <number>`` match in the completion (the GSM8K
  solution format; the model is prompted to end with such a line). No such match -> no answer -> reward 0.
* **flexible**: the answer is the last number anywhere in the completion.

Unlike verl, which compares the extracted strings, answers are compared *numerically* and exactly (``Decimal``,
never ``float``): ``18``, ``18.0``, ``18.``, ``$18`` match ``18``, and ``1,080`` matches ``1080``. Other deliberate
differences from verl: the whole text is searched (verl only looks at the last 300 characters), ``#### 3/4`` is not
read as ``3``, blanks/``$``/sign are allowed after ``####``, and in flexible mode ``10-3`` ends with ``3``, not ``-3``.

Reward functions follow TRL's convention ``f(completions, **kwargs) -> list[float | None]`` (one value per
completion; dataset columns such as ``answer`` and TRL's ``completion_ids`` arrive as keyword arguments).

Robustness contract: ``extract_answer``, ``is_correct`` and the reward functions never raise on any input (text of
any size, 100,000-digit numbers, non-ASCII digits, ``None``, odd nesting) and run in time linear in the input with
no regex backtracking blow-up; a bad sample scores 0.0 on its own. The only exceptions raised are ``ValueError`` /
``TypeError`` for an invalid *configuration* (an unknown ``mode``, an invalid overlong-penalty setting), which is a
programming error and is reported eagerly.

This module imports neither torch nor trl (nor math-verify/sympy).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction

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

MODES = ("strict", "flexible")

_DIGITS = "0123456789"  # ASCII only: '١٢' (Arabic-Indic) or '１２' (fullwidth) are not digits here
_MINUS = "-\u2212"  # ASCII hyphen-minus and U+2212 MINUS SIGN
_NUMBER_RUN_CHARS = _DIGITS + ".,"

# Numbers compared through Decimal have at most this many digits; longer ones are compared as canonical strings
# (exact as well, and immune to int()'s 4300-digit limit and to huge exponents).
_MAX_DECIMAL_DIGITS = 100
# Strict extraction tries at most this many '####' markers from the end (each run of '#' counts once) before
# giving up, so that a text made of millions of '####' costs microseconds, not seconds.
_MAX_STRICT_MARKERS = 1000

# A number: '1080', '1,080', '18.5', '.5' (ASCII digits only; a trailing '.' is not part of the number).
# No nested or adjacent ambiguous quantifiers, so matching is linear.
_NUM = r"(?:[0-9][0-9,]*(?:\.[0-9]+)?|\.[0-9]+)"
# Anchored at a '####' marker: '#### 18', '####18', '#### $1,080', '#### -3', '#### -$3', '#### $ 5.5'.
# Whitespace runs use the atomic-group emulation (?=(X*))\N so that a failure never backtracks through them.
_STRICT_AT = re.compile(
    r"####(?=([ \t]*))\1"
    r"(?:\$(?=([ \t]*))\2)?"
    r"([" + _MINUS + r"])?"
    r"(?:\$(?=([ \t]*))\4)?"
    r"(?=(" + _NUM + r"))\5"  # atomic: never give digits back to the check below
    r"(?![ \t]*/[ \t]*[0-9.])"  # '#### 3/4' is not the number 3
)
# A ground truth that is a plain number once whitespace, '$' and ',' are dropped (e.g. '1,080', '$5', '-3', '18.').
_PLAIN_NUMBER = re.compile(r"([" + _MINUS + r"]?)[ \t]*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _run_start(text: str, end: int, chars: str) -> int:
    """Start index of the run of ``chars`` that ends at ``end`` (exclusive), scanning backwards in C-speed chunks."""
    width = 64
    while True:
        lo = max(0, end - width)
        kept = text[lo:end].rstrip(chars)
        if kept or lo == 0:
            return lo + len(kept)
        width *= 4


def _finish(sign: bool, number: str) -> str:
    number = number.replace(",", "")
    if number.startswith("."):
        number = "0" + number
    return ("-" if sign else "") + number


def _extract_strict(text: str) -> str | None:
    end = len(text)
    for _ in range(_MAX_STRICT_MARKERS):
        pos = text.rfind("####", 0, end)
        if pos < 0:
            return None
        match = _STRICT_AT.match(text, pos)
        if match is not None:
            return _finish(match.group(3) is not None, match.group(5))
        # Only the last '####' of a run of '#' can be followed by a number: skip the whole run.
        end = _run_start(text, pos + 4, "#")
    return None


def _last_digit_index(text: str) -> int:
    tail = max(0, len(text) - 4096)
    index = max(text.rfind(d, tail) for d in _DIGITS)
    if index < 0 and tail > 0:
        index = max(text.rfind(d, 0, tail + 1) for d in _DIGITS)
    return index


def _extract_flexible(text: str) -> str | None:
    last = _last_digit_index(text)
    if last < 0:
        return None
    start = _run_start(text, last + 1, _NUMBER_RUN_CHARS)
    run = text[start : last + 1].lstrip(",")
    dots = run.count(".")
    if dots >= 2:  # '1.2.3', '12.05.2023': the last dot-separated piece is the last number
        return _finish(False, run[run.rfind(".") + 1 :])
    # A sign directly before the number ('-3', '-$3', '$-3'), but not a subtraction ('10-3', 'x-3').
    j = start
    if j > 0 and text[j - 1] == "$":
        j -= 1
    negative = j > 0 and text[j - 1] in _MINUS and not (j >= 2 and text[j - 2].isascii() and text[j - 2].isalnum())
    return _finish(negative, run)


def extract_answer(text, mode: str = "strict") -> str | None:
    """Extract the final numeric answer of a completion, as a normalized string, or ``None``.

    * ``mode="strict"`` (verl's strict GSM8K scoring): the number of the last ``#### <number>`` match. Blanks,
      one ``$`` and a minus sign may sit between ``####`` and the number; text may follow it (``#### 18 apples``), but
      not a fraction bar (``#### 3/4`` has no number answer, where verl would read ``3``).
      A ``####`` with no number after it is skipped, so ``#### 18\\n#### (done)`` gives ``18``. (At most 1000
      number-less ``####`` markers after the answer are skipped; beyond that the text counts as unanswered.)
    * ``mode="flexible"``: the last number anywhere in the text (a ``-`` right before it counts as its sign unless
      it follows a letter or digit, as in ``10-3``; in ``1.2.3`` the last number is ``3``).

    Normalization: thousands separators ``,`` and ``$`` are dropped, a trailing ``.`` is not part of the number and
    a leading ``.`` gets a ``0`` (``.5`` -> ``0.5``); the sign is kept. Otherwise the digits are returned as written
    (``18.50`` stays ``18.50``; use ``normalize_number`` for a canonical form). Only ASCII digits count.

    Never raises (except ``ValueError`` for an unknown ``mode``): a non-string ``text`` gives ``None``. Runs in
    linear time; a 1 MB text takes a few milliseconds.

    >>> extract_answer("so 2 + 3 = 5\\n#### 1,080.")
    '1080'
    >>> extract_answer("I think it is -3 or 18.5", mode="flexible")
    '18.5'
    """
    _check_mode(mode)
    if not isinstance(text, str):
        return None
    try:
        return _extract_strict(text) if mode == "strict" else _extract_flexible(text)
    except Exception:  # noqa: BLE001 - defensive: the contract is "never raises"
        return None


def _canonical(number: str) -> str:
    """'-018.500' -> '-18.5', '-0.0' -> '0' (input: optional '-', ASCII digits, at most one '.')."""
    negative = number.startswith("-")
    body = number[1:] if negative else number
    whole, _, fraction = body.partition(".")
    whole = whole.lstrip("0") or "0"
    fraction = fraction.rstrip("0")
    canonical = whole + ("." + fraction if fraction else "")
    return ("-" if negative and canonical != "0" else "") + canonical


def normalize_number(value) -> str | None:
    """Canonical decimal string of a plain number, or ``None`` if ``value`` is not one.

    Accepts strings such as ``"1,080"``, ``"$5"``, ``" -3 "``, ``"18."``, ``"18.00"``, ``".5"`` (blanks, ``$`` and
    ``,`` are ignored), ``int`` and finite ``float``/``Decimal``. The canonical form has no leading zeros, no
    trailing fractional zeros and no ``-0``: ``"018.50"`` -> ``"18.5"``, ``"1,080"`` -> ``"1080"``. Two plain
    numbers are numerically equal iff their canonical forms are equal. Never raises.
    """
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            value = str(value)  # ValueError above 4300 digits: caught below
        elif isinstance(value, (float, Decimal)):
            value = Decimal(value) if isinstance(value, Decimal) else Decimal(repr(value))
            if not value.is_finite() or abs(value.adjusted()) > _MAX_DECIMAL_DIGITS:
                return None
            value = format(value, "f")
        if not isinstance(value, str):
            return None
        cleaned = value.replace("$", "").replace(",", "").strip()
        match = _PLAIN_NUMBER.fullmatch(cleaned)
        if match is None:
            return None
        digits = match.group(2).rstrip(".") or "0"
        if digits.startswith("."):
            digits = "0" + digits
        return _canonical(("-" if match.group(1) else "") + digits)
    except Exception:  # noqa: BLE001
        return None


def _numbers_equal(a: str, b: str) -> bool:
    """Exact numeric equality of two canonical plain numbers: ``Decimal`` for short ones, canonical strings else."""
    if len(a) <= _MAX_DECIMAL_DIGITS and len(b) <= _MAX_DECIMAL_DIGITS:
        try:
            return Decimal(a) == Decimal(b)
        except (InvalidOperation, ValueError):
            return False
    return a == b


def _gold_number(ground_truth) -> str | None:
    """The ground truth as a canonical number: a plain number, or a full GSM8K solution ending in '#### N'."""
    number = normalize_number(ground_truth)
    if number is None and isinstance(ground_truth, str) and "####" in ground_truth:
        extracted = extract_answer(ground_truth, mode="strict")
        number = normalize_number(extracted) if extracted is not None else None
    return number


# --- Fraction fallback for ground truths that are fractions ('3/4', '-3/4', '\\frac{3}{4}') -------------------------
# math-verify is deliberately not used: its time-outs rely on signal.alarm (main thread only), and with them disabled
# its LaTeX parser takes seconds on short inputs such as twenty nested parentheses, which breaks "never hangs".

_FRACTION_LINE_MAX_CHARS = 1000
_FRACTION = re.compile(
    r"([" + _MINUS + r"]?)[ \t]*(?:"
    r"\\[dt]?frac\{[ \t]*([0-9]{1,100})[ \t]*\}\{[ \t]*([0-9]{1,100})[ \t]*\}"
    r"|([0-9]{1,100})[ \t]*/[ \t]*([0-9]{1,100}))"
)


def _fraction_of(match) -> Fraction | None:
    numerator, denominator = (match.group(2), match.group(3)) if match.group(2) else (match.group(4), match.group(5))
    if int(denominator) == 0:
        return None
    value = Fraction(int(numerator), int(denominator))
    return -value if match.group(1) else value


def _gold_fraction(ground_truth) -> Fraction | None:
    if not isinstance(ground_truth, str) or len(ground_truth) > _FRACTION_LINE_MAX_CHARS:
        return None
    match = _FRACTION.fullmatch(ground_truth.replace("$", "").replace(",", "").strip())
    return _fraction_of(match) if match else None


def _predicted_fraction(text: str, mode: str) -> Fraction | None:
    """The completion's answer as a Fraction: a fraction on the last '####' line (strict) or ending the last line
    (flexible), else the extracted decimal number."""
    if mode == "strict":
        pos = text.rfind("####")
        newline = text.find("\n", pos) if pos >= 0 else -1
        line = text[pos + 4 : newline if newline >= 0 else len(text)] if pos >= 0 else ""
        line = line.replace("$", "").replace(",", "")
        match = _FRACTION.match(line.strip()) if len(line) <= _FRACTION_LINE_MAX_CHARS else None
    else:
        tail = text[-_FRACTION_LINE_MAX_CHARS:].rstrip()
        line = tail[tail.rfind("\n") + 1 :].replace("$", "").replace(",", "")
        matches = list(_FRACTION.finditer(line))
        match = matches[-1] if matches else None
        if match is not None and any(c in _DIGITS for c in line[match.end() :]):
            match = None  # a number comes after the last fraction
    if match is not None:
        return _fraction_of(match)
    number = normalize_number(extract_answer(text, mode))
    if number is None or len(number) > _MAX_DECIMAL_DIGITS:
        return None
    return Fraction(Decimal(number))


def is_correct(text, ground_truth, mode: str = "strict") -> bool:
    """Whether the completion ``text`` answers ``ground_truth``.

    The answer is taken with ``extract_answer(text, mode)`` and compared numerically and exactly with the ground
    truth (``Decimal``, never ``float``; numbers longer than 100 digits are compared through their canonical strings,
    which is just as exact and avoids ``int()``'s digit limit). The ground truth may be a plain number (``"1080"``,
    ``"1,080"``, ``"$5"``, ``"-3"``, ``18``) or a full GSM8K solution whose last line is ``#### N``.

    If the ground truth is a fraction (``"3/4"``, ``"-3/4"``, ``"\\frac{3}{4}"``, numbers of at most 100 digits),
    the answer may be a fraction too (``#### 6/8``; strict: at the start of the last ``####`` line, flexible: ending
    the last line) or a decimal (``#### 0.75``), compared exactly with ``fractions.Fraction``. Other ground truths
    (expressions, text) never match. math-verify is not used: without its signal-based time-outs (which fail outside
    the main thread) its LaTeX parser can take seconds on short inputs, which would break the never-hang contract.

    Never raises (except ``ValueError`` for an unknown ``mode``); ``None`` or other odd inputs give ``False``.
    """
    _check_mode(mode)
    try:
        if not isinstance(text, str):
            return False
        gold = _gold_number(ground_truth)
        if gold is not None:
            predicted = normalize_number(extract_answer(text, mode))
            return predicted is not None and _numbers_equal(predicted, gold)
        gold_fraction = _gold_fraction(ground_truth)
        return gold_fraction is not None and _predicted_fraction(text, mode) == gold_fraction
    except Exception:  # noqa: BLE001
        return False


# --- TRL reward functions -----------------------------------------------------------------------------------------


def _as_list(values) -> list:
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
        except Exception:  # noqa: BLE001
            return []
    return []


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


def _aligned(values, n: int) -> list:
    """``values`` as a list of length ``n``: a single string is broadcast, missing entries are ``None``."""
    if isinstance(values, (str, int, float, Decimal)) and not isinstance(values, bool):
        return [values] * n
    items = _as_list(values)
    return (items + [None] * n)[:n]


def _score(completions, answer, mode: str) -> list[float]:
    items = _as_list(completions)
    golds = _aligned(answer, len(items))
    rewards = []
    for completion, gold in zip(items, golds):
        try:
            rewards.append(1.0 if is_correct(completion_text(completion), gold, mode=mode) else 0.0)
        except Exception:  # noqa: BLE001
            rewards.append(0.0)
    return rewards


def accuracy_reward(completions, answer=None, mode: str = "strict", **kwargs) -> list[float]:
    """TRL reward: 1.0 if the completion's answer equals the ground truth (dataset column ``answer``), else 0.0.

    ``r_i = 1[ extract_answer(completion_i, mode) == answer_i ]`` with exact numeric equality (see ``is_correct``).
    ``mode="strict"`` is verl's strict GSM8K scoring (last ``#### <number>``); ``"flexible"`` takes the last number.
    Completions may be strings or conversations; a missing/odd completion or answer scores 0.0. Never raises
    (except ``ValueError`` for an unknown ``mode``).
    """
    _check_mode(mode)
    return _score(completions, answer, mode)


def accuracy_flexible_reward(completions, answer=None, **kwargs) -> list[float]:
    """``accuracy_reward`` with ``mode="flexible"`` (the last number in the completion), logged under its own name."""
    return _score(completions, answer, "flexible")


def make_accuracy_reward(mode: str = "strict"):
    """The accuracy reward for ``mode``, as a picklable module-level function whose ``__name__`` is the name TRL
    logs it under (``rewards/<name>/mean``): ``accuracy_reward`` (strict) or ``accuracy_flexible_reward``."""
    _check_mode(mode)
    return accuracy_reward if mode == "strict" else accuracy_flexible_reward


def format_reward(completions, **kwargs) -> list[float]:
    """TRL reward: 1.0 if the completion has a final ``#### <number>`` (strict extraction succeeds), else 0.0.

    ``r_i = 1[ extract_answer(completion_i, "strict") is not None ]`` (the answer format of verl's strict GSM8K
    scoring). Never raises; an odd completion scores 0.0.
    """
    rewards = []
    for completion in _as_list(completions):
        try:
            rewards.append(1.0 if extract_answer(completion_text(completion), mode="strict") is not None else 0.0)
        except Exception:  # noqa: BLE001
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


# --- DAPO overlong reward shaping ----------------------------------------------------------------------------------


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
    except Exception:  # noqa: BLE001
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
    return [_overlong_one(n, max_completion_length, buffer_len, penalty_factor) for n in _as_list(lengths)]


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
        self.__name__ = "overlong_reward"

    def __repr__(self):
        return (
            f"OverlongReward(max_completion_length={self.max_completion_length}, buffer_len={self.buffer_len}, "
            f"penalty_factor={self.penalty_factor})"
        )

    def __call__(self, completions=None, completion_ids=None, **kwargs) -> list[float]:
        try:
            ids = _as_list(completion_ids)
            n = len(_as_list(completions)) if completions is not None else len(ids)
            ids = (ids + [None] * n)[:n]
            rewards = []
            for token_ids in ids:
                try:
                    length = None if token_ids is None or isinstance(token_ids, (str, bytes)) else len(token_ids)
                except Exception:  # noqa: BLE001
                    length = None
                rewards.append(_overlong_one(length, self.max_completion_length, self.buffer_len, self.penalty_factor))
            return rewards
        except Exception:  # noqa: BLE001
            return [0.0] * len(_as_list(completions))


def make_overlong_reward(max_completion_length: int, buffer_len: int, penalty_factor: float = 1.0) -> OverlongReward:
    """A TRL reward function named ``overlong_reward``: DAPO's soft overlong punishment (arXiv 2503.14476, Eq. 13)
    of each completion's token count ``len(completion_ids[i])``; see ``overlong_penalty`` for the equation.

    Typically ``max_completion_length`` is the trainer's ``max_completion_length`` and ``buffer_len`` a fraction of
    it (DAPO: L_max = 20480, L_cache = 4096). Raises ``ValueError``/``TypeError`` for an invalid configuration.
    """
    return OverlongReward(max_completion_length, buffer_len, penalty_factor)
