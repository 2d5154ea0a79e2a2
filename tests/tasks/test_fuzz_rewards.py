"""Robustness of every reward and parser on hostile completions (hypothesis).

Laws: no exception escapes a reward or a parser (the evaluator raises only its own
ExpressionError), and every value lies in the component's documented range. Inputs:
arbitrary unicode, tag soup, huge numbers, ``9**9**9**9``, 100,000-character strings,
10,000-deep parentheses, unbalanced and repeated tags, empty strings. Timing is not tested
here (see ``bench/parsers.py``).
"""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from dmpo.tasks import countdown, gsm8k, math500, rewards
from dmpo.tasks.base import (
    extract_compact_answer,
    extract_tagged_answer,
    last_boxed,
    last_tag_content,
    render_template,
)
from dmpo.tasks.countdown import (
    CountdownTask,
    ExpressionError,
    countdown_reward,
    evaluate_expression,
)
from dmpo.tasks.gsm8k import (
    Gsm8kTask,
    numbers_match,
    parse_last_number,
    reference_answer,
)
from hypothesis import given
from hypothesis import strategies as st

from dmpo_core import build_registry

try:
    import math_verify  # noqa: F401

    HAVE_MATH_VERIFY = True
except ImportError:  # pragma: no cover
    HAVE_MATH_VERIFY = False

DEEP = 10_000
LONG = 100_000
ADVERSARIAL = [
    "",
    " \n\t ",
    "9**9**9**9",
    "<answer>9**9**9**9</answer>",
    "<answer>9^{9^{9^{9}}}</answer>",
    "\\boxed{9^{9^{9^{9}}}}",
    "<answer>" + "(" * DEEP + "1" + ")" * DEEP + "</answer>",
    "(" * DEEP + "1" + ")" * DEEP,
    "(" * DEEP,
    ")" * DEEP,
    "x" * LONG,
    "9" * LONG,
    "<answer>" + "9" * LONG + "</answer>",
    "<answer>" * (LONG // 8),
    "</answer>" * (LONG // 9),
    "<answer></answer>" * (LONG // 17),
    "<reasoning>" * (LONG // 11),
    "</reasoning> <answer>" * (LONG // 21),
    "\\boxed{" * (LONG // 7),
    "\\boxed{" + "{" * DEEP + "}" * DEEP + "}",
    "<answer>\\boxed{" + "x" * LONG + "}</answer>",
    "\\boxed{" + "9^{" * 1000 + "9" + "}" * 1000 + "}",
    "1," * (LONG // 2),
    "-" * LONG,
    "<answer>" + "-" * DEEP + "1</answer>",
    "<answer>" + "1+" * (LONG // 2) + "1</answer>",
    "<answer>" + "1/" * 5000 + "0</answer>",
    "<answer>30-(100-93)</answer>" * 1000,
    "<reasoning>\n" + "r" * LONG + "\n</reasoning>\n<answer>\n12\n</answer>",
    "#### " + "9" * 5000,
    "\x00\ufeff\u202e<answer>\u0661\u0662</answer>",  # NUL, BOM, RTL override, Arabic-Indic digits
    "<answer>１２</answer>",  # full-width digits
    "<answer>\\frac{" + "1" * 300 + "}{3}</answer>",
    "\\boxed{\\sqrt{" * 500 + "2" + "}}" * 500,
]
FRAGMENTS = [
    "<answer>", "</answer>", "<reasoning>", "</reasoning>", "\\boxed{", "{", "}", "(", ")", "9**9**9**9",
    "9^{9^{9}}", "30-(100-93)", "1,234", "$", "-", ".", "=", "\n", " ", "#### 72", "\\frac{3}{4}", "0.75", "/0",
    "×", "÷", "\\times", "12", "0", "99999999999999999999", "x", "🙂", "\u0663",
]
completions = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=40).map("".join),
    st.sampled_from(ADVERSARIAL),
)

CD_ITEM = {"numbers": [30, 100, 93], "target": 23}
GSM_ITEM = {"question": "q", "answer": "72"}
MATH_ITEM = {"question": "q", "answer": "\\frac{3}{4}"}


def _registry():
    return build_registry(plugins=[("rewards", rewards), ("countdown", countdown), ("gsm8k", gsm8k),
                                   ("math500", math500)], entry_points=False)


REGISTRY = _registry()
TASKS = [
    (CountdownTask.from_options(registry=REGISTRY, n_train=1, n_test=1), CD_ITEM, {0.0, 0.1, 1.0}),
    (CountdownTask.from_options(registry=REGISTRY, n_train=1, n_test=1, prompt_style="compact"), CD_ITEM,
     {0.0, 0.1, 1.0}),
    (Gsm8kTask.from_options(registry=REGISTRY), GSM_ITEM, {0.0, 1.0}),
    (Gsm8kTask.from_options(registry=REGISTRY, prompt_style="compact"), GSM_ITEM, {0.0, 1.0}),
]
if HAVE_MATH_VERIFY:
    TASKS += [
        (math500.Math500Task.from_options(registry=REGISTRY), MATH_ITEM, {0.0, 1.0}),
        (math500.Math500Task.from_options(registry=REGISTRY, prompt_style="compact"), MATH_ITEM, {0.0, 1.0}),
    ]

#: every registered component with the closed interval its values must lie in
RANGES = {
    "format-tags": (0.0, 1.0),
    "format-soft": (0.0, 1.0),
    "format-strict": (0.0, 1.0),
    "answer-integer": (0.0, 1.0),
    "correct": (0.0, 1.0),
    "length-penalty": (-1.0, 0.0),
}
GSM_COMPONENTS = TASKS[2][0].reward_components() + [
    c for c in Gsm8kTask.from_options(registry=REGISTRY, rewards={"length-penalty": 1.0}).reward_components()
    if c.name == "length-penalty"
]


def _check_text_or_none(value):
    assert value is None or isinstance(value, str)


def check_parsers(text: str) -> None:
    for tag in ("answer", "reasoning"):
        _check_text_or_none(last_tag_content(text, tag))
    _check_text_or_none(last_boxed(text))
    answer = extract_tagged_answer(text)
    _check_text_or_none(answer)
    assert answer is None or (answer == answer.strip() and answer)
    _check_text_or_none(extract_compact_answer(text, ("\n", "")))
    try:
        ev = evaluate_expression(text)
        assert all(isinstance(n, int) for n in ev.numbers)
    except ExpressionError:
        pass
    assert countdown_reward(text, [30, 100, 93], 23) in (0.0, 0.1, 1.0)
    number = parse_last_number(text)
    assert number is None or isinstance(number, Decimal)
    assert isinstance(numbers_match(text, "72"), bool)
    assert isinstance(numbers_match(text, text), bool)
    assert isinstance(reference_answer(text), str)
    assert isinstance(render_template(text, {"question": text[:10]}), str)
    if HAVE_MATH_VERIFY:
        from dmpo.tasks.mathverify import prescreen

        assert isinstance(prescreen(text), bool)


def check_rewards(text: str) -> None:
    values = {c.name: c.fn(["prompt"], [text], [GSM_ITEM]) for c in GSM_COMPONENTS}
    for name, vals in values.items():
        assert len(vals) == 1, name
        low, high = RANGES[name]
        assert isinstance(vals[0], float) and math.isfinite(vals[0]) and low <= vals[0] <= high, (name, vals)
    for task, item, allowed in TASKS:
        assert task.correctness(text, item) in allowed  # what the "correct" component returns
        assert task.score(text, item) in (0.0, 1.0)
        for comp in task.reward_components():
            if comp.name != "correct":
                (value,) = comp.fn(["prompt"], [text], [item])
                low, high = RANGES[comp.name]
                assert low <= value <= high, (task.name, comp.name, value)
    task, item, _ = TASKS[0]
    metric = task.metric([text], [item])
    assert 0.0 <= metric["accuracy"] <= 1.0 and 0.0 <= metric["answered"] <= 1.0


@given(completions)
def test_parsers_never_raise_and_return_text_or_none(text):
    check_parsers(text)


@given(completions)
def test_every_reward_stays_in_its_documented_range(text):
    check_rewards(text)


@given(st.text(max_size=80), st.text(max_size=80))
def test_number_match_is_total_and_symmetric(a, b):
    assert numbers_match(a, b) == numbers_match(b, a)


@pytest.mark.parametrize("text", ADVERSARIAL, ids=lambda t: f"{t[:24]!r}...{len(t)}")
def test_named_adversarial_inputs(text):
    """Each hostile input is checked every run, not only when hypothesis draws it."""
    check_parsers(text)
    check_rewards(text)
    wrapped = f"<reasoning>\n{text}\n</reasoning>\n<answer>\n{text}\n</answer>"
    check_parsers(wrapped)
    check_rewards(wrapped)


def test_rewards_of_a_mixed_batch_come_back_in_order():
    batch = ADVERSARIAL + ["<answer>72</answer>"]
    for comp in GSM_COMPONENTS:
        vals = comp.fn(["p"] * len(batch), batch, [GSM_ITEM] * len(batch))
        assert len(vals) == len(batch)
    correct = next(c for c in GSM_COMPONENTS if c.name == "correct")
    assert correct.fn(["p"], ["<answer>72</answer>"], [GSM_ITEM]) == [1.0]
