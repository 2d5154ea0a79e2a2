"""4x4 Sudoku: puzzles generated here, prompts, the cell-accuracy reward and metric.

A puzzle is a 16-character row-major string with ``0`` for an
empty cell; a solution is 16 digits 1-4 in which every row, column and 2x2 box holds
1-4 once. There are exactly 288 such grids: :func:`all_grids` enumerates them and a
puzzle is kept only when exactly one grid agrees with its givens.

The train/test split is by SOLUTION grid: a seeded shuffle holds out ``test_grids``
grids, the test puzzles come only from them and the training puzzles only from the
others, so no test puzzle (nor any puzzle with the same solution) is ever trained on.
A CSV of ``Puzzle,Solution`` rows (the published 500-puzzle set) can replace the
generated test split; training then avoids its solution grids (or, with
``exclude_test_grids=False``, only its exact puzzles).

Two prompt styles:

* ``chat`` (instruct models): an instruction asking for ``<reasoning>`` then
  ``<answer>`` with the 16 digits; the tokenizer's chat template is applied when it has
  one; a user template file with a ``{puzzle}`` placeholder can replace the text.
* ``compact`` (small models trained from scratch): the prompt is the 16 puzzle digits
  and a separator (``3102200002100320=``); the completion is the 16 digits of the grid.
  With ``fixed_givens`` the sampler is handed the given digits (:meth:`SudokuTask.completion_prefill`)
  and decodes only the blanks.

Reward and metric: the answer's digits (the last ``<answer>...</answer>`` in chat style,
the whole completion in compact style), cut to 16 and padded with ``0``; the reward is
the fraction of the originally empty cells that match the solution (0 without an
answer); the metric sums correct empty cells over all empty cells of the test puzzles.
"""

from __future__ import annotations

import csv
import itertools
import random
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs
from dmpo.tasks import protocols
from dmpo.tasks.base import (
    answer_block,
    chat_prompt,
    cut_at_end_of_turn,
    merge_reward_weights,
    read_template,
    render_template,
    resolve_reward_components,
    template_placeholders,
)

from dmpo_core.errors import ConfigError, DataError, InvalidArgumentError
from dmpo_core.hookspecs import hookimpl
from dmpo_core.rewards import RewardComponent

CELLS = 16
"""Cells of a 4x4 grid."""
MAX_BLANKS = 12
"""A 4x4 puzzle needs at least 4 givens to have a unique solution."""
PROMPT_STYLES: tuple[str, ...] = ("chat", "compact")
REWARD_NAME = "sudoku-cells"

_UNITS: tuple[tuple[int, ...], ...] = (
    *(tuple(4 * r + c for c in range(4)) for r in range(4)),  # rows
    *(tuple(4 * r + c for r in range(4)) for c in range(4)),  # columns
    *(tuple(4 * (br + r) + bc + c for r in range(2) for c in range(2)) for br in (0, 2) for bc in (0, 2)),  # boxes
)

CHAT_INSTRUCTION = """\
Here is a 4x4 Sudoku puzzle. The grid has 4 rows and 4 columns and is divided into four \
2x2 boxes. Empty cells are written as 0. Fill every empty cell with a digit from 1 to 4 \
so that each row, each column and each 2x2 box contains the digits 1, 2, 3 and 4 exactly \
once, keeping the given digits as they are.

Puzzle as 16 digits, row by row: {puzzle}
The same puzzle as a grid:
{grid}

Work through the puzzle step by step inside <reasoning> </reasoning>. Then write the \
full solved grid as 16 digits, row by row with no spaces, inside <answer> </answer>."""


# ---------------------------------------------------------------------------- grids


def is_valid_grid(grid: str) -> bool:
    """True when ``grid`` is 16 digits 1-4 with every row, column and 2x2 box a permutation of 1-4."""
    if len(grid) != CELLS or any(ch not in "1234" for ch in grid):
        return False
    return all(len({grid[i] for i in unit}) == 4 for unit in _UNITS)


@lru_cache(maxsize=1)
def all_grids() -> tuple[str, ...]:
    """All 288 valid 4x4 grids, in lexicographic order (so indices are stable).

    Built row by row, keeping only rows that clash with no column or box above them.
    """
    rows = ["".join(p) for p in itertools.permutations("1234")]  # sorted, so the grids come out sorted
    grids: list[str] = []

    def extend(prefix: str) -> None:
        if len(prefix) == CELLS:
            grids.append(prefix)
            return
        for row in rows:
            candidate = prefix + row
            if _consistent_so_far(candidate):
                extend(candidate)

    extend("")
    return tuple(grids)


def _consistent_so_far(cells: str) -> bool:
    """True when no unit repeats a digit among the (row-major, full rows) cells filled so far."""
    n = len(cells)
    for unit in _UNITS:
        seen = [cells[i] for i in unit if i < n]
        if len(seen) != len(set(seen)):
            return False
    return True


@lru_cache(maxsize=1)
def _digit_masks() -> tuple[dict[str, int], ...]:
    """``masks[cell][digit]``: bit ``g`` set when grid ``g`` has ``digit`` ("1"-"4") at ``cell``.

    ``masks[cell]["0"]`` has every bit set, so an empty cell constrains nothing.
    """
    grids = all_grids()
    every = (1 << len(grids)) - 1
    masks = [{"0": every, "1": 0, "2": 0, "3": 0, "4": 0} for _ in range(CELLS)]
    for g, grid in enumerate(grids):
        for cell, ch in enumerate(grid):
            masks[cell][ch] |= 1 << g
    return tuple(masks)


def _candidates(puzzle: str) -> int:
    """Bitmask over :func:`all_grids` of the grids that agree with every given of ``puzzle``."""
    acc = -1
    for mask, ch in zip(_digit_masks(), puzzle):
        acc &= mask[ch]
    return acc


def solutions(puzzle: str) -> list[str]:
    """Every valid grid that agrees with the givens of ``puzzle`` (16 chars, ``0`` = empty)."""
    if len(puzzle) != CELLS or any(ch not in "01234" for ch in puzzle):
        raise InvalidArgumentError("puzzle", puzzle, "pass 16 characters 0-4, row-major, 0 for an empty cell")
    acc = _candidates(puzzle)
    grids = all_grids()
    return [grids[g] for g in range(acc.bit_length()) if acc >> g & 1]


def has_unique_solution(puzzle: str) -> bool:
    """True when exactly one valid grid agrees with the givens of ``puzzle`` (16 chars 0-4)."""
    acc = _candidates(puzzle)
    return acc != 0 and acc & (acc - 1) == 0


def blank_cells(grid: str, blanks: Sequence[int]) -> str:
    """``grid`` with the cells in ``blanks`` replaced by ``0``."""
    chars = list(grid)
    for cell in blanks:
        chars[cell] = "0"
    return "".join(chars)


def split_grids(seed: int, test_grids: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Deterministic split of the 288 grids: ``(train_grids, test_grids)``, disjoint."""
    grids = list(all_grids())
    random.Random(f"sudoku-split-{seed}").shuffle(grids)
    return tuple(sorted(grids[test_grids:])), tuple(sorted(grids[:test_grids]))


def generate_puzzles(
    grids: Sequence[str],
    count: int,
    *,
    min_blanks: int,
    max_blanks: int,
    rng: random.Random,
    exclude: frozenset[str] = frozenset(),
    max_attempts: int | None = None,
    field: str = "count",
) -> list[dict[str, Any]]:
    """``count`` distinct puzzles with a unique solution, drawn from ``grids``.

    Each draw picks a grid, a number of blanks uniform in ``[min_blanks, max_blanks]`` and
    a uniform set of that many cells; draws without a unique solution, repeats and
    puzzles in ``exclude`` are rejected. Raises :class:`ConfigError` naming ``field`` (the
    config field that asked for ``count``) when ``max_attempts`` draws do not give enough.
    """
    attempts = max_attempts if max_attempts is not None else 200 * count + 10_000
    seen: set[str] = set()
    items: list[dict[str, Any]] = []
    for _ in range(attempts):
        if len(items) == count:
            break
        grid = rng.choice(grids)
        n_blank = rng.randint(min_blanks, max_blanks)
        puzzle = blank_cells(grid, rng.sample(range(CELLS), n_blank))
        if puzzle in seen or puzzle in exclude or not has_unique_solution(puzzle):
            continue
        seen.add(puzzle)
        items.append(make_item(puzzle, grid))
    if len(items) < count:
        raise ConfigError(
            [
                (
                    f"{field}={count!r}: only {len(items)} distinct unique-solution puzzles with "
                    f"{min_blanks}-{max_blanks} blanks were found from {len(grids)} grids; "
                    "ask for fewer puzzles or widen the blank range"
                )
            ],
            source="sudoku task",
        )
    return items


def make_item(puzzle: str, solution: str) -> dict[str, Any]:
    """A task item: ``{"puzzle", "solution", "blanks"}``."""
    return {"puzzle": puzzle, "solution": solution, "blanks": puzzle.count("0")}


def load_csv(path: str | Path) -> list[dict[str, Any]]:
    """Items from a CSV with columns ``Puzzle,Solution`` (other columns are ignored).

    Every row is checked: 16 characters each, a valid solution grid that agrees with the
    puzzle's givens. Raises :class:`DataError` naming the file (and the line) otherwise.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(str(path), "file not found; pass the path of a CSV with columns Puzzle,Solution")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("Puzzle", "Solution") if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(str(path), f"missing column(s) {', '.join(missing)}; found {reader.fieldnames}")
        items = []
        for line, row in enumerate(reader, start=2):
            puzzle = (row["Puzzle"] or "").strip()
            solution = (row["Solution"] or "").strip()
            if len(puzzle) != CELLS or any(ch not in "01234" for ch in puzzle):
                raise DataError(str(path), f"line {line}: Puzzle {puzzle!r} is not 16 characters 0-4")
            if not is_valid_grid(solution):
                raise DataError(str(path), f"line {line}: Solution {solution!r} is not a valid 4x4 grid")
            if any(p != "0" and p != s for p, s in zip(puzzle, solution)):
                raise DataError(str(path), f"line {line}: Solution {solution!r} contradicts the givens of {puzzle!r}")
            items.append(make_item(puzzle, solution))
    return items


# ---------------------------------------------------------------------------- answers


def chat_answer(completion: str) -> str | None:
    """Content of the LAST non-empty answer block of ``completion`` (stripped), or None.

    The shared parser of the chat tasks (:func:`dmpo.tasks.base.answer_block`), read up to the
    first end-of-turn token: the last closing tag with the nearest opening tag before it, or
    a final block that never closed; empty blocks are skipped. Linear in the text's length.
    """
    if not isinstance(completion, str):
        return None
    found = answer_block(cut_at_end_of_turn(completion), "answer")
    return None if found is None else found.strip()


def answer_grid(answer: str) -> str:
    """The digits of ``answer`` in order, cut to 16 and padded with ``0``."""
    digits = "".join(ch for ch in answer if "0" <= ch <= "9")
    return digits[:CELLS].ljust(CELLS, "0")


def cell_accuracy(answer: str | None, puzzle: str, solution: str) -> float:
    """Fraction of the empty cells of ``puzzle`` where ``answer`` (raw text) matches ``solution``.

    0 when there is no answer; 1 for a puzzle without empty cells that got an answer.
    """
    correct, total = _cell_counts(answer, puzzle, solution)
    if answer is None:
        return 0.0
    return correct / total if total else 1.0


def _cell_counts(answer: str | None, puzzle: str, solution: str) -> tuple[int, int]:
    """(correct empty cells, empty cells) of one answer."""
    blanks = [i for i, ch in enumerate(puzzle) if ch == "0"]
    if answer is None:
        return 0, len(blanks)
    grid = answer_grid(answer)
    return sum(grid[i] == solution[i] for i in blanks), len(blanks)


def _extract(style: str, completion: str) -> str | None:
    if not isinstance(completion, str):
        return None
    if style == "chat":
        return chat_answer(completion)
    digits = "".join(ch for ch in cut_at_end_of_turn(completion) if "0" <= ch <= "9")
    return digits[:CELLS] if digits else None


@attrs.frozen(kw_only=True)
class SudokuCellsReward:
    """Reward ``sudoku-cells``: fraction of the originally empty cells answered correctly.

    Items must carry ``puzzle`` and ``solution``. Never raises on a completion's content.
    """

    prompt_style: Literal["chat", "compact"] = "chat"
    """Where the answer is: the last ``<answer>`` tag (chat) or the whole completion (compact)."""

    def __attrs_post_init__(self) -> None:
        if self.prompt_style not in PROMPT_STYLES:
            raise ConfigError([f"prompt_style={self.prompt_style!r}: choose one of {', '.join(PROMPT_STYLES)}"],
                              source=f"reward {REWARD_NAME!r}")

    def __call__(
        self, prompts: Sequence[str], completions: Sequence[str], items: Sequence[Mapping[str, Any]]
    ) -> list[float | None]:
        """One reward in [0, 1] per completion."""
        return [
            cell_accuracy(_extract(self.prompt_style, c), it["puzzle"], it["solution"])
            for c, it in zip(completions, items)
        ]


# ---------------------------------------------------------------------------- task


def _digit_token_ids(tokenizer: Any) -> dict[str, int]:
    """Token id of each digit 0-4; each digit must be exactly one token."""
    out = {}
    for d in "01234":
        encoded = tokenizer.encode(d, add_special_tokens=False)
        ids = list(getattr(encoded, "ids", encoded))  # a ``tokenizers.Encoding`` or a list of ids
        if len(ids) != 1:
            raise InvalidArgumentError(
                "tokenizer", type(tokenizer).__name__,
                f"digit {d!r} encodes to {len(ids)} tokens {ids}; fixed-givens needs one token per digit "
                "(use a character-level tokenizer with the compact prompt style)",
            )
        out[d] = int(ids[0])
    return out


def _grid_text(puzzle: str) -> str:
    return "\n".join(" ".join(puzzle[4 * r : 4 * r + 4]) for r in range(4))


@attrs.frozen(kw_only=True, eq=False)
class SudokuTask:
    """The 4x4 Sudoku task (registered as ``sudoku``).

    Items are dicts ``{"puzzle": str, "solution": str, "blanks": int}`` (16-character
    row-major strings, ``0`` = empty). The object is its own frozen config (variants via
    ``attrs.evolve``); generated items are cached on first use. Compared by identity.
    """

    name: ClassVar[str] = "sudoku"

    prompt_style: Literal["chat", "compact"] = "chat"
    """``chat`` (instruction, <reasoning>/<answer>) or ``compact`` (digits + separator)."""
    fixed_givens: bool = False
    """Compact style only: hand the given digits to the sampler; only blanks are decoded."""
    min_blanks: int = 6
    """Fewest empty cells of a training puzzle (1-12)."""
    max_blanks: int = 10
    """Most empty cells of a training puzzle (1-12, >= min_blanks)."""
    test_blanks: int = 8
    """Empty cells of every generated test puzzle (the published set has 8)."""
    seed: int = 0
    """Seed of the grid split and of the puzzle draws."""
    test_grids: int = 48
    """Solution grids (of 288) held out for the generated test split."""
    train_size: int = 20_000
    """Generated training puzzles."""
    test_size: int | None = 256
    """Test puzzles (generated, or the first rows of ``csv_path``); None = every CSV row."""
    csv_path: str | None = None
    """CSV with columns Puzzle,Solution that replaces the generated test split."""
    exclude_test_grids: bool = True
    """With ``csv_path``: keep the CSV's solution grids out of training (else only its puzzles)."""
    template: str | None = None
    """Chat style: a prompt template file whose ``{puzzle}`` (16 digits) and ``{grid}`` (4 lines)
    are filled in (other braces are kept), e.g. to reproduce a paper's exact prompt."""
    separator: str = "="
    """Compact style: text between the puzzle digits and the completion."""
    rewards: dict[str, float | None] = attrs.field(factory=dict)
    """Reward weights by component name over the default ``{"sudoku-cells": 1.0}``: re-weight,
    disable (0 or null) or add any registered component (e.g. ``{"format-tags": 0.1}``)."""
    reward_options: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    """Keyword options of reward components by name."""
    _cache: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        problems = self._problems()
        if problems:
            raise ConfigError(problems, source="sudoku task")
        if self.csv_path is not None and not Path(self.csv_path).is_file():
            raise DataError(str(self.csv_path), "file not found; pass a CSV with columns Puzzle,Solution")
        if self.template is not None:
            text = read_template(self.template)
            if not template_placeholders(text) & {"puzzle", "grid"}:
                raise DataError(str(self.template), "the template uses neither {puzzle} nor {grid}; add one")
            self._cache["template"] = text

    def _problems(self) -> list[str]:
        problems = []

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if self.prompt_style not in PROMPT_STYLES:
            problems.append(f"prompt_style={self.prompt_style!r}: choose one of {', '.join(PROMPT_STYLES)}")
        for field in ("fixed_givens", "exclude_test_grids"):
            if not isinstance(getattr(self, field), bool):
                problems.append(f"{field}={getattr(self, field)!r}: pass true or false")
        if self.fixed_givens is True and self.prompt_style == "chat":
            problems.append("fixed_givens=True: only the compact prompt style has the cells at fixed positions; "
                            "use prompt_style='compact' or fixed_givens=False")
        for field in ("min_blanks", "max_blanks", "test_blanks"):
            v = getattr(self, field)
            if not is_int(v) or not 1 <= v <= MAX_BLANKS:
                problems.append(f"{field}={v!r}: pass an int in 1-{MAX_BLANKS} (a unique solution needs 4 givens)")
        if is_int(self.min_blanks) and is_int(self.max_blanks) and self.min_blanks > self.max_blanks:
            problems.append(f"min_blanks={self.min_blanks!r}: must not exceed max_blanks={self.max_blanks!r}")
        if not is_int(self.seed):
            problems.append(f"seed={self.seed!r}: pass an int")
        if not is_int(self.test_grids) or not 1 <= self.test_grids < len(all_grids()):
            problems.append(f"test_grids={self.test_grids!r}: pass an int in 1-{len(all_grids()) - 1}")
        if not is_int(self.train_size) or self.train_size < 1:
            problems.append(f"train_size={self.train_size!r}: pass an int >= 1")
        if self.test_size is not None and (not is_int(self.test_size) or self.test_size < 1):
            problems.append(f"test_size={self.test_size!r}: pass an int >= 1, or null for every CSV row")
        if self.test_size is None and self.csv_path is None:
            problems.append("test_size=None: only allowed with csv_path (generated test splits need a size)")
        if not isinstance(self.separator, str) or not self.separator or any(ch.isdigit() for ch in self.separator):
            problems.append(f"separator={self.separator!r}: pass a non-empty string without digits")
        if self.template is not None and self.prompt_style != "chat":
            problems.append(f"template={self.template!r}: only the chat prompt style uses a template")
        rewards_ok = isinstance(self.rewards, dict) and all(
            isinstance(k, str) and (v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)))
            for k, v in self.rewards.items()
        )
        if not rewards_ok:
            problems.append(f"rewards={self.rewards!r}: map component names to numeric weights (0 or null disables)")
        if not isinstance(self.reward_options, dict) or not all(
            isinstance(v, dict) for v in self.reward_options.values()
        ):
            problems.append(f"reward_options={self.reward_options!r}: map component names to keyword options")
        elif rewards_ok:
            unused = sorted(set(self.reward_options) - set(merge_reward_weights({REWARD_NAME: 1.0}, self.rewards)))
            if unused:
                problems.append(f"reward_options={unused!r}: give options only for components in use")
        return problems

    # -- protocol

    def protocol_facts(self) -> dict[str, Any]:
        """Prompt style, template, answer parser, metric version and data source of an evaluation
        (read by :func:`dmpo_core.protocols.evaluation_protocol`)."""
        if self.csv_path is not None:
            dataset = {"source": self.csv_path, "sha256": protocols.file_digest(self.csv_path),
                       "test_size": self.test_size}
        else:
            dataset = {"source": "generated", "seed": self.seed, "test_grids": self.test_grids,
                       "test_blanks": self.test_blanks, "test_size": self.test_size}
        prompt = protocols.prompt_facts(self.prompt_style, self.template)
        prompt["fixed_givens"] = self.fixed_givens
        return protocols.facts(prompt, {"accuracy": protocols.SUDOKU_METRIC}, dataset)

    # -- data

    def _grids(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return split_grids(self.seed, self.test_grids)

    def test_items(self) -> list[dict[str, Any]]:
        """Held-out puzzles: generated from the held-out grids, or the rows of ``csv_path``."""
        if "test" not in self._cache:
            if self.csv_path is not None:
                items = load_csv(self.csv_path)
                items = items if self.test_size is None else items[: self.test_size]
            else:
                assert self.test_size is not None
                rng = random.Random(f"sudoku-test-{self.seed}")
                items = generate_puzzles(self._grids()[1], self.test_size, min_blanks=self.test_blanks,
                                         max_blanks=self.test_blanks, rng=rng, field="test_size")
            self._cache["test"] = items
        return list(self._cache["test"])

    def train_items(self) -> list[dict[str, Any]]:
        """Training puzzles; never a test puzzle, and (by default) never a test solution grid."""
        if "train" not in self._cache:
            exclude: frozenset[str] = frozenset()
            if self.csv_path is None:
                grids = self._grids()[0]
            else:
                test = self.test_items()
                if self.exclude_test_grids:
                    held = {it["solution"] for it in test}
                    grids = tuple(g for g in all_grids() if g not in held)
                    if not grids:
                        raise ConfigError(["exclude_test_grids=True: the CSV uses every grid; set it to false"],
                                          source="sudoku task")
                else:
                    grids = all_grids()
                exclude = frozenset(it["puzzle"] for it in test)
            rng = random.Random(f"sudoku-train-{self.seed}")
            self._cache["train"] = generate_puzzles(grids, self.train_size, min_blanks=self.min_blanks,
                                                    max_blanks=self.max_blanks, rng=rng, exclude=exclude,
                                                    field="train_size")
        return list(self._cache["train"])

    # -- prompts

    def prompt(self, item: Mapping[str, Any], tokenizer: Any) -> str:
        """The prompt text: ``puzzle + separator`` (compact) or the instruction (chat)."""
        puzzle = item["puzzle"]
        if self.prompt_style == "compact":
            return f"{puzzle}{self.separator}"
        template = self._cache.get("template", CHAT_INSTRUCTION)
        return chat_prompt(tokenizer, render_template(template, {"puzzle": puzzle, "grid": _grid_text(puzzle)}))

    def completion_prefill(self, item: Mapping[str, Any], tokenizer: Any, gen_length: int, mask_id: int) -> list[int] | None:
        """Fixed-givens prefill ``[L]``: the given digits' token ids, ``mask_id`` at blanks and past 16.

        None unless the style is compact and ``fixed_givens`` is on. Each digit must be a
        single token of ``tokenizer`` (a transformers tokenizer or a ``tokenizers.Tokenizer``).
        """
        if self.prompt_style != "compact" or not self.fixed_givens:
            return None
        if gen_length < CELLS:
            raise InvalidArgumentError("gen_length", gen_length, f"the compact completion needs {CELLS} positions")
        ids = self._cache.get("digit_ids")
        if ids is None or self._cache.get("digit_tokenizer") is not tokenizer:
            ids = self._cache["digit_ids"] = _digit_token_ids(tokenizer)
            self._cache["digit_tokenizer"] = tokenizer
        cells = [mask_id if ch == "0" else ids[ch] for ch in item["puzzle"]]
        return cells + [mask_id] * (gen_length - CELLS)

    def relevant_positions(self, item: Mapping[str, Any], gen_length: int) -> list[bool] | None:
        """Completion positions the reward reads (compact style: the blank cells); None in chat style."""
        if self.prompt_style != "compact":
            return None
        blanks = [ch == "0" for ch in item["puzzle"]] + [False] * max(0, gen_length - CELLS)
        return blanks[:gen_length]

    # -- reward and metric

    def reward_components(self) -> list[RewardComponent]:
        """``sudoku-cells`` (weight 1) with ``rewards`` applied; other names come from the registry."""
        if "components" not in self._cache:
            weights = merge_reward_weights({REWARD_NAME: 1.0}, self.rewards)
            others = {n: w for n, w in weights.items() if n != REWARD_NAME}
            options = {n: o for n, o in self.reward_options.items() if n != REWARD_NAME}
            resolved = iter(resolve_reward_components(others, context={"task": self}, options=options) if others else [])
            own = {"prompt_style": self.prompt_style, **self.reward_options.get(REWARD_NAME, {})}
            self._cache["components"] = [
                RewardComponent(name=n, weight=w, fn=SudokuCellsReward(**own)) if n == REWARD_NAME else next(resolved)
                for n, w in weights.items()
            ]
        return list(self._cache["components"])

    def correctness(self, completion: str, item: Mapping[str, Any]) -> float:
        """Value of the shared ``correct`` component: the cell accuracy, as :meth:`score`."""
        return self.score(completion, item)

    def extract_answer(self, completion: str) -> str | None:
        """The raw answer (last ``<answer>`` content, or the completion's first 16 digits), or None."""
        return _extract(self.prompt_style, completion)

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        """Fraction of the item's empty cells answered correctly (0 without an answer)."""
        return cell_accuracy(_extract(self.prompt_style, completion), item["puzzle"], item["solution"])

    def metric(self, completions: Sequence[str], items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """``accuracy`` (correct empty cells / all empty cells), ``solved`` (puzzles fully right), ``n``."""
        if len(completions) != len(items):
            raise InvalidArgumentError(
                "completions", f"{len(completions)} completions", f"pass one completion per item ({len(items)} items)"
            )
        correct = total = solved = 0
        for completion, item in zip(completions, items):
            c, t = _cell_counts(_extract(self.prompt_style, completion), item["puzzle"], item["solution"])
            correct, total, solved = correct + c, total + t, solved + (c == t)
        n = len(items)
        return {
            "accuracy": correct / total if total else float("nan"),
            "solved": solved / n if n else float("nan"),
            "n": float(n),
        }


@hookimpl
def register_tasks(register):
    """Register the ``sudoku`` task."""
    register("sudoku", SudokuTask, options=SudokuTask, help="4x4 Sudoku: generated puzzles split by solution grid, cell-accuracy reward")


@hookimpl
def register_rewards(register):
    """Register the ``sudoku-cells`` reward component."""
    register(REWARD_NAME, SudokuCellsReward, help="fraction of a Sudoku's empty cells answered correctly")
