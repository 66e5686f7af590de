"""GSM8K rewards: extraction table, exact numeric equivalence, every GSM8K test gold, robustness properties, and DAPO's
overlong shaping against TRL's implementation."""

import ast
import json
import pickle
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest
from helpers.launch import GSM8K_DIR, REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trl_ext import eval as evaluator
from trl_ext.rewards import (
    MODES,
    OverlongReward,
    accuracy_flexible_reward,
    accuracy_reward,
    completion_text,
    extract_answer,
    format_reward,
    is_correct,
    make_accuracy_reward,
    make_overlong_reward,
    normalize_number,
    overlong_penalty,
    shows_work,
)
from trl_ext.rewards.answers import gold_number
from trl_ext.rewards.length import OVERLONG_REWARD_NAME

# Per-call time limits: generous so that a loaded 2-core machine does not flake (typical: < 1 ms and ~10 ms).
SMALL_INPUT_SECONDS = 0.05
HUGE_INPUT_SECONDS = 0.2


# --------------------------------------------------------------------------------------------------------------------
# Extraction table
# --------------------------------------------------------------------------------------------------------------------

EXTRACTION_CASES = [
    # (text, mode, expected)
    ("#### 18", "strict", "18"),
    ("####18", "strict", "18"),
    ("The answer:\n#### 1,080", "strict", "1080"),
    ("#### 1,080.", "strict", "1080"),
    ("#### 18.", "strict", "18"),
    ("#### 18.5", "strict", "18.5"),
    ("#### 18.50", "strict", "18.50"),
    ("#### 18.0", "strict", "18.0"),
    ("#### .5", "strict", "0.5"),
    ("#### -3", "strict", "-3"),
    ("#### \u22123", "strict", "-3"),
    ("#### $18", "strict", "18"),
    ("#### $ 18", "strict", "18"),
    ("#### -$3", "strict", "-3"),
    ("#### $-3", "strict", "-3"),
    ("#### $1,234,567.25", "strict", "1234567.25"),
    ("#### 18 apples", "strict", "18"),
    ("#### 18\n", "strict", "18"),
    ("####\t\t7", "strict", "7"),
    ("x\n#### 18\nmore text\n#### 19", "strict", "19"),  # multiple '####' lines: the last wins
    ("#### 18\n#### 19\n#### 20", "strict", "20"),
    ("#### 18\n#### (no number)", "strict", "18"),  # a number-less '####' is skipped
    ("#### 18\n####", "strict", "18"),
    ("##### 18", "strict", "18"),
    ("#### The answer is 18", "strict", None),  # '####' followed by text
    ("The answer is 18", "strict", None),
    ("### 18", "strict", None),
    ("#### \n18", "strict", None),  # the number must be on the '####' line
    ("#### 3/4", "strict", None),  # a fraction is not the number 3
    ("#### 34/5", "strict", None),
    ("#### 7\n#### 3/4", "strict", "7"),
    ("#### ١٢", "strict", None),  # Arabic-Indic digits are not digits
    ("#### １２", "strict", None),  # fullwidth digits neither
    ("", "strict", None),
    ("####", "strict", None),
    # flexible: the last number anywhere
    ("I have 3 apples and 4 pears, so 7.", "flexible", "7"),
    ("first 12 then 1,080 then 18.5 end", "flexible", "18.5"),
    ("#### 18\nbut wait, it is 20", "flexible", "20"),
    ("it costs $1,080.", "flexible", "1080"),
    ("x = -3", "flexible", "-3"),
    ("loss of -$5", "flexible", "-5"),
    ("10-3", "flexible", "3"),  # subtraction, not a sign
    ("answer: .5", "flexible", "0.5"),
    ("version 1.2.3", "flexible", "3"),
    ("no digits here", "flexible", None),
    ("١٢ and １２", "flexible", None),
    ("7 then ١٢", "flexible", "7"),
    ("", "flexible", None),
]


@pytest.mark.parametrize(("text", "mode", "expected"), EXTRACTION_CASES)
def test_extract_answer_table(text, mode, expected):
    assert extract_answer(text, mode=mode) == expected


EQUIVALENCE_CASES = [
    # (completion, ground truth, mode, expected)
    ("#### 18", "18", "strict", True),
    ("#### 18.0", "18", "strict", True),
    ("#### 18.00", "18", "strict", True),
    ("#### 18.", "18", "strict", True),
    ("#### $18", "18", "strict", True),
    ("#### 018", "18", "strict", True),
    ("#### 1,080", "1080", "strict", True),
    ("#### 1080", "1,080", "strict", True),
    ("#### 5", "$5", "strict", True),
    ("#### 18", " 18\n", "strict", True),
    ("#### 18", "18.0", "strict", True),
    ("#### -3", "-3", "strict", True),
    ("#### -0", "0", "strict", True),
    ("#### 0.5", ".5", "strict", True),
    ("#### 18", 18, "strict", True),
    ("#### 18", Decimal("18.000"), "strict", True),
    ("#### 18", 18.0, "strict", True),
    ("#### 18", "Step one.\n#### 18", "strict", True),  # a full GSM8K solution as ground truth
    ("#### 18", "19", "strict", False),
    ("#### 18.5", "18", "strict", False),
    ("#### -3", "3", "strict", False),
    ("#### 180", "18", "strict", False),
    ("The answer is 18", "18", "strict", False),
    ("The answer is 18", "18", "flexible", True),
    ("#### 18\nthough maybe 20", "18", "strict", True),
    ("#### 18\nthough maybe 20", "18", "flexible", False),
    ("#### 3/4", "3", "strict", False),
    ("#### 18", "eighteen", "strict", False),
    ("#### 18", "", "strict", False),
    ("#### 18", None, "strict", False),
    (None, "18", "strict", False),
    ("#### 18", True, "strict", False),
    ("#### ١٨", "18", "strict", False),
    ("#### １８", "18", "flexible", False),
    # fraction ground truths (exact, with fractions.Fraction)
    ("#### 3/4", "3/4", "strict", True),
    ("#### 6/8 cups", "3/4", "strict", True),
    ("#### 0.75", "3/4", "strict", True),
    ("#### \\frac{3}{4}", "3/4", "strict", True),
    ("#### 3/4", "\\dfrac{3}{4}", "strict", True),
    ("#### -3/4", "-3/4", "strict", True),
    ("#### 3/4", "-3/4", "strict", False),
    ("#### 2", "4/2", "strict", True),
    ("#### 1/0", "1/0", "strict", False),
    ("so the share is 3/4", "3/4", "flexible", True),
    ("3/4 of 8 is 6", "3/4", "flexible", False),
]


@pytest.mark.parametrize(("text", "gold", "mode", "expected"), EQUIVALENCE_CASES)
def test_is_correct_table(text, gold, mode, expected):
    assert is_correct(text, gold, mode=mode) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1,080", "1080"),
        ("$5", "5"),
        ("018.500", "18.5"),
        ("-0.0", "0"),
        ("18.", "18"),
        (".5", "0.5"),
        ("- 3", "-3"),
        (18, "18"),
        (0.1, "0.1"),
        (Decimal("1E+3"), "1000"),
        ("3/4", None),
        ("abc", None),
        ("1e5", None),
        (float("nan"), None),
        (None, None),
        (True, None),
    ],
)
def test_normalize_number(value, expected):
    assert normalize_number(value) == expected


@pytest.mark.parametrize(
    ("ground_truth", "expected"),
    [
        ("18.50", "18.5"),
        ("1,080", "1080"),
        ("$5", "5"),
        (18, "18"),
        ("007", "7"),
        ("Step one.\n#### 18.50", "18.5"),
        ("#### 18\n#### (done)", "18"),
        ("3/4", None),
        ("eighteen", None),
        (None, None),
    ],
)
def test_gold_number(ground_truth, expected):
    """The one gold-number parser (the loader's answer column, is_correct and the evaluator use it)."""
    assert gold_number(ground_truth) == expected


def test_huge_numbers_compare_exactly_without_int_conversion():
    digits = "9" * 100_000  # int(digits) raises ValueError (4300-digit limit)
    assert extract_answer("#### " + digits) == digits
    assert is_correct("#### " + digits, digits)
    assert is_correct("#### " + digits + ".000", digits)
    assert is_correct("#### 000" + digits, digits)
    assert not is_correct("#### " + digits[:-1] + "8", digits)
    assert not is_correct("#### " + digits, digits[:-1])
    assert not is_correct("#### " + digits, "18")
    assert is_correct("#### 1" + "0" * 200, "1" + "0" * 200 + ".0")
    assert not is_correct("#### 1" + "0" * 200, 10**200 + 1)


def test_invalid_mode_raises_eagerly():
    for call in (
        lambda: extract_answer("#### 1", mode="strcit"),
        lambda: is_correct("#### 1", "1", mode="loose"),
        lambda: accuracy_reward(["#### 1"], answer=["1"], mode="x"),
        lambda: make_accuracy_reward("x"),
    ):
        with pytest.raises(ValueError, match="mode"):
            call()


# --------------------------------------------------------------------------------------------------------------------
# Reward functions
# --------------------------------------------------------------------------------------------------------------------


def test_reward_functions_on_strings_and_conversations():
    completions = [
        "2 + 2 = 4\n#### 4",
        "#### 5",
        "I think 4",
        [{"role": "assistant", "content": "So:\n#### 4"}],
        [{"role": "user", "content": "#### 9"}, {"role": "assistant", "content": "#### 4"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "#### 4"}]}],
        [
            {"role": "assistant", "content": "#### 3"},
            {"role": "tool", "content": "ok"},
            {"role": "assistant", "content": "#### 4"},
        ],
    ]
    answer = ["4"] * len(completions)
    assert accuracy_reward(completions, answer=answer) == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert accuracy_flexible_reward(completions, answer=answer) == [1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert accuracy_reward(completions, answer=answer, mode="flexible") == accuracy_flexible_reward(
        completions, answer=answer
    )
    assert format_reward(completions) == [1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert completion_text([{"role": "user", "content": "hi"}]) == "hi"  # no assistant message: the last message


def test_reward_functions_take_trl_keyword_arguments():
    """TRL calls f(prompts=..., completions=..., completion_ids=..., <dataset columns>, trainer_state=..., ...)."""
    kwargs = {
        "prompts": ["q1", "q2"],
        "completions": ["#### 1", "#### 3"],
        "completion_ids": [[1, 2], [3]],
        "answer": ["1", "2"],
        "question": ["q1", "q2"],
        "trainer_state": object(),
        "log_extra": lambda *a, **k: None,
        "log_metric": lambda *a, **k: None,
    }
    assert accuracy_reward(**kwargs) == [1.0, 0.0]
    assert accuracy_flexible_reward(**kwargs) == [1.0, 0.0]
    assert format_reward(**kwargs) == [1.0, 1.0]
    assert make_overlong_reward(3, 2)(**kwargs) == [-0.5, 0.0]


def test_reward_functions_bad_samples_score_zero_individually():
    completions = ["#### 1", None, 42, {"content": "#### 1"}, [[["#### 1"]]], [{"role": "assistant"}], "#### 1", ""]
    assert accuracy_reward(completions, answer=["1"] * 8) == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert accuracy_reward(["#### 1", "#### 1", "#### 1"], answer=["1", None, object()]) == [1.0, 0.0, 0.0]
    assert accuracy_reward(["#### 1", "#### 1"], answer=["1"]) == [1.0, 0.0]  # missing answers
    assert accuracy_reward(["#### 1", "#### 1"], answer="1") == [1.0, 1.0]  # a single answer is broadcast
    assert accuracy_reward(["#### 1"]) == [0.0]  # no answer column at all
    assert accuracy_reward(None, answer=None) == []
    assert format_reward(None) == []
    assert format_reward([None, 3.5, "#### 2"]) == [0.0, 0.0, 1.0]


def test_make_accuracy_reward_names_and_pickling():
    strict, flexible = make_accuracy_reward("strict"), make_accuracy_reward("flexible")
    assert strict.__name__ == "accuracy_reward"
    assert flexible.__name__ == "accuracy_flexible_reward"
    assert make_accuracy_reward() is accuracy_reward
    # TRL logs rewards under `rewards/<getattr(func, "__name__", type(func).__name__)>/mean`
    assert make_overlong_reward(100, 20).__name__ == OVERLONG_REWARD_NAME == "overlong_reward"
    assert set(MODES) == {"strict", "flexible"}
    assert evaluator.MODES is MODES  # one definition of the metric modes
    for func in (strict, flexible, format_reward, make_overlong_reward(10, 2, 0.5)):
        clone = pickle.loads(pickle.dumps(func))
        assert clone.__name__ == func.__name__
        assert clone(completions=["#### 1"], answer=["1"], completion_ids=[[0] * 9]) == func(
            completions=["#### 1"], answer=["1"], completion_ids=[[0] * 9]
        )


def test_works_outside_the_main_thread():
    """No signal-based time-outs (math-verify's would fail in a worker thread)."""
    results = []

    def work():
        results.append(
            (is_correct("#### 3/4", "3/4"), is_correct("#### 1,080", "1080"), accuracy_reward(["#### 2"], ["2"]))
        )

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=10)
    assert results == [(True, True, [1.0])]


def test_import_is_light():
    code = "import sys, trl_ext.rewards; assert not {'torch', 'trl', 'transformers', 'sympy'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_each_rewards_module_loads_alone():
    """Public names load on first access: importing DAPO's overlong shaping loads no answer parsing or GSM8K reward."""
    code = (
        "import sys, trl_ext.rewards.length; "
        "loaded = {'trl_ext.rewards.gsm8k', 'trl_ext.rewards.answers'} & set(sys.modules); assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)


def test_dapo_trainer_does_not_import_the_gsm8k_rewards():
    """DAPO's overlong shaping knows no task: DAPOTrainer imports it from trl_ext.rewards.length, and importing the
    trainer loads neither the GSM8K reward functions nor the answer parsing."""
    tree = ast.parse((REPO / "trl_ext" / "trainers" / "dapo.py").read_text())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "trl_ext.rewards.length" in modules and "trl_ext.rewards.gsm8k" not in modules
    code = (
        "import sys, trl_ext.trainers.dapo; "
        "loaded = {'trl_ext.rewards.gsm8k', 'trl_ext.rewards.answers'} & set(sys.modules); assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


# --------------------------------------------------------------------------------------------------------------------
# Every GSM8K test gold solution
# --------------------------------------------------------------------------------------------------------------------


def _gsm8k_test_rows():
    path = GSM8K_DIR / "test.jsonl"
    if not path.exists():
        pytest.skip(f"GSM8K not found at {GSM8K_DIR}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    assert len(rows) == 1319
    return rows


def _final_answer(solution):
    return solution.rsplit("####", 1)[1].strip()


def test_every_gsm8k_gold_solution_scores_one():
    rows = _gsm8k_test_rows()
    solutions = [row["answer"] for row in rows]
    finals = [_final_answer(s) for s in solutions]
    assert accuracy_reward(solutions, answer=finals) == [1.0] * len(rows)
    assert accuracy_flexible_reward(solutions, answer=finals) == [1.0] * len(rows)
    assert format_reward(solutions) == [1.0] * len(rows)
    # the full solution is accepted as ground truth too
    assert accuracy_reward(solutions, answer=solutions) == [1.0] * len(rows)
    # with thousands separators removed from the ground truth
    assert accuracy_reward(solutions, answer=[f.replace(",", "") for f in finals]) == [1.0] * len(rows)


def test_every_gsm8k_gold_solution_with_a_changed_final_number_scores_zero():
    rows = _gsm8k_test_rows()
    solutions = [row["answer"] for row in rows]
    finals = [_final_answer(s) for s in solutions]
    changed = [
        s.rsplit("####", 1)[0] + f"#### {int(f.replace(',', '')) + 1}" for s, f in zip(solutions, finals, strict=True)
    ]
    assert accuracy_reward(changed, answer=finals) == [0.0] * len(rows)
    assert accuracy_flexible_reward(changed, answer=finals) == [0.0] * len(rows)
    assert format_reward(changed) == [1.0] * len(rows)
    # dropping the final line leaves no strict answer
    truncated = [s.rsplit("####", 1)[0] for s in solutions]
    assert accuracy_reward(truncated, answer=finals) == [0.0] * len(rows)
    assert format_reward(truncated) == [0.0] * len(rows)


# --------------------------------------------------------------------------------------------------------------------
# Robustness properties: never raises, deterministic, fast
# --------------------------------------------------------------------------------------------------------------------


def _timed(func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start


def _check_all(text, gold, limit):
    """Every public function on (text, gold): no exception, valid type, deterministic, within ``limit`` seconds."""
    calls = [
        (extract_answer, (text,), {"mode": "strict"}),
        (extract_answer, (text,), {"mode": "flexible"}),
        (is_correct, (text, gold), {"mode": "strict"}),
        (is_correct, (text, gold), {"mode": "flexible"}),
        (normalize_number, (gold,), {}),
        (accuracy_reward, ([text],), {"answer": [gold]}),
        (accuracy_flexible_reward, ([text],), {"answer": [gold]}),
        (accuracy_reward, ([[{"role": "assistant", "content": text}]],), {"answer": [gold]}),
        (format_reward, ([text],), {}),
        (format_reward, ([[{"role": "assistant", "content": text}]],), {}),
    ]
    for func, args, kwargs in calls:
        first, seconds = _timed(func, *args, **kwargs)
        second, _ = _timed(func, *args, **kwargs)
        assert first == second, func.__name__
        assert seconds < limit, f"{func.__name__} took {seconds:.3f}s"
        if func is extract_answer or func is normalize_number:
            assert first is None or (isinstance(first, str) and first.lstrip("-").replace(".", "", 1).isdigit())
            assert first is None or first.isascii()
        elif func is is_correct:
            assert isinstance(first, bool)
        else:
            assert isinstance(first, list) and len(first) == 1 and first[0] in (0.0, 1.0)


PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers_text = st.from_regex(r"-?\$?[0-9][0-9,]{0,12}(\.[0-9]{0,4})?", fullmatch=True)
answer_like = st.one_of(st.text(max_size=30), numbers_text, st.none(), st.integers(), st.floats())
gsm8k_like_text = st.builds(
    lambda prefix, marker, number, suffix: prefix + marker + number + suffix,
    st.text(max_size=200),
    st.sampled_from(["#### ", "####", "#### $", "\n#### ", "##### ", "#### -", "###"]),
    numbers_text,
    st.text(max_size=40),
)


@PROPERTY_SETTINGS
@given(text=st.one_of(st.text(), gsm8k_like_text), gold=answer_like)
def test_property_arbitrary_text_never_raises(text, gold):
    _check_all(text, gold, SMALL_INPUT_SECONDS)


@PROPERTY_SETTINGS
@given(prefix=st.text(max_size=300), number=numbers_text, suffix=st.sampled_from(["", "\n", " apples", ".", "\n\n"]))
def test_property_strict_reads_the_marked_number(prefix, number, suffix):
    """Appending '#### N' to any text makes N the strict answer (whatever '####' lines came before)."""
    text = prefix + "\n#### " + number + suffix
    expected = normalize_number(number)
    assert normalize_number(extract_answer(text)) == expected
    assert is_correct(text, number)
    assert accuracy_reward([text], answer=[number]) == [1.0]
    assert format_reward([text]) == [1.0]


@PROPERTY_SETTINGS
@given(a=numbers_text, b=numbers_text)
def test_property_equivalence_is_numeric(a, b):
    """is_correct agrees with exact Decimal equality of the normalized numbers."""
    same = Decimal(normalize_number(a)) == Decimal(normalize_number(b))
    assert is_correct(f"#### {a}", b) is same
    assert is_correct(f"#### {a}", b, mode="flexible") is (
        normalize_number(extract_answer(f"#### {a}", "flexible")) == normalize_number(b)
    )


def _strict_brute_force(text):
    """Reference: try the '####' pattern at every position, keep the last success (quadratic, fine for short text)."""
    from trl_ext.rewards.answers import _STRICT_AT

    for start in range(len(text) - 1, -1, -1):
        match = _STRICT_AT.match(text, start)
        if match:
            number = match.group(5).replace(",", "")
            number = "0" + number if number.startswith(".") else number
            return ("-" if match.group(3) else "") + number
    return None


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="#### $-\u2212.,0129/\na\u0661", max_size=60))
def test_property_strict_marker_skipping_matches_brute_force(text):
    assert extract_answer(text) == _strict_brute_force(text)


json_like = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=50)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["role", "content", "text", "type", "x"]), children, max_size=4),
    ),
    max_leaves=20,
)


@PROPERTY_SETTINGS
@given(completions=st.one_of(json_like, st.lists(json_like, max_size=5)), answer=json_like, ids=json_like)
def test_property_weird_structures_score_zero_not_raise(completions, answer, ids):
    for func in (accuracy_reward, accuracy_flexible_reward, format_reward, make_overlong_reward(8, 4)):
        rewards, seconds = _timed(func, completions=completions, answer=answer, completion_ids=ids)
        assert isinstance(rewards, list) and all(isinstance(r, float) for r in rewards)
        if isinstance(completions, list):
            assert len(rewards) == len(completions)
        assert seconds < SMALL_INPUT_SECONDS


DIGITS_100K = "9" * 100_000
PATHOLOGICAL = {
    "1MB letters": "a" * 1_000_000,
    "1MB digits": "7" * 1_000_000,
    "1MB hashes": "#" * 1_000_000,
    "1MB '#### '": "#### " * 200_000,
    "1MB '####x'": "####x" * 200_000,
    "many '#### N'": "#### 1\n" * 150_000,
    "answer then 150k bare markers": "#### 5\n" + "#### x\n" * 150_000,
    "#### then 1MB blanks": "####" + " \t" * 500_000,
    "#### $ then 1MB blanks": "#### $" + " " * 1_000_000,
    "100k digits after ####": "#### " + DIGITS_100K,
    "100k digits after #### with separators": "#### " + ",".join(["999"] * 33_000) + ".5",
    "100k digits fraction": "#### " + DIGITS_100K + "/" + DIGITS_100K,
    "100k digits then 1MB text": "#### " + DIGITS_100K + "x" * 1_000_000,
    "1MB digit-dot runs": "1." * 500_000,
    "1MB digit-comma runs": "1," * 500_000,
    "1MB minus signs": "-" * 1_000_000,
    "1MB dollars": "$" * 1_000_000,
    "1MB arabic digits": "١٢" * 500_000,
    "1MB fullwidth digits after ####": "#### " + "１２" * 500_000,
    "1MB emoji and a digit": "3" + "\U0001f600" * 1_000_000,
    "1MB newlines": "\n" * 1_000_000,
    "1MB nested fractions": "#### " + "\\frac{" * 100_000,
    "1MB slashes": "#### 1" + "/" * 1_000_000,
}
PATHOLOGICAL_GOLDS = ["5", "3/4", DIGITS_100K, "#" * 100_000, "1" * 5000 + "/7"]


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_inputs_are_fast_and_safe(name):
    text = PATHOLOGICAL[name]
    for gold in PATHOLOGICAL_GOLDS:
        _check_all(text, gold, HUGE_INPUT_SECONDS)


def test_pathological_expected_values():
    assert extract_answer(PATHOLOGICAL["100k digits after ####"]) == DIGITS_100K
    assert is_correct(PATHOLOGICAL["100k digits after ####"], DIGITS_100K)
    assert is_correct(PATHOLOGICAL["100k digits then 1MB text"], DIGITS_100K)
    assert extract_answer(PATHOLOGICAL["many '#### N'"]) == "1"
    assert extract_answer(PATHOLOGICAL["1MB digits"], "flexible") == "7" * 1_000_000
    assert extract_answer(PATHOLOGICAL["1MB emoji and a digit"], "flexible") == "3"
    assert extract_answer("#### 7\n" + "#" * 1_000_000) == "7"  # one long run of '#' counts as one marker
    assert extract_answer("#### 7" + "\n#### x" * 999) == "7"
    # documented limit: more than 1000 number-less markers after the answer give no strict answer
    assert extract_answer(PATHOLOGICAL["answer then 150k bare markers"]) is None
    assert extract_answer(PATHOLOGICAL["answer then 150k bare markers"], "flexible") == "5"


# --------------------------------------------------------------------------------------------------------------------
# DAPO overlong shaping
# --------------------------------------------------------------------------------------------------------------------


def test_overlong_penalty_boundaries():
    # L_max = 100, L_cache = 20: 0 up to 80, linear to -1 at 100, -1 beyond
    assert overlong_penalty([0, 79, 80], 100, 20) == [0.0, 0.0, 0.0]
    assert overlong_penalty([81, 90, 99, 100], 100, 20) == [-0.05, -0.5, -0.95, -1.0]
    assert overlong_penalty([101, 10_000], 100, 20) == [-1.0, -1.0]
    assert overlong_penalty([80, 90, 100, 101], 100, 20, penalty_factor=0.5) == [0.0, -0.25, -0.5, -0.5]
    assert overlong_penalty([80, 90, 100], 100, 20, penalty_factor=0.0) == [0.0, 0.0, 0.0]
    # no buffer: a hard -factor cliff after L_max; a buffer of L_max: linear from 0
    assert overlong_penalty([99, 100, 101], 100, 0, penalty_factor=2.0) == [0.0, 0.0, -2.0]
    assert overlong_penalty([0, 50, 100], 100, 100) == [0.0, -0.5, -1.0]
    # odd lengths give 0.0, never an exception
    assert overlong_penalty([None, "90", float("nan"), float("inf"), 90.0], 100, 20) == [0.0, 0.0, 0.0, 0.0, -0.5]
    assert overlong_penalty(None, 100, 20) == []
    for value in overlong_penalty(range(130), 100, 20, penalty_factor=0.7):
        assert -0.7 <= value <= 0.0


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((0, 0), ValueError),
        ((100, 101), ValueError),
        ((100, -1), ValueError),
        ((100, 20, -1.0), ValueError),
        ((100, 20, float("nan")), ValueError),
        ((100.0, 20), TypeError),
        ((100, "20"), TypeError),
        ((100, 20, "1"), TypeError),
    ],
)
def test_overlong_invalid_configuration_raises(args, error):
    with pytest.raises(error):
        overlong_penalty([1], *args)
    with pytest.raises(error):
        make_overlong_reward(*args)


@pytest.mark.parametrize(("max_len", "buffer"), [(100, 20), (10, 10), (10, 0), (7, 3), (1, 1), (512, 128), (4096, 512)])
def test_overlong_matches_trl_soft_overlong_punishment(max_len, buffer):
    get_soft_overlong_punishment = pytest.importorskip("trl.rewards").get_soft_overlong_punishment
    trl_reward = get_soft_overlong_punishment(max_completion_len=max_len, soft_punish_cache=buffer)
    lengths = sorted(
        {
            0,
            1,
            max_len - buffer - 1,
            max_len - buffer,
            max_len - buffer + 1,
            max_len - 1,
            max_len,
            max_len + 1,
            max_len + 50,
        }
        | set(range(max(0, max_len - buffer - 2), max_len + 3))
    )
    lengths = [n for n in lengths if n >= 0]
    ids = [[0] * n for n in lengths]
    expected = trl_reward(ids)
    assert overlong_penalty(lengths, max_len, buffer) == expected  # bit-for-bit for factor 1
    ours = make_overlong_reward(max_len, buffer)
    assert ours(completions=[""] * len(ids), completion_ids=ids) == expected
    # a factor scales TRL's values
    scaled = overlong_penalty(lengths, max_len, buffer, penalty_factor=0.25)
    assert scaled == pytest.approx([0.25 * v for v in expected], abs=1e-12)


def test_overlong_reward_function():
    reward = make_overlong_reward(max_completion_length=10, buffer_len=4, penalty_factor=1.0)
    assert isinstance(reward, OverlongReward)
    assert reward.__name__ == "overlong_reward"
    ids = [[1] * 6, [1] * 8, [1] * 10, None, "abc", [1] * 12]
    assert reward(completions=["x"] * 6, completion_ids=ids) == [0.0, -0.5, -1.0, 0.0, 0.0, -1.0]
    assert reward(completions=["x", "y"]) == [0.0, 0.0]  # no completion_ids: 0.0
    assert reward(completions=["x", "y", "z"], completion_ids=[[1] * 9]) == [-0.75, 0.0, 0.0]  # aligned to completions
    assert reward(completion_ids=[[1] * 9]) == [-0.75]
    assert reward() == []


@pytest.mark.parametrize(
    "text, expected",
    [
        ("3 + 6 = 9\n9 - 2 = 7\n#### 7", True),
        ("Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72", True),  # GSM8K's calculator annotation
        ("2 * 4 = $8\n#### 8", True),
        ("#### 9", False),
        ("#### 3 + 6 = 9", False),  # an equation on the answer line is not work shown before it
        ("She has 9 apples.\n#### 9", False),  # prose without an equation
        ("x = y\n#### 1", False),  # no numbers
        ("", False),
        (None, False),
        (42, False),
    ],
)
def test_shows_work(text, expected):
    assert shows_work(text) is expected
