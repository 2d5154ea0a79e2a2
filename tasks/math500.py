"""MATH500: competition problems with LaTeX answers, judged by math-verify.

Data: loaded with ``datasets``; the test set comes from the hub by default
(``HuggingFaceH4/MATH-500``, split ``test``, columns ``problem`` and ``answer``) or from a
local ``.json``/``.jsonl``/``.parquet``/``.arrow`` file. There is no default training set
(MATH500 is a test set): pass ``train_source`` (for example a file of the MATH training
problems); training problems that also appear in the test set are dropped. When the
answer column holds a whole solution, its last ``\\boxed{}`` is the reference.

Answer: the last ``<answer>...</answer>`` (a ``\\boxed{}`` inside is unwrapped) or, without
tags, the last ``\\boxed{}``; in compact style the whole completion. Equivalence is decided
by ``math-verify`` (fractions, ``\\dfrac``, intervals, sets, units, ``\\text{}``...), run in
a helper process with a time limit per comparison (``verify_timeout_s``) after a cheap
pre-screen; see :mod:`dmpo.tasks.mathverify` for why (no ``signal.alarm``, safe in worker
threads, a pathological answer cannot hang training).

Reward: ``format-tags`` 0.5, ``format-soft`` 0.5, ``format-strict`` 0.5 and ``correct`` 2.0
in chat style; ``correct`` 2.0 alone in compact style.

Items: ``{"question", "answer", "solution", "subject", "level", "unique_id"}`` (the last
four when the source has them). Template placeholder: ``{question}``.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from dmpo.tasks.base import (
    AnswerTask,
    RewardComponent,
    TaskOptions,
    last_boxed,
    load_rows,
    without_held_out,
)
from dmpo.tasks import protocols
from dmpo.tasks.math_string_match import strings_match
from dmpo.tasks.mathverify import DEFAULT_TIMEOUT_S, answers_equivalent, shared_verifier

from dmpo_core.config import build_config, in_range
from dmpo_core.errors import ConfigError
from dmpo_core.hookspecs import hookimpl

_EXTRA_COLUMNS = ("solution", "subject", "level", "unique_id")


def reference_answer(text: Any) -> str:
    """The reference answer of a MATH row: the last ``\\boxed{}`` of the text when it has one
    (a whole solution), else the stripped text (MATH-500's ``answer`` column)."""
    text = str(text)
    boxed = last_boxed(text) if "\\boxed{" in text else None
    return (boxed if boxed is not None else text).strip()


@attrs.frozen(kw_only=True)
class Math500Config(TaskOptions):
    """Options of the ``math500`` task (plus the prompt/reward options of :class:`TaskOptions`)."""

    test_source: str = "HuggingFaceH4/MATH-500"
    """Hub id or local file (json/jsonl/parquet/arrow) of the test problems."""
    train_source: str | None = None
    """Hub id or local file of training problems (required for training; none by default)."""
    hub_config: str | None = None
    """Hub configuration name (ignored for local files)."""
    train_split: str = "train"
    """Hub split of the training problems."""
    test_split: str = "test"
    """Hub split of the test problems."""
    question_column: str = "problem"
    """Column holding the problem statement."""
    answer_column: str = "answer"
    """Column holding the reference answer (or a solution whose last ``\\boxed{}`` is the answer)."""
    max_train_items: int | None = attrs.field(default=None, validator=attrs.validators.optional(in_range(1, 10**8)))
    """Keep only the first N training items (None: all)."""
    max_test_items: int | None = attrs.field(default=None, validator=attrs.validators.optional(in_range(1, 10**8)))
    """Keep only the first N test items (None: all)."""
    cache_dir: str | None = None
    """Cache folder of ``datasets`` (None: its default)."""
    verify_timeout_s: float = attrs.field(default=DEFAULT_TIMEOUT_S, validator=in_range(0.0, 600.0, low_open=True))
    """Time limit of one answer comparison; past it the answer counts as wrong."""
    max_answer_chars: int = attrs.field(default=256, validator=in_range(1, 100_000))
    """Longer answers are wrong without parsing (no MATH answer is that long)."""


class Math500Task(AnswerTask):
    """The MATH500 task (see the module docstring)."""

    name = "math500"
    chat_template_file = "math500_chat.txt"
    compact_template = "Problem: {question}\nAnswer:"

    config: Math500Config

    def __init__(self, config: Math500Config, **kwargs: Any) -> None:
        if importlib.util.find_spec("math_verify") is None:
            problem = ("the math500 task compares answers with math-verify, which is not installed: "
                       "pip install 'dllm-dmpo[math]' (or math-verify)")
            raise ConfigError([problem], source="math500 task")
        super().__init__(config, **kwargs)

    @classmethod
    def from_options(cls, *, registry: Any = None, components: Sequence[Any] | None = None, **options: Any) -> Math500Task:
        """Build from plain options, reporting every bad option at once (ConfigError)."""
        return cls(build_config(Math500Config, options, source="math500 task options"), registry=registry,
                   components=components)

    def template_fields(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"question": item["question"]}

    def example_item(self) -> dict[str, Any]:
        return {"question": "Simplify $\\frac{6}{8}$.", "answer": "\\frac{3}{4}"}

    def default_reward_weights(self) -> dict[str, float]:
        if self.config.prompt_style == "compact":
            return {"correct": 2.0}
        return {"format-tags": 0.5, "format-soft": 0.5, "format-strict": 0.5, "correct": 2.0}

    def is_correct(self, answer: str | None, item: Mapping[str, Any]) -> bool:
        return answers_equivalent(str(item["answer"]), answer, timeout_s=self.config.verify_timeout_s,
                                  max_chars=self.config.max_answer_chars)

    def string_match(self, completion: str, item: Mapping[str, Any]) -> float:
        """The papers' metric on one completion: 1.0 when the answer's normalised string equals the
        reference's (:mod:`dmpo.tasks.math_string_match`), else 0.0."""
        try:
            return 1.0 if strings_match(str(item["answer"]), self.extract_answer(completion)) else 0.0
        except Exception:  # noqa: BLE001 - an odd completion counts as wrong, as in score()
            return 0.0

    def metric(self, completions: Sequence[str], items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """``accuracy`` (math-verify), ``accuracy_string_match`` (the papers' string match, on the
        same answers) and ``answered``."""
        out = super().metric(completions, items)
        n = len(completions)
        matched = sum(self.string_match(c, it) for c, it in zip(completions, items))
        return {"accuracy": out["accuracy"], "accuracy_string_match": matched / n if n else float("nan"),
                "answered": out["answered"]}

    def metric_versions(self) -> dict[str, str]:
        return {"accuracy": protocols.math_verify_metric(), "accuracy_string_match": protocols.MATH_STRING_METRIC}

    def dataset_facts(self) -> dict[str, Any]:
        cfg = self.config
        return {"source": cfg.test_source, "split": cfg.test_split, "hub_config": cfg.hub_config,
                "max_test_items": cfg.max_test_items}

    def reward_components(self) -> list[RewardComponent]:
        """The weighted components; also starts the math-verify helper so it is ready by the
        first rollout."""
        shared_verifier().start()
        return super().reward_components()

    # -- data

    def _load(self, option: str, split: str) -> list[dict[str, Any]]:
        cfg = self.config
        rows = load_rows(getattr(cfg, option), split=split, columns=(cfg.question_column, cfg.answer_column),
                         hub_config=cfg.hub_config, cache_dir=cfg.cache_dir, option=option,
                         example_columns='e.g. {"problem": "...", "answer": "\\\\frac{3}{4}"}')
        items = []
        for r in rows:
            item = {"question": str(r[cfg.question_column]), "answer": reference_answer(r[cfg.answer_column])}
            item.update({k: r[k] for k in _EXTRA_COLUMNS if k in r and k not in (cfg.question_column, cfg.answer_column)})
            items.append(item)
        return items

    @functools.cached_property
    def _test(self) -> list[dict[str, Any]]:
        items = self._load("test_source", self.config.test_split)
        limit = self.config.max_test_items
        return items if limit is None else items[:limit]

    @functools.cached_property
    def _train(self) -> list[dict[str, Any]]:
        cfg = self.config
        if cfg.train_source is None:
            problem = ("train_source is not set: MATH500 is a test set only; pass train_source=<hub id or "
                       "local file with columns problem, answer> (e.g. the MATH training problems)")
            raise ConfigError([problem], source="math500 task options")
        items = self._load("train_source", cfg.train_split)
        return without_held_out(items, self._test, cfg.max_train_items)

    def train_items(self) -> list[dict[str, Any]]:
        """Training items from ``train_source`` (problems also in the test set are dropped)."""
        return list(self._train)

    def test_items(self) -> list[dict[str, Any]]:
        """Test items (MATH-500 by default)."""
        return list(self._test)


def math500(**options: Any) -> Math500Task:
    """Factory registered as ``math500``; options are :class:`Math500Config` fields."""
    return Math500Task.from_options(**options)


@hookimpl
def register_tasks(register):
    register("math500", math500, options=Math500Config, help="MATH500 competition problems judged by math-verify")
