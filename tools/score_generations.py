"""Score saved generations of another evaluation with our task scorers, to compare protocols.

Reads JSON files in the layout of the d1 repository's released baseline generations
(``{"generations": [{"question", "generations", "ground_truth"}, ...]}``, one file per shard,
named ``TASK_instruct_LENGTH_STEPS_SHARD_generations.json``) and prints, per task and length,
how many items our scorers credit:

* ``v1``: the text as our decoder made it before end-of-turn stops (special tokens removed,
  so text after ``<|eot_id|>`` joins the answer), read by the answer parser ``answer-block/1``
  (last complete ``<answer>`` pair, else the last box);
* ``v2``: the text cut at its first end-of-turn or end-of-text token, read by ``answer-block/2``
  (what dmpo scores now);
* MATH500 also with the papers' string match (``math-string-match/1``) beside math-verify.

The files are not part of this repository; pass their folder::

    python tools/score_generations.py path/to/eval_baselines
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

from dmpo.tasks.base import END_OF_TURN_TEXTS, extract_tagged_answer, last_boxed, last_tag_content
from dmpo.tasks.countdown import countdown_reward
from dmpo.tasks.gsm8k import numbers_match
from dmpo.tasks.math_string_match import strings_match
from dmpo.tasks.sudoku import cell_accuracy

_NAME = re.compile(r"(?P<task>[a-z0-9]+)_instruct_(?P<length>\d+)_(?P<steps>\d+)_\d+_generations\.json$")
_PUZZLE = re.compile(r"\d{16}")


def old_answer(text: str) -> str | None:
    """answer-block/1 on the v1 text: the last complete answer pair (a box inside unwrapped), else the last box."""
    for token in END_OF_TURN_TEXTS:
        text = text.replace(token, "")
    found = last_tag_content(text, "answer")
    if found is not None:
        inner = last_boxed(found)
        found = inner if inner is not None else found
    else:
        found = last_boxed(text)
    found = None if found is None else found.strip()
    return found or None


def score(task: str, answer: str | None, row: dict, verify) -> dict[str, float]:
    truth = row["ground_truth"]
    if task == "gsm8k":
        return {"accuracy": float(numbers_match(answer, str(truth)))}
    if task == "countdown":
        numbers, target = truth
        return {"accuracy": float(countdown_reward(answer, numbers, target) == 1.0)}
    if task == "sudoku":
        puzzle = _PUZZLE.search(row["question"]).group()
        blanks = puzzle.count("0")
        return {"cells": cell_accuracy(answer, puzzle, truth) * blanks, "blanks": float(blanks)}
    return {"accuracy": float(verify(str(truth), answer)), "string_match": float(strings_match(str(truth), answer))}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    from dmpo.tasks.mathverify import answers_equivalent

    totals: dict[tuple[str, int], collections.Counter] = collections.defaultdict(collections.Counter)
    for path in sorted(args.folder.glob("*_generations.json")):
        m = _NAME.search(path.name)
        if m is None:
            continue
        key = (m["task"], int(m["length"]))
        for row in json.loads(path.read_text())["generations"]:
            text = row["generations"]
            totals[key]["n"] += 1
            for version, answer in (("v1", old_answer(text)), ("v2", extract_tagged_answer(text))):
                for name, value in score(m["task"], answer, row, answers_equivalent).items():
                    totals[key][f"{version}_{name}"] += value
    for (task, length), c in sorted(totals.items()):
        n = c.pop("n")
        if task == "sudoku":
            shown = {v: 100 * c[f"{v}_cells"] / c[f"{v}_blanks"] for v in ("v1", "v2")}
        else:
            shown = {k: 100 * v / n for k, v in sorted(c.items())}
        print(f"{task:10s} L={length:<4d} n={n:<5d} " + "  ".join(f"{k} {v:.1f}%" for k, v in shown.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
