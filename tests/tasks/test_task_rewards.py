"""Reward components: values on hand-written completions, and resolution by name (plugins)."""

from __future__ import annotations

import importlib.metadata
import types

import pytest
from dmpo.tasks import countdown, gsm8k, math500, rewards
from dmpo.tasks.base import RewardComponent, score_components
from dmpo.tasks.gsm8k import Gsm8kTask
from dmpo.tasks.rewards import (
    LengthPenalty,
    is_integer_answer,
    soft_format_score,
    strict_format_score,
    tag_count_score,
)

from dmpo_core import build_registry, hookimpl
from dmpo_core.errors import InvalidArgumentError, UnknownNameError

STRICT = "<reasoning>\n3 * 4 = 12\n</reasoning>\n<answer>\n12\n</answer>"
ITEM = {"question": "3 boxes of 4?", "answer": "12"}


@pytest.fixture(scope="module")
def registry():
    """Only this package's task plugins (fast, and independent of what else is installed)."""
    mods = [("rewards", rewards), ("countdown", countdown), ("gsm8k", gsm8k), ("math500", math500)]
    return build_registry(plugins=mods, entry_points=False)


# -- component values


@pytest.mark.parametrize(
    ("completion", "tags", "soft", "strict"),
    [
        (STRICT, 1.0, 1.0, 1.0),
        ("  " + STRICT + "\n\n", 1.0, 1.0, 1.0),  # surrounding whitespace is fine
        ("<reasoning>x</reasoning> <answer>12</answer>", 1.0, 1.0, 0.0),  # no newlines: not strict
        ("<reasoning>x</reasoning><answer>12</answer>" + "y" * 100, 0.9, 1.0, 0.0),  # 100 chars after: -0.1
        ("<answer>12</answer>", 0.5, 0.0, 0.0),  # two of the four tags
        ("<reasoning>\nx\n</reasoning>\n<answer>\n12\n</answer>\n<answer>\n13\n</answer>", 0.5, 1.0, 0.0),
        ("<answer>12</answer><reasoning>x</reasoning>", 0.976, 0.0, 0.0),  # wrong order; 24 chars after: -0.024
        ("", 0.0, 0.0, 0.0),
    ],
)
def test_format_components(completion, tags, soft, strict):
    assert tag_count_score(completion) == pytest.approx(tags)
    assert soft_format_score(completion) == soft
    assert strict_format_score(completion) == strict


@pytest.mark.parametrize(
    ("answer", "integer"),
    [("12", True), ("-3", True), ("1,234", True), ("$5", True), ("12.5", False), ("twelve", False), (None, False)],
)
def test_integer_answer(answer, integer):
    assert is_integer_answer(answer) is integer


def test_length_penalty_is_zero_then_linear_down_to_minus_one():
    pen = LengthPenalty(free_chars=10, scale_chars=20)
    assert pen.score("x" * 10, {}) == 0.0
    assert pen.score("x" * 20, {}) == -0.5  # 10 over / 20
    assert pen.score("x" * 1000, {}) == -1.0


def test_gsm8k_composition_matches_the_papers(registry):
    task = Gsm8kTask.from_options(registry=registry)
    comps = task.reward_components()
    assert {c.name: c.weight for c in comps} == {
        "format-tags": 0.5, "format-soft": 0.5, "format-strict": 0.5, "answer-integer": 0.5, "correct": 2.0}
    scored = score_components(comps, ["p"] * 3, [STRICT, "<answer>13</answer>", "no answer"], [ITEM] * 3)
    # 0.5 * (1 + 1 + 1 + 1) + 2.0 * 1 = 4.0; 0.5 * (0.5 + 0 + 0 + 1) + 0 = 0.75; nothing = 0
    assert scored.total == [4.0, 0.75, 0.0]


# -- switching by name


def test_config_reweights_disables_and_adds_components_by_name(registry):
    task = Gsm8kTask.from_options(
        registry=registry, rewards={"format-strict": 0.0, "format-tags": None, "correct": 1.0, "length-penalty": 0.1},
        reward_options={"length-penalty": {"free_chars": 5, "scale_chars": 10}},
    )
    comps = {c.name: c for c in task.reward_components()}
    assert {n: c.weight for n, c in comps.items()} == {
        "format-soft": 0.5, "answer-integer": 0.5, "correct": 1.0, "length-penalty": 0.1}
    assert comps["length-penalty"].fn == LengthPenalty(free_chars=5, scale_chars=10)


def test_a_third_party_component_is_used_without_touching_the_task():
    class ShortAnswer:
        """A plugin's reward: 1.0 when the completion is under ``limit`` characters."""

        def __init__(self, limit: int = 50, task=None):
            self.limit, self.task = limit, task

        def __call__(self, prompts, completions, items):
            return [1.0 if len(c) < self.limit else 0.0 for c in completions]

    plugin = types.SimpleNamespace(register_rewards=hookimpl(lambda register: register("short-answer", ShortAnswer)))
    reg = build_registry(plugins=[("rewards", rewards), ("third-party", plugin)], entry_points=False)
    task = Gsm8kTask.from_options(registry=reg, rewards={"short-answer": 0.25})
    comp = next(c for c in task.reward_components() if c.name == "short-answer")
    assert comp.weight == 0.25 and comp.fn.task is task  # factories that take `task` receive it
    assert reg.get("reward", "short-answer").plugin == "third-party"


def test_explicit_components_bypass_the_registry():
    const = RewardComponent(name="const", weight=3.0, fn=lambda p, c, i: [1.0] * len(c))
    task = Gsm8kTask.from_options(components=[const])
    assert task.reward_components() == [const]


def test_unknown_names_and_bad_options_are_clear_errors(registry):
    with pytest.raises(UnknownNameError, match="no-such-term.*available: answer-integer"):
        Gsm8kTask.from_options(registry=registry, rewards={"no-such-term": 1.0}).reward_components()
    with pytest.raises(InvalidArgumentError, match="length-penalty"):
        Gsm8kTask.from_options(registry=registry, rewards={"length-penalty": 1.0},
                               reward_options={"length-penalty": {"bogus": 1}}).reward_components()
    with pytest.raises(InvalidArgumentError, match="reward_options"):
        Gsm8kTask.from_options(registry=registry, reward_options={"length-penalty": {}}).reward_components()


def test_correct_needs_a_task(registry):
    with pytest.raises(InvalidArgumentError, match="needs the task"):
        registry.create("reward", "correct")


def test_entry_points_name_every_task_module():
    names = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="dmpo")}
    for name in ("rewards", "countdown", "gsm8k", "math500"):
        assert names.get(name) == f"dmpo.tasks.{name}"


def test_plugins_register_their_tasks_and_rewards(registry):
    assert {"countdown", "gsm8k", "math500"} <= set(registry.names("task"))
    assert {"format-tags", "format-soft", "format-strict", "answer-integer", "correct", "length-penalty"} <= set(
        registry.names("reward"))
    task = registry.create("task", "countdown", n_train=2, n_test=2)
    assert task.name == "countdown" and len(task.test_items()) == 2
