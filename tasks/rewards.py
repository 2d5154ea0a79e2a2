"""Shared reward components, registered by name so a config can switch them.

A task's training reward is a weighted sum of named components (see
:func:`dmpo.tasks.base.resolve_reward_components`). The components here are generic:

===================  ==========  =========================================================
name                 range       what it rewards
===================  ==========  =========================================================
``format-tags``      [0, 1]      each of ``<reasoning>``, ``</reasoning>``, ``<answer>``,
                                 ``</answer>`` present exactly once: +0.25; text (not
                                 whitespace) after the last ``</answer>`` costs 0.001 per
                                 character (at most 0.25)
``format-soft``      {0, 1}      a reasoning block followed by an answer block, anywhere
``format-strict``    {0, 1}      the whole completion is exactly the four-line layout
``answer-integer``   {0, 1}      the extracted answer is an integer (``1,234`` and ``$5`` count)
``correct``          [0, 1]      the task's own correctness of the answer
                                 (``task.correctness(completion, item)``)
``length-penalty``   [-1, 0]     an example of a third-party-style term: minus the share of
                                 characters past ``free_chars``, reaching -1 at
                                 ``free_chars + scale_chars``
===================  ==========  =========================================================

A factory that takes a ``task`` argument is given the task being scored. A plugin adds its
own component the same way (``register("my-term", factory)``) and a task config picks it up
with ``rewards={"my-term": 0.5}``; no task code changes.

Every component is linear in the completion length and never raises on a string input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from dmpo.tasks.base import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    REASONING_CLOSE,
    REASONING_OPEN,
    extract_tagged_answer,
)

from dmpo_core.contracts import Task
from dmpo_core.errors import InvalidArgumentError
from dmpo_core.hookspecs import hookimpl

_TAGS = (REASONING_OPEN, REASONING_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)
_REASONING_THEN_ANSWER = re.compile(r"</reasoning>\s*<answer>")
_INTEGER = re.compile(r"[-+]?\d+")
_STRICT_SEPARATOR = "\n</reasoning>\n<answer>\n"


class _PerCompletion:
    """Maps :meth:`score` over a batch (the :class:`~dmpo_core.contracts.Reward` call)."""

    def score(self, completion: str, item: Mapping[str, Any]) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(
        self, prompts: Sequence[str], completions: Sequence[str], items: Sequence[Mapping[str, Any]]
    ) -> list[float | None]:
        return [self.score(c, it) for c, it in zip(completions, items)]


def tag_count_score(completion: str, trailing_penalty: float = 0.001) -> float:
    """``format-tags`` of one completion, in [0, 1] (see the module table)."""
    value = sum(0.25 for tag in _TAGS if completion.count(tag) == 1)
    end = completion.rfind(ANSWER_CLOSE)
    if end >= 0:
        trailing = len(completion.rstrip()) - end - len(ANSWER_CLOSE)  # trailing whitespace is free
        value -= min(0.25, trailing_penalty * max(0, trailing))
    return min(1.0, max(0.0, value))


def soft_format_score(completion: str) -> float:
    """``format-soft``: 1.0 when ``<reasoning>`` ... ``</reasoning>`` (whitespace) ``<answer>`` ...
    ``</answer>`` appear in that order, else 0.0."""
    start = completion.find(REASONING_OPEN)
    if start < 0:
        return 0.0
    m = _REASONING_THEN_ANSWER.search(completion, start + len(REASONING_OPEN))
    if m is None:
        return 0.0
    return 1.0 if completion.find(ANSWER_CLOSE, m.end()) >= 0 else 0.0


def strict_format_score(completion: str) -> float:
    """``format-strict``: 1.0 when the stripped completion is exactly
    ``<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>`` with each tag once."""
    s = completion.strip()
    ok = (
        s.startswith(REASONING_OPEN + "\n")
        and s.endswith("\n" + ANSWER_CLOSE)
        and all(s.count(tag) == 1 for tag in _TAGS)
        and _STRICT_SEPARATOR in s
    )
    return 1.0 if ok else 0.0


def is_integer_answer(answer: str | None) -> bool:
    """True when ``answer`` is an integer once ``,``, ``$``, ``\\$`` and spaces are removed."""
    if not answer:
        return False
    cleaned = answer.replace("\\$", "").replace("$", "").replace(",", "").replace(" ", "")
    return _INTEGER.fullmatch(cleaned) is not None


@attrs.frozen(kw_only=True)
class TagCountReward(_PerCompletion):
    """``format-tags``: partial credit for each answer-protocol tag used exactly once."""

    trailing_penalty: float = attrs.field(default=0.001, validator=attrs.validators.ge(0.0))
    """Penalty per character after the last ``</answer>`` (capped at 0.25 in all)."""

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        return tag_count_score(completion, self.trailing_penalty)


@attrs.frozen(kw_only=True)
class SoftFormatReward(_PerCompletion):
    """``format-soft``: a reasoning block followed by an answer block."""

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        return soft_format_score(completion)


@attrs.frozen(kw_only=True)
class StrictFormatReward(_PerCompletion):
    """``format-strict``: exactly the four-line reasoning/answer layout."""

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        return strict_format_score(completion)


@attrs.frozen(kw_only=True)
class IntegerAnswerReward(_PerCompletion):
    """``answer-integer``: the extracted answer is an integer (GSM8K answers always are)."""

    task: Any = None
    """The task whose ``extract_answer`` reads the answer (None: the last ``<answer>`` tag)."""

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        extract = extract_tagged_answer if self.task is None else self.task.extract_answer
        return 1.0 if is_integer_answer(extract(completion)) else 0.0


@attrs.frozen(kw_only=True)
class CorrectnessReward(_PerCompletion):
    """``correct``: the task's correctness of the answer, in [0, 1]."""

    task: Any
    """The task being scored; it must have ``correctness(completion, item) -> float``."""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.task, Task):
            raise InvalidArgumentError(
                "task", self.task, "the correct reward needs the task it scores (a task with correctness())"
            )

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        return float(self.task.correctness(completion, item))


@attrs.frozen(kw_only=True)
class LengthPenalty(_PerCompletion):
    """``length-penalty``: minus the share of characters beyond ``free_chars`` (an example of a
    component that a third party would add without touching any task)."""

    free_chars: int = attrs.field(default=1000, validator=attrs.validators.ge(0))
    """Characters allowed for free."""
    scale_chars: int = attrs.field(default=1000, validator=attrs.validators.gt(0))
    """Characters past ``free_chars`` at which the penalty reaches -1."""

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        over = max(0, len(completion) - self.free_chars)
        return -min(1.0, over / self.scale_chars)


def correct(*, task: Any = None) -> CorrectnessReward:
    """Factory of ``correct`` (the task is passed in by the task that resolves it)."""
    return CorrectnessReward(task=task)


@hookimpl
def register_rewards(register):
    register("format-tags", TagCountReward, help="each <reasoning>/<answer> tag exactly once: +0.25 [0, 1]")
    register("format-soft", SoftFormatReward, help="a reasoning block then an answer block {0, 1}")
    register("format-strict", StrictFormatReward, help="exactly the four-line reasoning/answer layout {0, 1}")
    register("answer-integer", IntegerAnswerReward, help="the extracted answer is an integer {0, 1}")
    register("correct", correct, help="the task's correctness of the answer [0, 1]")
    register("length-penalty", LengthPenalty, help="minus the share of characters past free_chars [-1, 0]")
