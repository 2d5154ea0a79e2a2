"""What each built-in task records about its evaluation protocol (``protocol_facts()``).

An evaluation record (:func:`dmpo_core.protocols.evaluation_protocol`) holds the decoding;
the task adds how its prompts were written, how answers were read and scored (each metric
with a version), and where its items came from. A version changes whenever a change to the
code can change a score on the same completion, so two numbers with the same versions were
scored the same way (docs/protocols.md lists them and what changed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ANSWER_PARSER = "answer-block/2"
"""Chat-style answer reading. 1: the last complete ``<answer>...</answer>``, else the last
``\\boxed{}``. 2: text after the first end-of-turn token is not read; a final answer block
that never closed counts; empty tags and empty boxes are placeholders, skipped."""
COMPACT_PARSER = "compact/2"
"""Compact-style answer reading: the whole completion (2: up to the first end-of-turn token)."""

GSM8K_METRIC = "gsm8k-last-number/1"
"""Exact match of the answer's last number with the reference (commas, ``$``, ``.0`` ignored)."""
COUNTDOWN_METRIC = "countdown-exact/1"
"""The expression uses exactly the given numbers and evaluates to the target (|error| < 1e-5)."""
SUDOKU_METRIC = "sudoku-cells/1"
"""Correct blank cells over all blank cells of the evaluated puzzles (micro-averaged)."""
MATH_STRING_METRIC = "math-string-match/1"
"""The papers' MATH metric: the normalised answer string equals the normalised reference
(:mod:`dmpo.tasks.math_string_match`)."""


def math_verify_metric() -> str:
    """``math-verify/VERSION`` of the installed math-verify (its version is the metric's)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"math-verify/{version('math-verify')}"
    except PackageNotFoundError:
        return "math-verify/not-installed"


def file_digest(path: str | None) -> str | None:
    """A short SHA-256 of a file's bytes (None when there is no path or no readable file)."""
    if path is None:
        return None
    try:
        return hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def prompt_facts(prompt_style: str, template: str | None, *, chat: bool = True) -> dict[str, Any]:
    """Prompt style, the user template (path and digest, None for the built-in text) and the answer parser."""
    return {
        "prompt_style": prompt_style,
        "template": None if template is None else {"path": str(template), "sha256": file_digest(template)},
        "answer_parser": ANSWER_PARSER if prompt_style == "chat" and chat else COMPACT_PARSER,
    }


def facts(prompt: Mapping[str, Any], metrics: Mapping[str, str], dataset: Mapping[str, Any]) -> dict[str, Any]:
    """One task's ``protocol_facts()``: prompt facts, ``metrics`` (metric key -> name/version), data source."""
    return {**prompt, "metrics": dict(metrics), "dataset": dict(dataset)}
