"""Real answer shapes the scorers must read: a block whose closing tag never comes, empty
placeholders (``\\boxed{}``, ``<answer></answer>``) before the real answer, and text written
after the end of the turn. Each shape as the built-in tasks see it (chat style)."""

from __future__ import annotations

import pytest
from dmpo.tasks.base import answer_block, cut_at_end_of_turn, extract_compact_answer, extract_tagged_answer, last_boxed
from dmpo.tasks.countdown import countdown
from dmpo.tasks.gsm8k import gsm8k
from dmpo.tasks.sudoku import SudokuTask

GSM = {"question": "q", "answer": "18", "solution": "#### 18"}
COUNTDOWN = {"numbers": [49, 55, 53], "target": 51}


@pytest.mark.parametrize(("completion", "answer"), [
    # the closing tag never comes: the generation ran out, or the turn ended inside the block
    ("<reasoning>r</reasoning>\n<answer>\n18", "18"),
    ("<reasoning>r</reasoning>\n<answer>\n\\boxed{18}", "18"),
    ("<answer>17</answer> on second thought <answer> 18", "18"),  # the unclosed one is the last word
    ("<reasoning>r</reasoning>\n<answer>\n", None),  # opened, nothing in it
    # empty placeholders before the real answer
    ("the answer goes in \\boxed{} like this: \\boxed{18}", "18"),
    ("\\boxed{18} and the format is \\boxed{ }", "18"),  # an empty box after it is not the answer either
    ("<answer></answer> ... <answer>18</answer>", "18"),
    ("<answer>18</answer> ... <answer> </answer>", "18"),
    ("<answer>\\boxed{}18</answer>", "18"),  # an empty box inside the tag is not unwrapped
    ("<answer></answer>\nso \\boxed{18}", "18"),  # an empty tag falls through to the box
    # text after the end of the turn (kept as text by a decoder that does not skip special tokens)
    ("<answer>\n\\boxed{18}<|eot_id|><|endoftext|><answer>5</answer>", "18"),
    ("<answer>18<|im_end|>\n<answer>5</answer>", "18"),
    ("<answer>18</answer><|endoftext|>\\boxed{5}", "18"),
])
def test_chat_answer_shapes(completion, answer):
    assert extract_tagged_answer(completion) == answer


def test_each_shape_scores_in_the_tasks_that_read_it():
    gsm = gsm8k(train_source="unused.jsonl", test_source="unused.jsonl")
    assert gsm.score("<reasoning>9*2</reasoning>\n<answer>\n18", GSM) == 1.0
    assert gsm.score("<answer>\\boxed{}</answer> \\boxed{18}", GSM) == 1.0
    assert gsm.score("<answer>18<|eot_id|> no, <answer>19</answer>", GSM) == 1.0
    cd = countdown()
    assert cd.score("<answer>\n\\boxed{49 + 55 - 53}", COUNTDOWN) == 1.0
    assert cd.score("<answer></answer><answer>49 + 55 - 53</answer>", COUNTDOWN) == 1.0
    assert cd.score("<answer>49 + 55 - 53<|eot_id|>+0*1", COUNTDOWN) == 1.0


def test_sudoku_chat_shapes():
    task = SudokuTask(prompt_style="chat", train_size=40, test_size=8)
    item = {"puzzle": "4320004330100004", "solution": "4321124334122134"}
    assert task.score("<answer>\n4321124334122134", item) == 1.0  # never closed
    assert task.score("<answer></answer>\n<answer>4321124334122134</answer>", item) == 1.0
    assert task.score("<answer>4321124334122134<|eot_id|>1111", item) == 1.0


def test_compact_answers_end_at_the_turn():
    assert extract_compact_answer(" 42<|eot_id|>7") == "42"
    assert extract_compact_answer("42<|im_end|>", stops=("\n",)) == "42"
    compact = SudokuTask(prompt_style="compact", train_size=40, test_size=8)
    assert compact.extract_answer("4321124334122134<|endoftext|>9999") == "4321124334122134"


def test_helpers_stay_linear_on_repeated_tags():
    # 100,000 characters of unclosed and empty tags answer quickly (one scan each)
    text = "<answer>" * 20_000 + "</answer><answer></answer>" * 2_000
    assert answer_block(text) is not None
    assert last_boxed("\\boxed{}" * 30_000, nonempty=True) is None
    assert cut_at_end_of_turn("a<|im_end|>b<|eot_id|>") == "a"
