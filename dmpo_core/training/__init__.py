"""The training loop and its configuration, written against the contracts only."""

from typing import Any

from dmpo_core.training.config import LossConfig, OptimConfig, RolloutConfig, ScoringConfig, TrainConfig, WeightingConfig

_LAZY = {"evaluate": "dmpo_core.training.evaluate", "Components": "dmpo_core.training.loop",
         "train": "dmpo_core.training.loop"}


def __getattr__(name: str) -> Any:
    """The loop and evaluation import torch: load them on first use, so that reading and
    checking a config (and ``dmpo train --help``) costs no torch import."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dmpo_core.training' has no attribute {name!r}")

__all__ = [
    "Components",
    "LossConfig",
    "OptimConfig",
    "RolloutConfig",
    "ScoringConfig",
    "TrainConfig",
    "WeightingConfig",
    "evaluate",
    "train",
]
