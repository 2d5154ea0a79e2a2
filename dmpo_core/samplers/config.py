"""Validation shared by the sampler configurations.

Each sampler is a frozen attrs class whose ``__attrs_post_init__`` collects every
problem with :func:`block_problems` and friends and raises one
:class:`~dmpo_core.errors.ConfigError` listing them all; each problem names the field,
the value and the fix.
"""

from __future__ import annotations

import math

from dmpo_core.errors import ConfigError


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int_problem(name: str, value: object) -> str | None:
    """A problem line unless ``value`` is an int >= 1."""
    if not _is_int(value) or value < 1:  # type: ignore[operator]
        return f"{name}={value!r}: pass an int >= 1"
    return None


def block_problems(gen_length: object, block_length: object) -> list[str]:
    """Problems of ``gen_length`` and ``block_length`` (both >= 1, the block divides the length)."""
    problems = [q for q in (positive_int_problem("gen_length", gen_length),
                            positive_int_problem("block_length", block_length)) if q]
    if not problems and gen_length % block_length != 0:  # type: ignore[operator]
        problems.append(
            f"block_length={block_length!r}: must divide gen_length={gen_length!r} "
            f"(pick a divisor, e.g. block_length={gen_length!r} for a single block)"
        )
    return problems


def steps_problems(steps: object, gen_length: object, block_length: object) -> list[str]:
    """Problems of ``steps``: >= 1, a multiple of the number of blocks, at most ``gen_length``."""
    problem = positive_int_problem("steps", steps)
    if problem:
        return [problem]
    if not (_is_int(gen_length) and _is_int(block_length) and block_length >= 1 and gen_length % block_length == 0):
        return []  # reported by block_problems
    num_blocks = gen_length // block_length
    problems = []
    if steps % num_blocks != 0:  # type: ignore[operator]
        problems.append(
            f"steps={steps!r}: must be a multiple of the number of blocks {num_blocks} "
            f"(gen_length {gen_length} / block_length {block_length}); e.g. steps={num_blocks * max(1, steps // num_blocks)}"
        )
    if steps > gen_length:  # type: ignore[operator]
        problems.append(f"steps={steps!r}: at most gen_length={gen_length!r} (one token per step is the finest)")
    return problems


def temperature_problem(temperature: object) -> str | None:
    """A problem line unless ``temperature`` is a finite float >= 0 (0 = greedy)."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature):
        return f"temperature={temperature!r}: pass a finite float >= 0 (0 is greedy)"
    if temperature < 0:
        return f"temperature={temperature!r}: pass a float >= 0 (0 is greedy)"
    return None


def raise_problems(problems: list[str | None], sampler: str) -> None:
    """Raise one ConfigError listing every non-empty problem, if any."""
    found = [p for p in problems if p]
    if found:
        raise ConfigError(found, source=f"sampler {sampler!r} config")
