"""GSM8K: grade-school word problems whose answer is one number.

Data: loaded with ``datasets``, from the hub by default (``openai/gsm8k``, config ``main``,
splits ``train``/``test``) or from a local ``.json``/``.jsonl``/``.parquet``/``.arrow`` file
given as ``train_source``/``test_source``. The reference answer is the number after the
last ``####`` of the ``answer`` column (the whole text when there is no ``####``).
Training questions that also appear in the test set are dropped.

Answer: the last ``<answer>...</answer>`` (or ``\\boxed{}``) in chat style, the whole
completion in compact style; it is right when its LAST number equals the reference
exactly (commas between digit groups, ``$`` and a trailing ``.0`` do not matter:
``$1,234.0`` matches ``1234``).

Reward (the papers' composition, as named components; see :mod:`dmpo.tasks.rewards`):
``format-tags`` 0.5, ``format-soft`` 0.5, ``format-strict`` 0.5, ``answer-integer`` 0.5 and
``correct`` 2.0 in chat style; ``correct`` 2.0 alone in compact style.

Items: ``{"question": str, "answer": "72", "solution": full reference text}``.
Template placeholder: ``{question}``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import attrs
from dmpo.tasks import protocols
from dmpo.tasks.base import AnswerTask, TaskOptions, load_rows, without_held_out

from dmpo_core.config import build_config, in_range
from dmpo_core.hookspecs import hookimpl

MAX_NUMBER_CHARS = 64
"""Numbers longer than this never match (no reference answer is that long)."""

_GROUP_COMMA = re.compile(r"(?<=\d),(?=\d)")
_LAST_DIGIT = re.compile(r"\d(?=\D*$)")  # linear: only a run's last digit looks past it
_NUMBER_AT_END = re.compile(r"-?\d+(?:\.\d+)?$")


def parse_last_number(text: str | None) -> Decimal | None:
    """The last number of ``text`` as an exact Decimal (None when there is none or it is huge).

    Commas between digits, ``$`` and ``\\$`` are ignored; a minus sign counts only when it
    does not follow a digit (``10-5`` ends in ``5``). Linear in ``len(text)``.
    """
    if not text:
        return None
    last_digit = _LAST_DIGIT.search(text)
    if last_digit is None:
        return None
    # only the tail can hold the last number: clean a window of it, not the whole completion
    text = text[max(0, last_digit.end() - 4 * MAX_NUMBER_CHARS - 8) : last_digit.end()]
    text = _GROUP_COMMA.sub("", text.replace("\\$", "").replace("$", ""))
    last_digit = _LAST_DIGIT.search(text)
    if last_digit is None:  # pragma: no cover - the window ends in a digit
        return None
    end = last_digit.end()
    low = max(0, end - MAX_NUMBER_CHARS - 1)  # the number is read in a short window: no long backtracking
    found = _NUMBER_AT_END.search(text, low, end)
    if found is None:  # pragma: no cover - the window ends in a digit
        return None
    start, number = found.start(), found.group()
    if len(number.lstrip("-")) > MAX_NUMBER_CHARS or (
        start == low and low > 0 and (text[low - 1].isdigit() or text[low - 1] == ".")
    ):
        return None  # absurdly long
    if number.startswith("-") and start > 0 and (text[start - 1].isdigit() or text[start - 1] == "."):
        number = number[1:]  # "10-5": the minus is an operator
    try:
        return Decimal(number)
    except (InvalidOperation, ValueError):
        return None


def numbers_match(prediction: str | None, reference: str | None) -> bool:
    """True when the last numbers of both texts are equal (``18.0`` equals ``18``)."""
    a, b = parse_last_number(prediction), parse_last_number(reference)
    return a is not None and b is not None and a == b


def reference_answer(solution: str) -> str:
    """The number after the last ``####`` of a GSM8K reference solution, without commas or ``$``
    (the whole stripped text when there is no ``####``)."""
    text = str(solution)
    mark = text.rfind("####")
    body = text[mark + 4 :] if mark >= 0 else text
    return body.strip().replace(",", "").replace("$", "").strip()


@attrs.frozen(kw_only=True)
class Gsm8kConfig(TaskOptions):
    """Options of the ``gsm8k`` task (plus the prompt/reward options of :class:`TaskOptions`)."""

    train_source: str = "openai/gsm8k"
    """Hub id or local file (json/jsonl/parquet/arrow) of the training questions."""
    test_source: str = "openai/gsm8k"
    """Hub id or local file of the test questions."""
    hub_config: str | None = "main"
    """Hub configuration name (ignored for local files)."""
    train_split: str = "train"
    """Hub split of the training questions."""
    test_split: str = "test"
    """Hub split of the test questions."""
    question_column: str = "question"
    """Column holding the question."""
    answer_column: str = "answer"
    """Column holding the reference solution (number after ``####``) or the bare number."""
    max_train_items: int | None = attrs.field(default=None, validator=attrs.validators.optional(in_range(1, 10**8)))
    """Keep only the first N training items (None: all)."""
    max_test_items: int | None = attrs.field(default=None, validator=attrs.validators.optional(in_range(1, 10**8)))
    """Keep only the first N test items (None: all)."""
    cache_dir: str | None = None
    """Cache folder of ``datasets`` (None: its default)."""


class Gsm8kTask(AnswerTask):
    """The GSM8K task (see the module docstring)."""

    name = "gsm8k"
    chat_template_file = "gsm8k_chat.txt"
    compact_template = "Question: {question}\nAnswer:"

    config: Gsm8kConfig

    @classmethod
    def from_options(cls, *, registry: Any = None, components: Sequence[Any] | None = None, **options: Any) -> Gsm8kTask:
        """Build from plain options, reporting every bad option at once (ConfigError)."""
        return cls(build_config(Gsm8kConfig, options, source="gsm8k task options"), registry=registry,
                   components=components)

    def template_fields(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"question": item["question"]}

    def example_item(self) -> dict[str, Any]:
        return {"question": "Tom has 3 bags of 4 apples. How many apples?", "answer": "12", "solution": "3*4=12\n#### 12"}

    def default_reward_weights(self) -> dict[str, float]:
        if self.config.prompt_style == "compact":
            return {"correct": 2.0}
        return {"format-tags": 0.5, "format-soft": 0.5, "format-strict": 0.5, "answer-integer": 0.5, "correct": 2.0}

    def metric_versions(self) -> dict[str, str]:
        return {"accuracy": protocols.GSM8K_METRIC}

    def dataset_facts(self) -> dict[str, Any]:
        cfg = self.config
        return {"source": cfg.test_source, "split": cfg.test_split, "hub_config": cfg.hub_config,
                "max_test_items": cfg.max_test_items}

    def is_correct(self, answer: str | None, item: Mapping[str, Any]) -> bool:
        return numbers_match(answer, item["answer"])

    # -- data

    def _load(self, option: str, split: str, limit: int | None) -> list[dict[str, Any]]:
        cfg = self.config
        rows = load_rows(getattr(cfg, option), split=split, columns=(cfg.question_column, cfg.answer_column),
                         hub_config=cfg.hub_config, cache_dir=cfg.cache_dir, option=option,
                         example_columns='e.g. {"question": "...", "answer": "... #### 72"}')
        items = [{"question": str(r[cfg.question_column]), "answer": reference_answer(r[cfg.answer_column]),
                  "solution": str(r[cfg.answer_column])} for r in rows]
        return items if limit is None else items[:limit]

    @functools.cached_property
    def _test(self) -> list[dict[str, Any]]:
        return self._load("test_source", self.config.test_split, self.config.max_test_items)

    @functools.cached_property
    def _train(self) -> list[dict[str, Any]]:
        cfg = self.config
        items = self._load("train_source", cfg.train_split, None)
        return without_held_out(items, self._test, cfg.max_train_items)

    def train_items(self) -> list[dict[str, Any]]:
        """Training items (questions also in the test set are dropped)."""
        return list(self._train)

    def test_items(self) -> list[dict[str, Any]]:
        """Test items."""
        return list(self._test)


def gsm8k(**options: Any) -> Gsm8kTask:
    """Factory registered as ``gsm8k``; options are :class:`Gsm8kConfig` fields."""
    return Gsm8kTask.from_options(**options)


@hookimpl
def register_tasks(register):
    register("gsm8k", gsm8k, options=Gsm8kConfig, help="grade-school math word problems (hub openai/gsm8k or a local file)")
