"""Countdown: the safe evaluator, the 1.0 / 0.1 / 0 reward, generation and the split."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from dmpo.tasks.countdown import (
    CountdownTask,
    ExpressionError,
    countdown_reward,
    evaluate_expression,
    in_test_bucket,
    load_countdown_jsonl,
    problem_key,
)

from dmpo_core.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PUBLISHED = SHARED_DATA / "countdown_cd3_test.jsonl"


def small_task(**options) -> CountdownTask:
    return CountdownTask.from_options(n_train=300, n_test=40, **options)


# -- evaluator


@pytest.mark.parametrize(
    ("text", "value", "numbers"),
    [
        ("30-(100-93)", Fraction(23), (30, 100, 93)),  # 100-93 = 7; 30-7 = 23
        ("(7-3)*5", Fraction(20), (7, 3, 5)),
        ("1+2*3", Fraction(7), (1, 2, 3)),  # precedence: 2*3 first
        ("8/3", Fraction(8, 3), (8, 3)),  # exact, no float rounding
        ("-4+10", Fraction(6), (4, 10)),  # unary minus is allowed
        ("30 − (100 − 93) = 23", Fraction(23), (30, 100, 93)),  # unicode minus, trailing "= 23" dropped
        ("6 \\times 7", Fraction(42), (6, 7)),
        ("$12 ÷ 4$", Fraction(3), (12, 4)),
    ],
)
def test_evaluator_computes_exact_values_and_lists_literals(text, value, numbers):
    ev = evaluate_expression(text)
    assert ev.value == value
    assert ev.numbers == numbers


@pytest.mark.parametrize(
    "text",
    [
        "9**9**9**9",  # power is not in the grammar
        "2^3",
        "__import__('os')",
        "1.5*2",  # decimals are not Countdown numbers
        "(1+2",
        "1+2)",
        "1 2",
        "",
        "   ",
        "5/(3-3)",  # division by zero is a wrong answer, not a crash
        "(" * 10_000 + "1" + ")" * 10_000,  # far beyond the depth limit
        "1" * 13,  # literal too long
        "999999*999999*999999",  # magnitude limit (1e18 > 1e12)
        "1+" * 200 + "1",  # longer than 256 characters
        "-" * 100 + "1",  # unary-minus chain deeper than the limit
    ],
)
def test_evaluator_rejects_bad_or_dangerous_input(text):
    with pytest.raises(ExpressionError):
        evaluate_expression(text)


def test_evaluator_limits_are_options():
    nested = "(" * 40 + "1" + ")" * 40
    with pytest.raises(ExpressionError):
        evaluate_expression(nested)  # default depth 32
    assert evaluate_expression(nested, max_depth=50).value == 1


# -- reward


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("30-(100-93)", 1.0),  # 30 - 7 = 23 with each number once
        ("(30+93)-100", 1.0),  # 123 - 100 = 23
        ("93-100+30", 1.0),
        ("30+93", 0.1),  # = 123 and misses 100
        ("30-(100-93)+0", 0.1),  # right value but an extra number
        ("100-93", 0.1),  # a number missing
        ("30*100*93", 0.1),  # all numbers, wrong value
        ("30/(100-100)", 0.1),  # division by zero: wrong, not a crash
        ("9**9**9**9", 0.1),  # present but invalid
        (None, 0.0),  # no answer
        ("", 0.0),
        ("  \n ", 0.0),
    ],
)
def test_countdown_reward_levels(answer, expected):
    assert countdown_reward(answer, [30, 100, 93], 23) == expected


def test_reward_accepts_non_integer_intermediate_values():
    # 4 / (1 - 5/6) = 4 / (1/6) = 24: exact fractions make this right.
    assert countdown_reward("4/(1-5/6)", [4, 1, 5, 6], 24) == 1.0


def test_task_reward_reads_the_last_answer_tag_in_chat_style():
    task = small_task()
    item = {"numbers": [30, 100, 93], "target": 23}
    good = "<reasoning>\ntry 30+93 first\n</reasoning>\n<answer>\n30+93\n</answer>\nno: <answer>30-(100-93)</answer>"
    assert task.correctness(good, item) == 1.0
    assert task.score(good, item) == 1.0
    assert task.correctness("<answer>30+93</answer>", item) == 0.1
    assert task.score("<answer>30+93</answer>", item) == 0.0  # evaluation counts only correct answers
    assert task.correctness("30-(100-93)", item) == 0.0  # chat style needs the tag
    assert task.metric([good, "nothing"], [item, item]) == {"accuracy": 0.5, "answered": 0.5}


def test_compact_style_reads_the_whole_completion():
    task = small_task(prompt_style="compact")
    item = {"numbers": [30, 100, 93], "target": 23}
    assert task.prompt(item, None) == "30,100,93>23:"
    assert task.extract_answer(" 30-(100-93) ") == "30-(100-93)"
    assert task.correctness("30-(100-93)", item) == 1.0
    assert task.correctness("", item) == 0.0


# -- generation and split


def test_every_generated_problem_is_solvable_by_its_solution():
    task = small_task()
    for item in task.train_items() + task.test_items():
        assert len(item["numbers"]) == 3
        assert 1 <= item["target"] <= 100
        assert countdown_reward(item["solution"], item["numbers"], item["target"]) == 1.0


def test_four_number_problems_are_solvable_too():
    task = CountdownTask.from_options(count=4, n_train=100, n_test=20)
    for item in task.train_items() + task.test_items():
        assert len(item["numbers"]) == 4
        assert countdown_reward(item["solution"], item["numbers"], item["target"]) == 1.0


def test_split_is_deterministic_for_a_seed():
    a, b = small_task(seed=3), small_task(seed=3)
    assert a.train_items() == b.train_items()
    assert a.test_items() == b.test_items()
    assert small_task(seed=4).train_items() != a.train_items()


def test_train_and_test_are_disjoint_for_any_seeds():
    keys = lambda items: {problem_key(it["numbers"], it["target"]) for it in items}
    test_keys = keys(small_task(seed=0).test_items())
    for seed in (0, 1, 2):
        train = small_task(seed=seed).train_items()
        assert len(keys(train)) == len(train)  # no duplicates inside a split
        assert not keys(train) & test_keys  # the test side is a hash bucket: seed-independent
        assert all(not in_test_bucket(k, 0.1) for k in keys(train))


def test_impossible_ranges_are_a_config_error():
    with pytest.raises(ConfigError, match="widen"):
        CountdownTask.from_options(min_number=1, max_number=1, min_target=50, max_target=60, n_train=5,
                                   n_test=5).test_items()
    with pytest.raises(ConfigError) as err:
        CountdownTask.from_options(count=5, test_fraction=0.0, nonsense=1)
    text = str(err.value)  # every problem at once
    assert "count=5" in text and "test_fraction=0.0" in text and "nonsense" in text


# -- published test file


def test_loads_the_published_test_file():
    if not PUBLISHED.exists():
        pytest.skip(f"shared data not present: {PUBLISHED}")
    items = load_countdown_jsonl(PUBLISHED)
    assert len(items) == 256
    assert items[0] == {"numbers": [30, 100, 93], "target": 23}
    task = CountdownTask.from_options(test_file=str(PUBLISHED), n_train=300)
    assert task.test_items() == items
    published = {problem_key(it["numbers"], it["target"]) for it in items}
    assert not published & {problem_key(it["numbers"], it["target"]) for it in task.train_items()}


def test_bad_test_files_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_countdown_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"input": "1,2,3"}) + "\n")
    with pytest.raises(DataError, match="line 1 lacks column.*output"):
        load_countdown_jsonl(bad)
    bad.write_text(json.dumps({"input": "1,x", "output": "3"}) + "\n")
    with pytest.raises(DataError, match="line 1"):
        load_countdown_jsonl(bad)
