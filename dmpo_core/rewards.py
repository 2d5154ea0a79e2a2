"""Reward composition that never breaks a run.

A task's reward is a weighted sum of named components (each a registered
:class:`~dmpo_core.contracts.Reward`). A component that raises, or returns a non-finite
value, for one completion leaves that completion without a reward (``None``), counted
in the metrics; the other completions are scored as usual.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dmpo_core.contracts import Reward


@attrs.frozen(kw_only=True)
class RewardComponent:
    """One named, weighted reward component of a task."""

    name: str
    weight: float
    fn: Reward


@attrs.frozen(kw_only=True)
class ComposedRewards:
    """Rewards of a batch of completions."""

    total: list[float | None]
    """Weighted sum per completion; None if any component could not score it."""
    components: dict[str, list[float | None]]
    """Raw (unweighted) value of each component per completion."""
    n_failed: int
    """Completions left without a reward because a component raised or returned a bad value."""

    def component_means(self) -> dict[str, float]:
        """Mean of each component over the completions it scored (for logging)."""
        out = {}
        for name, values in self.components.items():
            ok = [v for v in values if v is not None]
            out[name] = sum(ok) / len(ok) if ok else float("nan")
        return out


def _clean(value: Any) -> float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def _score_one_by_one(
    fn: Reward, prompts: Sequence[str], completions: Sequence[str], items: Sequence[Mapping[str, Any]]
) -> list[float | None]:
    out: list[float | None] = []
    for p, c, it in zip(prompts, completions, items):
        try:
            out.append(_clean(fn([p], [c], [it])[0]))
        except Exception:  # noqa: BLE001 - a reward bug on one completion must not stop training
            out.append(None)
    return out


def score_components(
    components: Sequence[RewardComponent],
    prompts: Sequence[str],
    completions: Sequence[str],
    items: Sequence[Mapping[str, Any]],
) -> ComposedRewards:
    """Score every completion with every component and combine them.

    Components are called on the whole batch; if a call raises or returns the wrong
    number of values, that component is re-run one completion at a time so only the
    offending completions lose their reward.
    """
    n = len(completions)
    per: dict[str, list[float | None]] = {}
    for comp in components:
        try:
            values = list(comp.fn(prompts, completions, items))
            if len(values) != n:
                raise ValueError(f"{comp.name} returned {len(values)} values for {n} completions")
            per[comp.name] = [_clean(v) for v in values]
        except Exception:  # noqa: BLE001
            per[comp.name] = _score_one_by_one(comp.fn, prompts, completions, items)
    total: list[float | None] = []
    for i in range(n):
        vals = [(c.weight, per[c.name][i]) for c in components]
        if any(v is None for _, v in vals):
            total.append(None)
        else:
            total.append(sum(w * v for w, v in vals))
    return ComposedRewards(total=total, components=per, n_failed=sum(t is None for t in total))
