"""Recommended configs: what a built-in model or a plugin's backend or task is tuned with.

``dmpo train`` builds its config in layers, each over the one before (the later wins):

1. the built-in model's recipe (``builtin:NAME`` ships ``dmpo_train.yaml``);
2. the recommended config the chosen backend registered for the model, then the chosen task's
   (``register(..., recommended_config=...)``);
3. the ``--config`` file, then ``--backend``/``--task``/``--model``, then ``--set``.

dmpo's own components register no recommended config (their recipes live with the built-in
models; a test keeps it so), so the plugins are consulted only when the config names a
backend or task that is not the default one: ``dmpo train --help`` and config errors of the
demo's command answer without loading any plugin (or torch).
"""

from __future__ import annotations

from typing import Any

from dmpo_core.training.config import TrainConfig
from dmpo.backends import builtin


def chosen(key: str, user: dict[str, Any], recipe: dict[str, Any]) -> str:
    """The ``backend``/``task``/``model`` a run uses: the user's, else the recipe's, else the default."""
    return user.get(key) or recipe.get(key) or getattr(TrainConfig(), key)


def plugin_layers(user: dict[str, Any], recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """The recommended configs of the chosen backend (for the chosen model) and task, in that
    order; [] when both are the default ones (no plugin is loaded then)."""
    backend, task, model = (chosen(k, user, recipe) for k in ("backend", "task", "model"))
    defaults = TrainConfig()
    if backend in (defaults.backend, recipe.get("backend")) and task in (defaults.task, recipe.get("task")):
        return []
    from dmpo_core.errors import UnknownNameError
    from dmpo_core.registry import get_registry

    registry = get_registry()
    layers = []
    for kind, name in (("backend", backend), ("task", task)):
        try:
            entry = registry.get(kind, name)
        except UnknownNameError:
            continue  # reported with every other problem when the run is planned
        recommended = entry.recommended(model) if kind == "backend" else entry.recommended()
        if recommended:  # named with its component, so that options written for it are kept for it
            layers.append({**recommended, kind: name})
    return layers


def recipe_of(model: str) -> dict[str, Any]:
    """The built-in model's recipe ({} for any other model)."""
    return builtin.recommended_config(model)
