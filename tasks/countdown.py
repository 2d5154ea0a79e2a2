"""Countdown: combine the given numbers with + - * / and parentheses to reach a target.

Data: the task generates its own problems (3 numbers, optionally 4), each built from a
random expression so that a solution is guaranteed (kept in the item). The split is
deterministic and disjoint by construction: a problem (its number multiset and target)
belongs to the test side when a hash of it falls below ``test_fraction``, whatever the
seed, so no seed can put a test problem in training. A published JSON-lines test file
(``{"input": "30,100,93", "output": "23"}``) can replace the generated test set; its
problems are then also kept out of training.

Reward (the papers' protocol): 1.0 when the answer uses exactly the given multiset of
numbers and evaluates to the target (``|value - target| < 1e-5``), 0.1 when an answer is
present but wrong (unparsable, other numbers, other value, division by zero), 0 when there
is no answer. Answers are NEVER ``eval``-ed: :func:`evaluate_expression` is a small
recursive-descent parser over integers, ``+ - * /`` and parentheses with exact fractions,
and limits on length, nesting depth, literal size and magnitude.

Items: ``{"numbers": [30, 100, 93], "target": 23, "solution": "30-(100-93)"}`` (``solution``
only for generated problems). Template placeholders: ``{numbers}`` (``30, 100, 93``),
``{numbers_csv}`` (``30,100,93``), ``{target}``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
from dmpo.tasks import protocols
from dmpo.tasks.base import AnswerTask, TaskOptions

from dmpo_core.config import build_config, cross_checks, in_range, one_of, positive
from dmpo_core.errors import ConfigError, DataError
from dmpo_core.hookspecs import hookimpl

MAX_EXPRESSION_CHARS = 256
"""Longest answer (characters, after trimming) the evaluator reads."""
MAX_DEPTH = 32
"""Deepest nesting of parentheses and unary minus."""
MAX_MAGNITUDE = 10**12
"""Largest numerator or denominator of any intermediate value."""
MAX_LITERAL_DIGITS = 12
"""Longest integer literal."""
TOLERANCE = Fraction(1, 10**5)
"""An answer is correct when ``|value - target| < TOLERANCE``."""

_ALIASES = (("\\times", "*"), ("\\cdot", "*"), ("\\div", "/"), ("×", "*"), ("·", "*"), ("÷", "/"),
            ("−", "-"), ("–", "-"), ("\\left", ""), ("\\right", ""), ("$", ""))


class ExpressionError(ValueError):
    """An answer that is not a valid, bounded arithmetic expression (a wrong answer)."""


@attrs.frozen(kw_only=True)
class Evaluation:
    """Value of an expression and the integer literals it used."""

    value: Fraction
    numbers: tuple[int, ...]


def normalise_expression(text: str) -> str:
    """Trim an answer to its expression: common operator spellings (``×``, ``\\times``, ``÷``,
    ``−``) become ASCII, ``$`` goes, and a trailing ``= result`` is dropped."""
    for old, new in _ALIASES:
        if old in text:
            text = text.replace(old, new)
    eq = text.find("=")
    if eq >= 0:
        text = text[:eq]
    return text.strip()


class _Parser:
    """Recursive descent over ``expr := term (('+'|'-') term)*``, ``term := unary (('*'|'/') unary)*``,
    ``unary := '-' unary | atom``, ``atom := INT | '(' expr ')'``; recursion is bounded by
    ``max_depth`` because every nested call passes through ``(`` or unary ``-``."""

    def __init__(self, tokens: list[str], *, max_depth: int, max_magnitude: int) -> None:
        self.tokens = tokens
        self.pos = 0
        self.max_depth = max_depth
        self.max_magnitude = max_magnitude
        self.numbers: list[int] = []

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def bounded(self, value: Fraction) -> Fraction:
        if abs(value.numerator) > self.max_magnitude or value.denominator > self.max_magnitude:
            raise ExpressionError("an intermediate value is too large")
        return value

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            op = self.take()
            right = self.term(depth)
            value = self.bounded(value + right if op == "+" else value - right)
        return value

    def term(self, depth: int) -> Fraction:
        value = self.unary(depth)
        while self.peek() in ("*", "/"):
            op = self.take()
            right = self.unary(depth)
            if op == "*":
                value = self.bounded(value * right)
            else:
                if right == 0:
                    raise ExpressionError("division by zero")
                value = self.bounded(value / right)
        return value

    def unary(self, depth: int) -> Fraction:
        if self.peek() == "-":
            if depth + 1 > self.max_depth:
                raise ExpressionError("nested too deeply")
            self.take()
            return -self.unary(depth + 1)
        return self.atom(depth)

    def atom(self, depth: int) -> Fraction:
        tok = self.peek()
        if tok is None:
            raise ExpressionError("the expression ends early")
        if tok == "(":
            if depth + 1 > self.max_depth:
                raise ExpressionError("nested too deeply")
            self.take()
            value = self.expr(depth + 1)
            if self.peek() != ")":
                raise ExpressionError("a parenthesis is not closed")
            self.take()
            return value
        if tok.isdigit():
            self.take()
            number = int(tok)
            self.numbers.append(number)
            return self.bounded(Fraction(number))
        raise ExpressionError(f"unexpected {tok!r}")


def _tokenize(text: str, max_literal_digits: int) -> list[str]:
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "0123456789":
            j = i
            while j < n and text[j] in "0123456789":
                j += 1
            if j - i > max_literal_digits:
                raise ExpressionError("a number is too long")
            tokens.append(text[i:j])
            i = j
        elif ch in "+-*/()":
            tokens.append(ch)
            i += 1
        elif ch.isspace():
            i += 1
        else:
            raise ExpressionError(f"unexpected character {ch!r}")
    return tokens


def evaluate_expression(
    text: str,
    *,
    max_chars: int = MAX_EXPRESSION_CHARS,
    max_depth: int = MAX_DEPTH,
    max_magnitude: int = MAX_MAGNITUDE,
    max_literal_digits: int = MAX_LITERAL_DIGITS,
) -> Evaluation:
    """Exact value of an arithmetic answer such as ``30-(100-93)`` and the integers it used.

    Accepts integers, ``+ - * /``, unary minus and parentheses (plus the spellings that
    :func:`normalise_expression` maps); ``**``, decimals, names and everything else are
    rejected. Work is linear in ``len(text)`` and bounded by the limits.

    Raises:
        ExpressionError: invalid, too long, too deep, too large, or dividing by zero.
    """
    if not isinstance(text, str):
        raise ExpressionError("not a string")
    if len(text) > 4 * max_chars:  # cheap refusal before any normalisation work
        raise ExpressionError("the expression is too long")
    text = normalise_expression(text)
    if len(text) > max_chars:
        raise ExpressionError("the expression is too long")
    if not text:
        raise ExpressionError("the expression is empty")
    parser = _Parser(_tokenize(text, max_literal_digits), max_depth=max_depth, max_magnitude=max_magnitude)
    value = parser.expr(0)
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()!r} after the expression")
    return Evaluation(value=value, numbers=tuple(parser.numbers))


def countdown_reward(answer: str | None, numbers: Sequence[int], target: int | Fraction, **limits: int) -> float:
    """1.0 (correct), 0.1 (an answer, but wrong) or 0.0 (no answer); never raises.

    ``limits`` are :func:`evaluate_expression`'s keyword limits.
    """
    if answer is None or not str(answer).strip():
        return 0.0
    try:
        ev = evaluate_expression(str(answer), **limits)
        if sorted(ev.numbers) != sorted(int(x) for x in numbers):
            return 0.1
        return 1.0 if abs(ev.value - Fraction(target)) < TOLERANCE else 0.1
    except (ExpressionError, ValueError, TypeError, ZeroDivisionError, OverflowError, RecursionError):
        return 0.1


# ---------------------------------------------------------------------------------------
# Problems.


def problem_key(numbers: Sequence[int], target: int) -> str:
    """Order-free identity of a problem, e.g. ``30,93,100>23`` (the split is decided on it)."""
    return ",".join(str(n) for n in sorted(numbers)) + f">{target}"


def in_test_bucket(key: str, test_fraction: float) -> bool:
    """True when the problem ``key`` belongs to the test side (a hash, independent of any seed)."""
    digest = hashlib.sha256(f"countdown|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < test_fraction


def _wrap(text: str, atom: bool) -> str:
    return text if atom else f"({text})"


def random_problem(
    rng: random.Random, *, count: int, min_number: int, max_number: int, min_target: int, max_target: int,
    max_tries: int = 10_000,
) -> dict[str, Any]:
    """A solvable problem: draw numbers and a random expression over all of them (integer
    intermediate values only), keep it when its value is a target in range.

    Raises:
        ConfigError: no problem found in ``max_tries`` draws (the ranges admit none).
    """
    for _ in range(max_tries):
        numbers = [rng.randint(min_number, max_number) for _ in range(count)]
        nodes: list[tuple[int, str, bool]] = [(n, str(n), True) for n in numbers]
        rng.shuffle(nodes)
        while len(nodes) > 1:
            i = rng.randrange(len(nodes) - 1)
            (a, ta, aa), (b, tb, ab) = nodes[i], nodes[i + 1]
            op = rng.choice("+-*/")
            if op == "/" and (b == 0 or a % b != 0):
                op = rng.choice("+-*")
            value = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a // b
            nodes[i : i + 2] = [(value, f"{_wrap(ta, aa)}{op}{_wrap(tb, ab)}", False)]
        value, text, _ = nodes[0]
        if min_target <= value <= max_target:
            return {"numbers": numbers, "target": value, "solution": text}
    problem = (f"no {count}-number problem with numbers in [{min_number}, {max_number}] reaches a "
               f"target in [{min_target}, {max_target}]; widen the ranges")
    raise ConfigError([problem], source="countdown task options")


def load_countdown_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Items of a Countdown JSON-lines file with ``input`` (comma-separated numbers) and
    ``output`` (the target) per line.

    Raises:
        DataError: the file is missing, or a line is not such an object (its number is given).
    """
    p = Path(path).expanduser()
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(str(p), "Countdown test file not found; pass a JSON-lines file of "
                                '{"input": "30,100,93", "output": "23"}') from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(str(p), f"cannot read it: {err}") from None
    items = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise DataError(str(p), f"line {lineno} is not JSON") from None
        if not isinstance(row, dict) or "input" not in row or "output" not in row:
            missing = [c for c in ("input", "output") if not isinstance(row, dict) or c not in row]
            raise DataError(str(p), f"line {lineno} lacks column(s) {', '.join(missing)}")
        try:
            numbers = [int(x) for x in str(row["input"]).split(",")]
            target = int(str(row["output"]).strip())
        except ValueError:
            raise DataError(str(p), f"line {lineno}: input must be comma-separated integers and output an "
                                    f"integer, got {row['input']!r} / {row['output']!r}") from None
        items.append({"numbers": numbers, "target": target})
    if not items:
        raise DataError(str(p), "the file holds no problems")
    return items


# ---------------------------------------------------------------------------------------
# The task.


@attrs.frozen(kw_only=True)
class CountdownConfig(TaskOptions):
    """Options of the ``countdown`` task (plus the prompt/reward options of :class:`TaskOptions`)."""

    count: int = attrs.field(default=3, validator=one_of(3, 4))
    """Numbers per generated problem (3 as the papers, or 4)."""
    min_number: int = attrs.field(default=1, validator=positive())
    """Smallest number drawn."""
    max_number: int = attrs.field(default=100, validator=in_range(1, 10**6))
    """Largest number drawn."""
    min_target: int = attrs.field(default=1, validator=in_range(-(10**9), 10**9))
    """Smallest accepted target."""
    max_target: int = attrs.field(default=100, validator=in_range(-(10**9), 10**9))
    """Largest accepted target."""
    n_train: int = attrs.field(default=10_000, validator=in_range(0, 10**7))
    """Generated training problems (distinct)."""
    n_test: int = attrs.field(default=256, validator=in_range(1, 10**6))
    """Generated test problems (distinct; ignored when ``test_file`` is given)."""
    test_fraction: float = attrs.field(default=0.1, validator=in_range(0.0, 1.0, low_open=True))
    """Share of the problem space reserved for testing (decided by a hash of each problem)."""
    seed: int = 0
    """Seed of the generators (train and test use separate streams)."""
    test_file: str | None = None
    """JSON-lines test set (``{"input": "30,100,93", "output": "23"}``) used instead of generated ones."""
    max_expression_chars: int = attrs.field(default=MAX_EXPRESSION_CHARS, validator=in_range(1, 10_000))
    """Longest answer the evaluator reads."""
    max_depth: int = attrs.field(default=MAX_DEPTH, validator=in_range(1, 200))
    """Deepest parenthesis / unary-minus nesting the evaluator accepts."""

    def __attrs_post_init__(self) -> None:
        cross_checks([
            (self.min_number <= self.max_number, f"min_number={self.min_number} must be <= max_number={self.max_number}"),
            (self.min_target <= self.max_target, f"min_target={self.min_target} must be <= max_target={self.max_target}"),
            (self.test_fraction < 1.0 or self.n_train == 0, "test_fraction=1 leaves nothing to train on; use < 1"),
        ], source="countdown task options")


class CountdownTask(AnswerTask):
    """The Countdown task (see the module docstring)."""

    name = "countdown"
    chat_template_file = "countdown_chat.txt"
    compact_template = "{numbers_csv}>{target}:"

    config: CountdownConfig

    @classmethod
    def from_options(cls, *, registry: Any = None, components: Sequence[Any] | None = None, **options: Any) -> CountdownTask:
        """Build from plain options, reporting every bad option at once (ConfigError)."""
        return cls(build_config(CountdownConfig, options, source="countdown task options"),
                   registry=registry, components=components)

    def template_fields(self, item: Mapping[str, Any]) -> dict[str, Any]:
        numbers = [str(n) for n in item["numbers"]]
        return {"numbers": ", ".join(numbers), "numbers_csv": ",".join(numbers), "target": item["target"]}

    def example_item(self) -> dict[str, Any]:
        return {"numbers": [30, 100, 93], "target": 23, "solution": "30-(100-93)"}

    def default_reward_weights(self) -> dict[str, float]:
        return {"correct": 1.0}

    def metric_versions(self) -> dict[str, str]:
        return {"accuracy": protocols.COUNTDOWN_METRIC}

    def dataset_facts(self) -> dict[str, Any]:
        cfg = self.config
        if cfg.test_file is not None:
            return {"source": cfg.test_file, "sha256": protocols.file_digest(cfg.test_file)}
        return {"source": "generated", "seed": cfg.seed, "count": cfg.count, "n_test": cfg.n_test,
                "test_fraction": cfg.test_fraction}

    def _limits(self) -> dict[str, int]:
        return {"max_chars": self.config.max_expression_chars, "max_depth": self.config.max_depth}

    def correctness(self, completion: str, item: Mapping[str, Any]) -> float:
        """1.0 / 0.1 / 0.0 as in the papers (see :func:`countdown_reward`)."""
        try:
            return countdown_reward(self.extract_answer(completion), item["numbers"], item["target"], **self._limits())
        except Exception:  # noqa: BLE001 - e.g. a malformed item: no reward rather than a crash
            return 0.0

    def is_correct(self, answer: str | None, item: Mapping[str, Any]) -> bool:
        return countdown_reward(answer, item["numbers"], item["target"], **self._limits()) == 1.0

    # -- data

    @functools.cached_property
    def _test(self) -> list[dict[str, Any]]:
        cfg = self.config
        if cfg.test_file is not None:
            return load_countdown_jsonl(cfg.test_file)
        return self._generate("test", cfg.n_test, lambda key: in_test_bucket(key, cfg.test_fraction))

    @functools.cached_property
    def _train(self) -> list[dict[str, Any]]:
        cfg = self.config
        excluded = {problem_key(it["numbers"], it["target"]) for it in self._test}
        return self._generate(
            "train", cfg.n_train, lambda key: key not in excluded and not in_test_bucket(key, cfg.test_fraction)
        )

    def _generate(self, split: str, n: int, keep: Any) -> list[dict[str, Any]]:
        cfg = self.config
        rng = random.Random(f"countdown-{split}-{cfg.seed}")
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        budget = 50 * n + 1000
        while len(items) < n and budget > 0:
            budget -= 1
            item = random_problem(rng, count=cfg.count, min_number=cfg.min_number, max_number=cfg.max_number,
                                  min_target=cfg.min_target, max_target=cfg.max_target)
            key = problem_key(item["numbers"], item["target"])
            if key in seen or not keep(key):
                continue
            seen.add(key)
            items.append(item)
        if len(items) < n:
            problem = (f"only {len(items)} distinct {split} problems found for n_{split}={n}; widen the "
                       f"number/target ranges or ask for fewer")
            raise ConfigError([problem], source="countdown task options")
        return items

    def train_items(self) -> list[dict[str, Any]]:
        """Generated training problems, never in the test set."""
        return list(self._train)

    def test_items(self) -> list[dict[str, Any]]:
        """Generated (or loaded from ``test_file``) test problems."""
        return list(self._test)


def countdown(**options: Any) -> CountdownTask:
    """Factory registered as ``countdown``; options are :class:`CountdownConfig` fields."""
    return CountdownTask.from_options(**options)


@hookimpl
def register_tasks(register):
    register("countdown", countdown, options=CountdownConfig, help="reach a target with + - * / over 3 (or 4) numbers; generated data")
