"""Seeded generator of GSM8K-format word problems: the embedded offline testbed.

Each problem is a short story of 1-4 arithmetic steps over small operands, e.g.

    Ben has 3 cards. He buys 6 more. Then he gives away 2. How many cards does Ben have now?

with a solution written exactly like GSM8K's (one reasoning line per step, then ``#### N``)::

    3 + 6 = 9
    9 - 2 = 7
    #### 7

Rows have GSM8K's raw columns (``question``, ``answer``) so that the same loader, rewards and evaluator serve the
testbed and real GSM8K. Train, validation and test are split by a hash of the question text, so they can never
overlap, whatever seed or size is asked for: the validation split (carved from what would otherwise be training
problems) is for tuning, the test split for the reported numbers.
"""

from __future__ import annotations

import hashlib
import random

NAMES = ["Ben", "Ava", "Mia", "Leo", "Sam", "Zoe", "Tom", "Ivy", "Max", "Eli", "Nia", "Kai", "Ada", "Lou", "Ray", "Una"]
ITEMS = ["cards", "apples", "coins", "books", "stickers", "marbles", "shells", "pens", "stamps", "eggs", "toys", "rocks"]
ADD_PHRASES = ["buys {n} more", "finds {n} more", "gets {n} more", "is given {n} more", "picks up {n} more"]
SUB_PHRASES = ["gives away {n}", "loses {n}", "sells {n}", "uses {n}", "drops {n}"]
CONNECTORS = ["", "Then ", "After that ", "Later ", "Next "]
PRONOUNS = {
    "Ben": "He", "Leo": "He", "Sam": "He", "Tom": "He", "Max": "He", "Eli": "He", "Kai": "He", "Ray": "He", "Lou": "He",
    "Ava": "She", "Mia": "She", "Zoe": "She", "Ivy": "She", "Nia": "She", "Ada": "She", "Una": "She",
}

SPLITS = ("train", "validation", "test")


def split_of(question: str, test_fraction: float = 0.1, validation_fraction: float = 0.1) -> str:
    """Deterministic split of a question by the hash of its text (never depends on the seed): a uniform bucket in
    [0, 1); ``[0, test_fraction)`` is test, the next ``validation_fraction`` is validation, the rest train."""
    bucket = int.from_bytes(hashlib.sha256(question.encode()).digest()[:8], "big") / 2**64
    if bucket < test_fraction:
        return "test"
    return "validation" if bucket < test_fraction + validation_fraction else "train"


def make_problem(rng: random.Random, min_steps: int = 1, max_steps: int = 3, max_operand: int = 9) -> dict:
    """One random problem: ``{"question", "answer", "num_steps"}`` with a GSM8K-style ``answer`` (solution)."""
    name = rng.choice(NAMES)
    pronoun = PRONOUNS[name]
    item = rng.choice(ITEMS)
    steps = rng.randint(min_steps, max_steps)
    total = rng.randint(1, max_operand)
    sentences = [f"{name} has {total} {item}."]
    lines = []
    for i in range(steps):
        operand = rng.randint(1, max_operand)
        # Subtract only when the result stays non-negative; otherwise add.
        subtract = operand <= total and rng.random() < 0.5
        phrase = rng.choice(SUB_PHRASES if subtract else ADD_PHRASES).format(n=operand)
        connector = "" if i == 0 else rng.choice(CONNECTORS)
        sentences.append(f"{connector}{pronoun.lower() if connector else pronoun} {phrase}.")
        new_total = total - operand if subtract else total + operand
        lines.append(f"{total} {'-' if subtract else '+'} {operand} = {new_total}")
        total = new_total
    sentences.append(f"How many {item} does {name} have now?")
    question = " ".join(sentences)
    return {"question": question, "answer": "\n".join(lines + [f"#### {total}"]), "num_steps": steps}


def generate_problems(
    num_examples: int,
    split: str = "train",
    seed: int = 0,
    min_steps: int = 1,
    max_steps: int = 3,
    max_operand: int = 9,
    test_fraction: float = 0.1,
    validation_fraction: float = 0.1,
    unique: bool | None = None,
) -> list[dict]:
    """``num_examples`` problems of ``split`` ("train", "validation" or "test"), drawn with ``random.Random(seed)``.

    Problems whose question hashes into another split are skipped, so no two splits share a question.
    ``unique`` (default: True for the held-out splits, False for train) drops repeated questions; raises
    ``ValueError`` when the knobs cannot produce that many distinct problems.
    """
    if split not in SPLITS:
        raise ValueError(f"synthetic split must be one of {SPLITS}, got {split!r}")
    if not (1 <= min_steps <= max_steps <= 4):
        raise ValueError(f"need 1 <= min_steps <= max_steps <= 4, got min_steps={min_steps}, max_steps={max_steps}")
    if max_operand < 1:
        raise ValueError(f"max_operand must be >= 1, got {max_operand}")
    if not (0.0 < test_fraction and 0.0 <= validation_fraction and test_fraction + validation_fraction < 1.0):
        raise ValueError(
            f"need 0 < test_fraction, 0 <= validation_fraction and test_fraction + validation_fraction < 1, got "
            f"test_fraction={test_fraction}, validation_fraction={validation_fraction}"
        )
    unique = (split != "train") if unique is None else unique
    # Different streams for the two splits, so asking for more test rows never changes the train rows.
    rng = random.Random(f"{seed}-{split}")
    rows, seen, tries = [], set(), 0
    max_tries = 200 * num_examples + 10_000
    while len(rows) < num_examples:
        tries += 1
        if tries > max_tries:
            raise ValueError(
                f"could only generate {len(rows)} of {num_examples} {'distinct ' if unique else ''}{split} problems "
                f"with max_steps={max_steps}, max_operand={max_operand}: ask for fewer or widen the knobs"
            )
        problem = make_problem(rng, min_steps, max_steps, max_operand)
        if split_of(problem["question"], test_fraction, validation_fraction) != split:
            continue
        if unique:
            if problem["question"] in seen:
                continue
            seen.add(problem["question"])
        rows.append(problem)
    return rows
