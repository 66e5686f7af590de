"""Final answers of math completions: strict/flexible extraction, canonical numbers, exact equivalence.

Convention: an answer is a *canonical decimal string* (``normalize_number``: ``"1,080"`` -> ``"1080"``, ``"18.50"``
-> ``"18.5"``), and two answers are equal iff they are numerically equal, compared exactly (``Decimal``, never
``float``). Gold answers are read by one parser, ``gold_number``, wherever they are read (data loader, rewards,
evaluator). Scoring protocol (the same as verl's GSM8K scorer, ``verl/utils/reward_score/gsm8k.py``):

* **strict**: the answer is the number of the *last* ``#### <number>`` match in the completion (the GSM8K
  solution format; the model is prompted to end with such a line). No such match -> no answer.
* **flexible**: the answer is the last number anywhere in the completion.

Unlike verl, which compares the extracted strings, answers are compared *numerically*: ``18``, ``18.0``, ``18.``,
``$18`` match ``18``, and ``1,080`` matches ``1080``. Other deliberate differences from verl: the whole text is
searched (verl only looks at the last 300 characters), ``#### 3/4`` is not read as ``3``, blanks/``$``/sign are
allowed after ``####``, and in flexible mode ``10-3`` ends with ``3``, not ``-3``.

Robustness contract: ``extract_answer``, ``normalize_number``, ``gold_number`` and ``is_correct`` never raise on any input (text of
any size, 100,000-digit numbers, non-ASCII digits, ``None``, odd nesting) and run in time linear in the input with
no regex backtracking blow-up. The only exception raised is ``ValueError`` for an unknown ``mode``, a programming
error reported eagerly. This module imports neither torch nor trl (nor math-verify/sympy).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction

__all__ = ["MODES", "check_mode", "extract_answer", "gold_number", "is_correct", "normalize_number"]

# The metric modes: how the answer is read (see the module docstring); also the keys of the evaluator's summary.
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


def check_mode(mode):
    """Raise ``ValueError`` unless ``mode`` is one of ``MODES``."""
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
    check_mode(mode)
    if not isinstance(text, str):
        return None
    try:
        return _extract_strict(text) if mode == "strict" else _extract_flexible(text)
    except Exception:  # defensive: the contract is "never raises"
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
    except Exception:
        return None


def _numbers_equal(a: str, b: str) -> bool:
    """Exact numeric equality of two canonical plain numbers: ``Decimal`` for short ones, canonical strings else."""
    if len(a) <= _MAX_DECIMAL_DIGITS and len(b) <= _MAX_DECIMAL_DIGITS:
        try:
            return Decimal(a) == Decimal(b)
        except (InvalidOperation, ValueError):
            return False
    return a == b


def gold_number(ground_truth) -> str | None:
    """The one gold-number parser: a ground truth as a canonical number (``normalize_number``), else ``None``.

    The ground truth is a plain number (``"1,080"`` -> ``"1080"``, ``"$5"`` -> ``"5"``, ``"18.50"`` -> ``"18.5"``,
    ``18``) or a full GSM8K solution, read at its last ``#### <number>`` (strict extraction). The data loader's
    ``answer`` column, ``is_correct`` and through it the reward functions and the evaluator all use it, so that
    ``18.50`` and ``18.5`` are one gold answer everywhere. A fraction or other text gives ``None``. Never raises.
    """
    number = normalize_number(ground_truth)
    if number is None and isinstance(ground_truth, str) and "####" in ground_truth:
        extracted = extract_answer(ground_truth, mode="strict")
        number = normalize_number(extracted) if extracted is not None else None
    return number


# --- Fraction fallback for ground truths that are fractions ('3/4', '-3/4', '\\frac{3}{4}') -------------------------
# math-verify is deliberately not used: its time-outs rely on signal.alarm (main thread only), and with them disabled
# its LaTeX parser takes seconds on short inputs such as twenty nested parentheses, which breaks "never hangs".
# Reached from is_correct (and so the reward functions) whenever gold_number cannot read the ground truth as a number,
# e.g. accuracy_reward(completions, answer=["3/4"]); the GSM8K loader itself only yields plain numbers.

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
    ``"1,080"``, ``"$5"``, ``"-3"``, ``18``) or a full GSM8K solution whose last line is ``#### N`` (``gold_number``).

    If the ground truth is a fraction (``"3/4"``, ``"-3/4"``, ``"\\frac{3}{4}"``, numbers of at most 100 digits),
    the answer may be a fraction too (``#### 6/8``; strict: at the start of the last ``####`` line, flexible: ending
    the last line) or a decimal (``#### 0.75``), compared exactly with ``fractions.Fraction``. Other ground truths
    (expressions, text) never match. math-verify is not used: without its signal-based time-outs (which fail outside
    the main thread) its LaTeX parser can take seconds on short inputs, which would break the never-hang contract.

    Never raises (except ``ValueError`` for an unknown ``mode``); ``None`` or other odd inputs give ``False``.
    """
    check_mode(mode)
    try:
        if not isinstance(text, str):
            return False
        gold = gold_number(ground_truth)
        if gold is not None:
            predicted = normalize_number(extract_answer(text, mode))
            return predicted is not None and _numbers_equal(predicted, gold)
        gold_fraction = _gold_fraction(ground_truth)
        return gold_fraction is not None and _predicted_fraction(text, mode) == gold_fraction
    except Exception:
        return False
