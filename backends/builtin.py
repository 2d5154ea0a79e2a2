"""Models shipped inside the package, selected as ``builtin:NAME``.

Each lives in ``backends/builtin_models/NAME/`` in a real checkpoint format (``sudoku-tiny``
and ``countdown-tiny`` are in the ORIGINAL LLaDA layout, so the demo exercises the same
loading path as LLaDA-8B) and may carry ``dmpo_train.yaml``, the training config it was
tuned with, which ``dmpo train`` uses as its base config and ``dmpo eval`` reads as the
model's recipe (:func:`recipe`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dmpo_core.errors import InvalidArgumentError

if TYPE_CHECKING:
    from dmpo_core.training.recipe import Recipe

PREFIX = "builtin:"
ROOT = Path(__file__).resolve().parent / "builtin_models"


def available() -> list[str]:
    """Names of the shipped models."""
    if not ROOT.is_dir():
        return []
    return sorted(p.name for p in ROOT.iterdir() if (p / "config.json").exists())


def is_builtin(model: str) -> bool:
    return model.startswith(PREFIX)


def resolve(model: str) -> str:
    """The folder of ``builtin:NAME``; other model strings are returned unchanged."""
    if not is_builtin(model):
        return model
    name = model[len(PREFIX):]
    path = ROOT / name
    if not (path / "config.json").exists():
        names = ", ".join(PREFIX + n for n in available()) or "(none shipped)"
        raise InvalidArgumentError("model", model, f"no such built-in model; available: {names}")
    return str(path)


def recipe(model: str) -> Recipe | None:
    """The :class:`~dmpo_core.training.recipe.Recipe` of a built-in model: how its shipped
    training config runs it (prompt style, lengths, steps, sampler); None for other models."""
    from dmpo_core.training.config import TrainConfig
    from dmpo_core.training.recipe import Recipe

    config = recommended_config(model)
    if not config:
        return None
    return Recipe.from_config(TrainConfig.from_dict(config, source=f"{model} dmpo_train.yaml"))


def recommended_config(model: str) -> dict[str, Any]:
    """The training config shipped with a built-in model ({} for other models)."""
    if not is_builtin(model):
        return {}
    path = Path(resolve(model)) / "dmpo_train.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}
