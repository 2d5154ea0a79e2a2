"""MATH500: math-verify equivalence in a time-limited helper process, loading, extraction."""

from __future__ import annotations

import json
import threading
import time

import pytest

pytest.importorskip("math_verify", reason="the math500 task needs math-verify (pip install 'dllm-dmpo[math]')")

from dmpo.tasks.math500 import Math500Task, reference_answer
from dmpo.tasks.mathverify import (
    MathVerifier,
    answers_equivalent,
    prescreen,
    shared_verifier,
)

from dmpo_core.errors import ConfigError, DataError

ROWS = [
    {"problem": "Simplify $\\frac{6}{8}$.", "answer": "\\frac{3}{4}", "subject": "Algebra", "level": 1,
     "unique_id": "a/1", "solution": "It is $\\boxed{\\frac{3}{4}}$."},
    {"problem": "Solve $x^2 = 4$, $x > 0$.", "answer": "2", "subject": "Algebra", "level": 2,
     "unique_id": "a/2", "solution": "$\\boxed{2}$"},
]


@pytest.fixture(scope="module", autouse=True)
def _warm_helper():
    shared_verifier().start()  # the helper imports math-verify while the first tests run
    yield


# -- equivalence


@pytest.mark.parametrize(
    ("gold", "prediction", "same"),
    [
        ("\\frac{3}{4}", "0.75", True),
        ("\\frac{3}{4}", "3/4", True),
        ("\\frac{3}{4}", "\\dfrac{3}{4}", True),
        ("\\frac{14}{3}", "\\frac {14} {3}", True),  # whitespace only: matched without the helper
        ("2", "\\sqrt{4}", True),
        ("10", "11", False),
        ("\\frac{3}{4}", None, False),
        ("\\frac{3}{4}", "", False),
    ],
)
def test_equivalence_through_math_verify(gold, prediction, same):
    assert answers_equivalent(gold, prediction) is same


@pytest.mark.parametrize(
    "answer",
    ["9^{9^{9^{9}}}", "9**9**9**9", "9^9^9", "10^{100000}", "123456!", "(" * 10_000 + "1" + ")" * 10_000, "x" * 100_000],
)
def test_prescreen_refuses_explosive_answers_at_once(answer):
    assert not prescreen(answer)
    start = time.perf_counter()
    assert answers_equivalent("2", answer) is False
    assert time.perf_counter() - start < 0.05


def test_an_unscreened_power_tower_is_stopped_by_the_time_limit():
    verifier = shared_verifier()
    before = verifier.timeouts
    start = time.perf_counter()
    # without the pre-screen, sympy would try to build 9^(9^(9^9)) exactly: only the kill stops it
    assert answers_equivalent("7", "9^{9^{9^{9}}}", screen=False, timeout_s=0.5) is False
    assert time.perf_counter() - start < 0.5 + 1.0
    assert verifier.timeouts == before + 1
    assert answers_equivalent("5", "10/2") is True  # a fresh helper took over


def test_a_hung_helper_is_killed_and_replaced_from_any_thread():
    verifier = MathVerifier()
    try:
        verifier.start()
        results: list[bool] = []
        worker = threading.Thread(target=lambda: results.append(verifier._sleep(30, timeout_s=0.3)))
        started = time.perf_counter()
        worker.start()
        worker.join(timeout=60)
        assert results == [False]  # no answer within the limit
        assert verifier.timeouts == 1
        assert time.perf_counter() - started < 30
        assert verifier.equivalent("\\frac{1}{2}", "0.5")
    finally:
        verifier.close()


# -- task


def test_reference_answer_unwraps_a_solution_box():
    assert reference_answer("so $\\boxed{\\frac{1}{2}}$ done") == "\\frac{1}{2}"
    assert reference_answer(" 5 ") == "5"


def test_loads_local_files_and_scores_answers(tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    task = Math500Task.from_options(test_source=str(path), train_source=str(path), cache_dir=str(tmp_path / "c"))
    items = task.test_items()
    assert items[0] == {"question": ROWS[0]["problem"], "answer": "\\frac{3}{4}", "solution": ROWS[0]["solution"],
                        "subject": "Algebra", "level": 1, "unique_id": "a/1"}
    assert task.train_items() == []  # every training problem is a test problem here
    good = "<reasoning>\n6/8 = 3/4\n</reasoning>\n<answer>\n\\boxed{\\dfrac{3}{4}}\n</answer>"
    assert task.extract_answer(good) == "\\dfrac{3}{4}"
    assert task.correctness(good, items[0]) == 1.0
    assert task.score("the answer is \\boxed{0.75}", items[0]) == 1.0  # no tags: last \boxed{}
    assert task.score("<answer>4/3</answer>", items[0]) == 0.0
    assert task.metric([good, "?"], items) == {"accuracy": 0.5, "accuracy_string_match": 0.5, "answered": 0.5}
    # math-verify credits the value in other notation; the papers' string match does not
    decimal = "<answer>\\boxed{0.75}</answer>"
    assert task.metric([decimal], items[:1]) == {"accuracy": 1.0, "accuracy_string_match": 0.0, "answered": 1.0}
    assert task.metric_versions()["accuracy_string_match"] == "math-string-match/1"
    assert task.metric_versions()["accuracy"].startswith("math-verify/")


def test_parquet_with_other_column_names(tmp_path):
    import datasets

    rows = [{"q": r["problem"], "sol": r["solution"]} for r in ROWS]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "m.parquet"))
    task = Math500Task.from_options(test_source=str(tmp_path / "m.parquet"), question_column="q", answer_column="sol",
                                    cache_dir=str(tmp_path / "c"))
    assert [it["answer"] for it in task.test_items()] == ["\\frac{3}{4}", "2"]  # the last \boxed{} of "sol"


def test_missing_column_and_missing_training_source(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"problem": "x"}) + "\n")
    with pytest.raises(DataError, match=r"m\.jsonl.*missing column\(s\) answer"):
        Math500Task.from_options(test_source=str(path), cache_dir=str(tmp_path / "c")).test_items()
    with pytest.raises(ConfigError, match="train_source"):
        Math500Task.from_options(test_source=str(path)).train_items()


def test_compact_style_defaults_to_correctness_only():
    task = Math500Task.from_options(prompt_style="compact")
    assert task.reward_weights() == {"correct": 2.0}
    assert task.prompt({"question": "1+1?"}, None) == "Problem: 1+1?\nAnswer:"
    assert task.extract_answer(" \\frac{1}{2} ") == "\\frac{1}{2}"
