"""GSM8K loading: hub id, local JSONL, or the embedded synthetic testbed, all through one validation path.

Every row becomes::

    prompt    [{"role": "system", ...}?, {"role": "user", "content": question + " " + instruction}]
    question  the raw question
    answer    the final answer as a canonical number ("1080" for "#### 1,080", "18.5" for "#### 18.50"), parsed by
              trl_ext.rewards.answers.gold_number, the parser the rewards and the evaluator use
    solution  the full reference solution (reasoning lines + "#### N"), for SFT and DPO

The default instruction is verl's GSM8K prompt suffix, so scores are comparable with verl's GSM8K numbers.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from trl_ext.rewards.answers import gold_number

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTION = "Let's think step by step and output the final answer after \"####\"."
SYNTHETIC = "synthetic"
HUB_ID = "openai/gsm8k"

# The gold answer line of GSM8K: "#### 1,080" (integers, sometimes with commas, a few negative).
_GOLD_LINE = re.compile(r"^####[ \t]*(.*?)\s*$", re.MULTILINE)
# The shape a final answer must have to be accepted (its value is read by gold_number, like the rewards read it).
_NUMBER = re.compile(r"^-?\$?[0-9][0-9,]*(\.[0-9]+)?$")


class GSM8KFormatError(ValueError):
    """A GSM8K row is malformed (missing field, no ``####`` line, non-numeric final answer)."""


def parse_row(row: dict, index: int, where: str) -> tuple[str, str, str]:
    """Validate one raw GSM8K row and return ``(question, answer, solution)``; raise ``GSM8KFormatError``."""
    for field in ("question", "answer"):
        value = row.get(field)
        if not isinstance(value, str) or not value.strip():
            raise GSM8KFormatError(
                f"{where}: row {index}: field {field!r} is missing or empty (got {value!r}); "
                "GSM8K rows need a 'question' and an 'answer' whose last line is '#### <number>'"
            )
    solution = row["answer"].strip()
    matches = _GOLD_LINE.findall(solution)
    if not matches:
        raise GSM8KFormatError(
            f"{where}: row {index}: field 'answer' has no '#### <number>' line (ends with {solution[-60:]!r})"
        )
    final = matches[-1]
    answer = gold_number(final) if _NUMBER.match(final) else None
    if answer is None:
        raise GSM8KFormatError(f"{where}: row {index}: field 'answer' has a non-numeric final answer {final!r}")
    return row["question"].strip(), answer, solution


def reasoning_steps(solution: str) -> int:
    """Steps of a reference solution: its non-empty lines before the last ``####`` line (GSM8K and the synthetic
    testbed write one line per step)."""
    lines = [line for line in solution.strip().splitlines() if line.strip()]
    last = max((i for i, line in enumerate(lines) if line.lstrip().startswith("####")), default=len(lines))
    return last


def make_prompt(question: str, instruction: str | None = DEFAULT_INSTRUCTION, system_prompt: str | None = None):
    content = f"{question} {instruction}" if instruction else question
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": content}]


def _is_blank(path: Path) -> bool:
    """Whether a file holds nothing but whitespace (read in chunks: a real data file stops at its first byte)."""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            if chunk.strip():
                return False
    return True


def _read_raw(source: str, split: str, num_examples: int | None, seed: int):
    """Return (raw rows as a datasets.Dataset or list of dicts, description of where they came from)."""
    import datasets

    if source == SYNTHETIC:
        from trl_ext.data.synthetic import generate_problems

        n = num_examples or (5000 if split == "train" else 200)
        return generate_problems(n, split=split, seed=seed), f"synthetic[{split}]"
    path = Path(source).expanduser()
    if path.exists():
        if path.is_dir():
            files = sorted(path.glob(f"{split}*.jsonl")) or sorted(path.glob(f"{split}*.json"))
            files = files or sorted(path.glob(f"**/{split}*.parquet"))
            if not files:
                raise FileNotFoundError(
                    f"no '{split}*.jsonl', '{split}*.json' or '{split}*.parquet' file in {path} "
                    f"(found: {sorted(p.name for p in path.iterdir())})"
                )
        else:
            files = [path]
        where = ",".join(str(f) for f in files)
        # datasets fails on an empty JSON file with a bare StopIteration; leave empty files out, and say so if all are
        files = [f for f in files if not _is_blank(f)]
        if not files:
            raise GSM8KFormatError(f"{where}: no usable rows (read 0, skipped 0): the file is empty")
        fmt = "parquet" if files[0].suffix == ".parquet" else "json"
        ds = datasets.load_dataset(fmt, data_files=[str(f) for f in files], split="train")
        return ds, ",".join(str(f) for f in files)
    if source.startswith((".", "/", "~")) or source.endswith((".jsonl", ".json", ".parquet")):
        raise FileNotFoundError(f"GSM8K source {source!r} looks like a path but does not exist")
    # A hub id such as "openai/gsm8k" (config "main").
    config = "main" if source == HUB_ID else None
    return datasets.load_dataset(source, config, split=split), f"{source}[{split}]"


# Real GSM8K has no validation split: it is carved from the training problems by a hash of the question text (like
# the synthetic testbed's), and the training split is what is left, so no tuning problem is ever trained on.
REAL_VALIDATION_FRACTION = 0.05


def _has_split(source: str, split: str) -> bool:
    """Whether a local GSM8K folder has files of ``split`` (a single file or the hub's openai/gsm8k: no)."""
    path = Path(source).expanduser()
    patterns = (f"{split}*.jsonl", f"{split}*.json", f"**/{split}*.parquet")
    return path.is_dir() and any(any(path.glob(p)) for p in patterns)


def load_gsm8k(
    source: str = HUB_ID,
    split: str = "train",
    *,
    instruction: str | None = DEFAULT_INSTRUCTION,
    system_prompt: str | None = None,
    skip_malformed: bool = False,
    limit: int | None = None,
    num_examples: int | None = None,
    seed: int = 0,
):
    """Load GSM8K (or the synthetic testbed) as a ``datasets.Dataset`` ready for TRL trainers.

    Args:
        source: a hub id (``"openai/gsm8k"``), a local directory holding ``<split>*.jsonl`` (e.g.
            ``../shared/data/gsm8k``), a single JSONL/parquet file, or ``"synthetic"`` for the embedded testbed.
        split: ``"train"``, ``"validation"`` or ``"test"``; without a validation file, validation is carved from
            the training problems (``REAL_VALIDATION_FRACTION`` of them, by question hash) and train is the rest.
        instruction: appended to each question (default: verl's GSM8K suffix); ``None`` for the bare question.
        system_prompt: optional system message.
        skip_malformed: drop malformed rows (and log how many) instead of raising ``GSM8KFormatError``.
        limit: keep the first ``limit`` rows.
        num_examples, seed: size and seed of the synthetic testbed (ignored for real data).
    """
    import datasets

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    from trl_ext.data.synthetic import split_of

    carve = source != SYNTHETIC and split in ("train", "validation") and not _has_split(source, "validation")
    raw, where = _read_raw(source, "train" if carve else split, num_examples, seed)
    rows, skipped = [], 0
    for index, row in enumerate(raw):
        try:
            question, answer, solution = parse_row(row, index, where)
        except GSM8KFormatError as err:
            if not skip_malformed:
                raise GSM8KFormatError(f"{err} (pass skip_malformed=True to drop such rows)") from None
            skipped += 1
            continue
        if carve and (split_of(question, 0.0, REAL_VALIDATION_FRACTION) == "validation") != (split == "validation"):
            continue
        rows.append(
            {
                "prompt": make_prompt(question, instruction, system_prompt),
                "question": question,
                "answer": answer,
                "solution": solution,
            }
        )
        if limit is not None and len(rows) >= limit:
            break
    if skipped:
        logger.warning("load_gsm8k: skipped %d malformed rows of %s", skipped, where)
    if not rows:
        raise GSM8KFormatError(f"{where}: no usable rows (read {index + 1 if raw else 0}, skipped {skipped})")
    return datasets.Dataset.from_list(rows)
