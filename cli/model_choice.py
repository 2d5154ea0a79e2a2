"""What ``--model`` / ``--adapter`` name, and the recipe that comes with it.

``dmpo eval`` and ``dmpo generate`` accept a checkpoint folder (``policy/`` of a run), a
peft adapter folder (``adapter/`` of a LoRA run) alone or with ``--adapter`` beside a base
``--model``, a hub id, or ``builtin:NAME``. This module finds the base model to load, the
adapter to apply to it, and the recipe to take defaults from (the adapter's, else the
model's ``dmpo_recipe.json``, else a built-in model's shipped config), then merges the
command's options over that recipe (:func:`dmpo_core.training.recipe.apply_recipe`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import click

from dmpo_core.errors import InvalidArgumentError
from dmpo_core.training.recipe import RECIPE_FILE, Recipe, RunSettings, apply_recipe, read_recipe
from dmpo.backends import builtin

@attrs.frozen(kw_only=True)
class ModelChoice:
    """The model to load, the adapter to apply to it, and where the defaults come from."""

    model: str
    """What the backend loads (a folder, hub id or ``builtin:NAME``)."""
    adapter: str | None
    """A peft adapter folder applied to ``model`` (backend option ``adapter``), or None."""
    recipe: Recipe | None
    """The recipe found (None: plain defaults)."""
    recipe_source: str
    """Where the recipe came from, for the mismatch line."""


def choose_model(model: str, adapter: str | None = None, *, backend: str | None = None,
                 task: str | None = None) -> ModelChoice:
    """Resolve ``--model`` (and ``--adapter``) into the base model, the adapter and the recipe.

    The recipe is the adapter's, else the model's (a built-in model's shipped config, a
    checkpoint's ``dmpo_recipe.json``), else the recommended configs that a plugin ``backend``
    registered for the model and a plugin ``task`` for itself (as ``dmpo train`` layers them).

    Raises:
        InvalidArgumentError: an adapter folder given as ``--model`` that names no base model,
            or ``--adapter`` that is not an adapter folder.
        CheckpointError: a garbled ``dmpo_recipe.json``.
    """
    from dmpo.backends.peft_adapter import ADAPTER_CONFIG, adapter_base_model, is_adapter_folder

    if adapter is not None and not is_adapter_folder(adapter):
        raise InvalidArgumentError("--adapter", adapter, f"not a peft adapter folder (no {ADAPTER_CONFIG}, or it "
                                   "holds a full model: pass that as --model)")
    if adapter is None and is_adapter_folder(model):
        adapter = model
        own = read_recipe(adapter)
        base = own.base_model if own is not None else adapter_base_model(adapter)
        if base is None:
            raise InvalidArgumentError("--model", model, "an adapter folder that names no base model; pass "
                                       "--model BASE --adapter FOLDER")
        model = base
    for source, found in ((adapter, lambda: read_recipe(adapter) if adapter else None),
                          (model, lambda: builtin.recipe(model)),
                          (model, lambda: read_recipe(model))):
        recipe = found()
        if recipe is not None:
            where = f"{model}'s shipped config" if builtin.is_builtin(str(source)) else f"{source}/{RECIPE_FILE}"
            return ModelChoice(model=model, adapter=adapter, recipe=recipe, recipe_source=where)
    recommended = plugin_recipe(model, backend=backend, task=task)
    if recommended is not None:
        return ModelChoice(model=model, adapter=adapter, recipe=recommended,
                           recipe_source=f"{backend or task}'s recommended config")
    return ModelChoice(model=model, adapter=adapter, recipe=None, recipe_source="")


def plugin_recipe(model: str, *, backend: str | None, task: str | None) -> Recipe | None:
    """The recipe of the recommended configs a plugin backend (for ``model``) and a plugin task
    registered (None when neither did; no plugin is loaded for dmpo's own backend and task)."""
    from dmpo.cli import configfile, recipes
    from dmpo_core.training.config import TrainConfig

    user = {k: v for k, v in (("backend", backend), ("task", task), ("model", model)) if v}
    layers = recipes.plugin_layers(user, {})
    if not layers:
        return None
    data: dict[str, Any] = {}
    for layer in layers:
        data = configfile.layer(data, layer)
    return Recipe.from_config(TrainConfig.from_dict(configfile.layer(data, user), source="recommended config"))


def settings_for(
    choice: ModelChoice,
    *,
    task: str | None,
    backend: str | None,
    gen_length: int | None,
    block_length: int | None,
    steps: int | None,
    sampler: str | None,
    sampler_options: Mapping[str, Any],
    task_options: Mapping[str, Any],
    task_accepts: Callable[[str], bool] = lambda _key: False,
) -> RunSettings:
    """:func:`apply_recipe` with the choice's recipe, naming its source in the mismatch line."""
    return apply_recipe(choice.recipe, task=task, backend=backend, gen_length=gen_length, block_length=block_length,
                        steps=steps, sampler=sampler, sampler_options=sampler_options, task_options=task_options,
                        task_accepts=task_accepts, label=f"the recipe in {choice.recipe_source}")


def backend_options(choice: ModelChoice, given: Mapping[str, Any]) -> dict[str, Any]:
    """The ``--backend-option`` values, with the chosen adapter as option ``adapter``."""
    out = dict(given)
    if choice.adapter is not None:
        out.setdefault("adapter", choice.adapter)
    return out


def wants_chat(choice: ModelChoice, chat: bool | None) -> bool:
    """Whether ``dmpo generate`` wraps its prompt in the chat template: ``--chat/--no-chat``
    when given (saying in one line when it contradicts the recipe), else the recipe's prompt
    style (``compact`` prompts were trained without the template; no recipe: the template)."""
    style = choice.recipe.prompt_style if choice.recipe is not None else None
    if chat is None:
        return style != "compact"
    if style is not None and chat != (style != "compact"):
        click.echo(f"--{'' if chat else 'no-'}chat differs from the recipe in {choice.recipe_source} "
                   f"(prompt_style={style})", err=True)
    return chat
