"""The training loop and its configuration, written against the contracts only."""

from dmpo_core.training.config import LossConfig, OptimConfig, RolloutConfig, ScoringConfig, TrainConfig, WeightingConfig
from dmpo_core.training.evaluate import evaluate
from dmpo_core.training.loop import Components, train

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
