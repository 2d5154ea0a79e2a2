"""Shared pieces of task plugins.

Reward composition lives in :mod:`dmpo_core.rewards` (the training loop uses it); it is
re-exported here for task authors.
"""

from __future__ import annotations

from dmpo_core.rewards import ComposedRewards, RewardComponent, score_components

__all__ = ["ComposedRewards", "RewardComponent", "score_components"]
