"""GSM8K loader (local JSONL, hub id, synthetic) and its errors; the synthetic generator."""

import json

import pytest

from trl_ext.data import gsm8k as gsm8k_module
from trl_ext.data.gsm8k import DEFAULT_INSTRUCTION, GSM8KFormatError, load_gsm8k, reasoning_steps
from trl_ext.data.synthetic import generate_problems, split_of
from trl_ext.rewards import accuracy_reward, is_correct, normalize_number
from trl_ext.rewards.answers import gold_number


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_gsm8k(gsm8k_dir):
    ds = load_gsm8k(str(gsm8k_dir), "test")
    assert len(ds) == 1319
    assert set(ds.column_names) == {"prompt", "question", "answer", "solution"}
    row = ds[0]
    assert row["prompt"] == [{"role": "user", "content": row["question"] + " " + DEFAULT_INSTRUCTION}]
    assert row["answer"] == "18" and row["solution"].endswith("#### 18")
    # Commas are stripped from the gold answer; negative answers survive.
    answers = load_gsm8k(str(gsm8k_dir), "train")["answer"]
    assert all("," not in a for a in answers) and sum(a.startswith("-") for a in answers) >= 1
    assert len(load_gsm8k(str(gsm8k_dir / "test.jsonl"), "test", limit=5)) == 5


def test_prompt_options(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [{"question": "Q?", "answer": "x\n#### 1,080"}])
    ds = load_gsm8k(str(tmp_path), "train", instruction=None, system_prompt="Be brief.")
    assert ds[0]["prompt"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}]
    assert ds[0]["answer"] == "1080"
    assert load_gsm8k(str(path), "train", instruction="Answer:")[0]["prompt"][-1]["content"] == "Q? Answer:"


@pytest.mark.parametrize("final", ["18.50", "18.0", "007", "-0", "-0.5", "1,080", "$5", "-$3", "1,234.500"])
def test_loader_gold_is_the_rewards_gold_number(tmp_path, final):
    """One gold-number parser: the loader's ``answer`` is the canonical number the rewards and the evaluator read from
    the same solution ('#### 18.50' used to load as '18.50', and '#### 007' as '007', where the rewards read 18.5
    and 7)."""
    solution = f"2 * 9.25 = 18.5\n#### {final}"
    write_jsonl(tmp_path / "train.jsonl", [{"question": "Q?", "answer": solution}])
    answer = load_gsm8k(str(tmp_path), "train")[0]["answer"]
    assert answer == normalize_number(final) == gold_number(final) == gold_number(solution)
    assert is_correct(solution, answer) and is_correct(f"#### {answer}", solution)


@pytest.mark.parametrize(
    "bad_row, message",
    [
        ({"answer": "#### 3"}, "row 1: field 'question' is missing"),
        ({"question": "Q?"}, "row 1: field 'answer' is missing"),
        ({"question": "Q?", "answer": "just 3"}, "row 1: field 'answer' has no '#### <number>' line"),
        ({"question": "Q?", "answer": "#### three"}, "row 1: field 'answer' has a non-numeric final answer 'three'"),
        ({"question": "", "answer": "#### 3"}, "row 1: field 'question' is missing or empty"),
    ],
)
def test_malformed_rows_raise_or_are_skipped(tmp_path, bad_row, message, caplog):
    good = {"question": "Q?", "answer": "1 + 2 = 3\n#### 3"}
    write_jsonl(tmp_path / "train.jsonl", [good, bad_row, good])
    with pytest.raises(GSM8KFormatError, match=message) as err:
        load_gsm8k(str(tmp_path), "train")
    assert "train.jsonl" in str(err.value) and "skip_malformed=True" in str(err.value)
    with caplog.at_level("WARNING"):
        ds = load_gsm8k(str(tmp_path), "train", skip_malformed=True)
    assert len(ds) == 2 and "skipped 1 malformed rows" in caplog.text


def test_missing_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no 'test\\*.jsonl'"):
        load_gsm8k(str(tmp_path), "test")
    with pytest.raises(FileNotFoundError, match="looks like a path"):
        load_gsm8k("./nowhere/gsm8k", "test")
    write_jsonl(tmp_path / "test.jsonl", [{"question": "Q?", "answer": "no"}])
    with pytest.raises(GSM8KFormatError, match="no usable rows"):
        load_gsm8k(str(tmp_path), "test", skip_malformed=True)
    (tmp_path / "train.jsonl").write_text(" \n" * 100)  # an empty split (blank lines only)
    with pytest.raises(GSM8KFormatError, match=r"train\.jsonl.*no usable rows \(read 0, skipped 0\)"):
        load_gsm8k(str(tmp_path), "train")


def test_hub_id_goes_to_the_hub_with_config_main(monkeypatch):
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return [{"question": "Q?", "answer": "#### 2"}]

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds = gsm8k_module.load_gsm8k("openai/gsm8k", "test")
    assert calls == [(("openai/gsm8k", "main"), {"split": "test"})]
    assert ds[0]["answer"] == "2"


def test_synthetic_generator():
    train = generate_problems(2000, "train", seed=0)
    test = generate_problems(200, "test", seed=0)
    validation = generate_problems(200, "validation", seed=0)
    splits = {"train": train, "validation": validation, "test": test}
    questions = {name: {r["question"] for r in rows} for name, rows in splits.items()}
    # Three disjoint splits, whatever the seed: the validation split is carved from the training problems' hash range.
    assert not questions["train"] & questions["test"]
    assert not questions["train"] & questions["validation"]
    assert not questions["validation"] & questions["test"]
    for name, rows in splits.items():
        assert all(split_of(r["question"]) == name for r in rows)
    assert len(questions["test"]) == 200 and len(questions["validation"]) == 200
    shares = [split_of(f"question {i}") for i in range(5000)]
    assert 0.08 < shares.count("test") / 5000 < 0.12 and 0.08 < shares.count("validation") / 5000 < 0.12
    # Seeded: the same call gives the same rows; another seed gives others.
    assert generate_problems(50, "train", seed=0) == train[:50]
    assert generate_problems(50, "train", seed=1) != train[:50]
    # Knobs: steps and operand range are respected, and results are never negative.
    for row in generate_problems(300, "train", seed=2, min_steps=2, max_steps=4, max_operand=20):
        lines = row["solution" if "solution" in row else "answer"].split("\n")
        assert 2 <= len(lines) - 1 <= 4 and row["num_steps"] == len(lines) - 1
        for line in lines[:-1]:
            left, result = line.split(" = ")
            a, op, b = left.split()
            assert int(b) <= 20 and int(result) >= 0
            assert int(result) == (int(a) + int(b) if op == "+" else int(a) - int(b))
    with pytest.raises(ValueError, match="max_steps"):
        generate_problems(1, "train", max_steps=5)
    with pytest.raises(ValueError, match="could only generate"):
        generate_problems(500, "test", max_steps=1, max_operand=1)


def test_synthetic_loads_through_the_same_path_and_scores():
    ds = load_gsm8k("synthetic", "test", num_examples=100)
    assert len(ds) == 100
    assert accuracy_reward(ds["solution"], answer=ds["answer"]) == [1.0] * 100


@pytest.mark.parametrize(
    "solution, steps",
    [("3 + 6 = 9\n9 - 2 = 7\n#### 7", 2), ("#### 7", 0), ("a\n\nb\nc\n#### 1,080\n", 3), ("no answer line", 1)],
)
def test_reasoning_steps(solution, steps):
    assert reasoning_steps(solution) == steps


def test_reasoning_steps_match_the_generator():
    rows = generate_problems(200, "test", seed=3)
    assert [reasoning_steps(r["answer"]) for r in rows] == [r["num_steps"] for r in rows]
