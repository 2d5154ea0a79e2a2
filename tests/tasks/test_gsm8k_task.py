"""GSM8K: numeric matching, loading local json/jsonl/parquet/arrow files, clear data errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from dmpo.tasks.gsm8k import (
    Gsm8kTask,
    numbers_match,
    parse_last_number,
    reference_answer,
)

from dmpo_core.errors import DataError

ROWS = [
    {"question": "Ann has 3 boxes of 4 pens. How many pens?", "answer": "3*4=12\n#### 12"},
    {"question": "A shop sold 1,200 cups at $2 each. Revenue?", "answer": "1200*2=2400\n#### 2,400"},
    {"question": "Tim owes 5 and pays 8. Balance?", "answer": "5-8=-3\n#### -3"},
]
TEST_ROWS = [{"question": "What is 10 halved?", "answer": "#### 5"}, ROWS[0]]  # ROWS[0] is also a test question


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def task_for(tmp_path, train, test, **options) -> Gsm8kTask:
    return Gsm8kTask.from_options(train_source=str(train), test_source=str(test), cache_dir=str(tmp_path / "cache"),
                                  **options)


# -- numbers


@pytest.mark.parametrize(
    ("prediction", "reference", "same"),
    [
        ("72", "72", True),
        ("1,234", "1234", True),  # commas between digit groups
        ("$1,234.00", "1234", True),  # dollar sign, trailing zeros
        ("18.0", "18", True),
        ("The answer is 18 dollars.", "18", True),  # the last number counts
        ("12 - 2 = 10", "10", True),
        ("10-5", "5", True),  # a minus after a digit is an operator, not a sign
        ("-3", "-3", True),
        ("3", "-3", False),
        ("18.5", "18", False),
        ("eighteen", "18", False),
        ("", "18", False),
        (None, "18", False),
        ("9" * 100, "9" * 100, False),  # absurdly long numbers never match
    ],
)
def test_numbers_match(prediction, reference, same):
    assert numbers_match(prediction, reference) is same


def test_reference_answer_reads_after_the_last_marks():
    assert reference_answer("a\n#### 1,000") == "1000"
    assert reference_answer("#### 1\nmore\n#### $72") == "72"
    assert reference_answer(" 42 ") == "42"  # a bare number column works too
    assert parse_last_number("x = 3.50") == parse_last_number("3.5")


# -- loading


def test_loads_jsonl_and_drops_test_questions_from_train(tmp_path):
    task = task_for(tmp_path, write_jsonl(tmp_path / "train.jsonl", ROWS), write_jsonl(tmp_path / "test.jsonl", TEST_ROWS))
    train, test = task.train_items(), task.test_items()
    assert [it["answer"] for it in test] == ["5", "12"]
    assert [it["answer"] for it in train] == ["2400", "-3"]  # ROWS[0] is in the test set
    assert train[0]["solution"] == ROWS[1]["answer"]
    item = train[0]
    good = "<reasoning>\n1200 * 2\n</reasoning>\n<answer>\n$2,400\n</answer>"
    assert task.correctness(good, item) == 1.0
    assert task.correctness("<answer>2300</answer>", item) == 0.0


def test_loads_json_parquet_and_arrow(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(ROWS)
    (tmp_path / "rows.json").write_text(json.dumps(ROWS))  # a JSON array
    ds.to_parquet(str(tmp_path / "rows.parquet"))
    ds.save_to_disk(str(tmp_path / "saved"))  # a save_to_disk folder of .arrow files
    arrow_file = next((tmp_path / "saved").glob("*.arrow"))
    for source in ("rows.json", "rows.parquet", arrow_file, "saved"):
        path = tmp_path / source
        task = task_for(tmp_path, path, path, max_test_items=2)
        assert [it["answer"] for it in task.test_items()] == ["12", "2400"], source


def test_missing_file_is_one_data_error_naming_it(tmp_path):
    task = task_for(tmp_path, tmp_path / "nope.jsonl", tmp_path / "nope.jsonl")
    with pytest.raises(DataError) as err:
        task.test_items()
    assert "nope.jsonl" in str(err.value) and "test_source" in str(err.value)


def test_missing_column_is_one_data_error_naming_file_and_column(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "x?", "solution": "#### 1"}])
    with pytest.raises(DataError) as err:
        task_for(tmp_path, path, path).test_items()
    assert "q.jsonl" in str(err.value) and "missing column(s) answer" in str(err.value)
    ok = task_for(tmp_path, path, path, answer_column="solution")  # custom data: name the column
    assert ok.test_items()[0]["answer"] == "1"


def test_unreachable_hub_is_a_clear_data_error(tmp_path):
    """In a fresh interpreter with the hub switched off (no network call is made)."""
    code = textwrap.dedent(
        """
        from dmpo.tasks.gsm8k import Gsm8kTask
        from dmpo.tasks.math500 import Math500Task
        from dmpo_core.errors import DataError
        for task in (Gsm8kTask.from_options(), Math500Task.from_options()):
            try:
                task.test_items()
            except DataError as err:
                print("DataError:", err)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("DataError:")]
    assert len(lines) == 2, out.stdout + out.stderr
    for line, hub_id, columns in zip(lines, ("openai/gsm8k", "HuggingFaceH4/MATH-500"),
                                     ("question, answer", "problem, answer")):
        assert hub_id in line and "hub is unreachable" in line
        assert "test_source=" in line and columns in line  # how to pass a local file instead
