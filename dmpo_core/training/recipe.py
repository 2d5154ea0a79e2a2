"""The recipe a saved policy carries, so that a checkpoint evaluates as it was trained.

A policy trained on Sudoku with 16-token completions, compact prompts and fixed givens
is meaningless (or fails: a model with 256 learned positions cannot read 868) when it is
evaluated with the defaults of a LLaDA-8B run. So every saved policy folder holds
``dmpo_recipe.json``: the backend and base model, the task and the task options that
shaped it (the prompt style among them), the evaluation sampler with its options, and the
completion length, block length and denoising steps. ``dmpo eval`` / ``dmpo generate``
read it and use it as their defaults; an option given on the command line wins, and every
difference from the recipe is said in one line (:func:`apply_recipe`).

A built-in model's shipped training config (``dmpo_train.yaml``) is turned into the same
:class:`Recipe` by :meth:`Recipe.from_config`, so a built-in model and a checkpoint trained
from it take the same path.

The layouts a checkpoint holds (``checkpoint_layouts``: the family's original layout in
``policy/``, the stock transformers layout in ``policy-hf/``, a peft adapter in
``adapter/`` for LoRA runs) are named here too, so the loop and any engine write the same
folders (:func:`checkpoint_layouts`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from dmpo_core.errors import CheckpointError, InvalidArgumentError

RECIPE_FILE = "dmpo_recipe.json"
RECIPE_VERSION = 1

LAYOUT_FOLDERS: Mapping[str, str] = {"original": "policy", "hf": "policy-hf", "adapter": "adapter"}
"""Folder of each layout inside a checkpoint (``checkpoints/step-N/<folder>``)."""
LAYOUT_FORMATS: Mapping[str, str | None] = {"original": None, "hf": "converted", "adapter": "adapter"}
"""The ``format`` passed to ``Policy.save`` for each layout (None: the backend's own default)."""

DEFAULT_BACKEND = "llada"
DEFAULT_GEN_LENGTH = 256
DEFAULT_BLOCK_LENGTH = 32
DEFAULT_SAMPLER = "low-confidence"
_SAMPLER_LENGTH_KEYS = ("gen_length", "block_length", "steps", "temperature")


@attrs.frozen(kw_only=True)
class Recipe:
    """How a policy was trained and how it expects to be run (stored as ``dmpo_recipe.json``)."""

    backend: str
    """Registered backend that loads the policy (``llada``, ``dream``, a plugin's)."""
    base_model: str
    """The model the run started from (a folder, hub id or ``builtin:NAME``); an adapter is applied to it."""
    task: str
    """Task the policy was trained on."""
    task_options: dict[str, Any] = attrs.field(factory=dict)
    """Options of that task (prompt style, data options ...); applied only to the same task."""
    prompt_style: str | None = None
    """The task's ``prompt_style`` (also in ``task_options``); carried to another task that has the option."""
    sampler: str = DEFAULT_SAMPLER
    """The sampler the run evaluated with (``eval_sampler``, else the rollout sampler)."""
    sampler_options: dict[str, Any] = attrs.field(factory=dict)
    """Its own options (the lengths and steps are the fields below)."""
    gen_length: int = DEFAULT_GEN_LENGTH
    """Completion length ``L`` in tokens."""
    block_length: int = DEFAULT_BLOCK_LENGTH
    """Semi-autoregressive block length."""
    steps: int | None = None
    """Denoising steps of the evaluation sampler (None: gen_length / 2)."""
    step: int | None = None
    """Training step of the checkpoint (None for a built-in model's shipped recipe)."""

    @classmethod
    def from_config(cls, cfg: Any, *, step: int | None = None) -> Recipe:
        """The recipe of a run of :class:`~dmpo_core.training.config.TrainConfig` ``cfg``:
        the evaluation sampler of the run (``eval_sampler`` / ``eval_sampler_options``, else the
        rollout sampler with its options), with the rollout's lengths and steps under it."""
        from dmpo_core.training.build import eval_sampler_spec

        name, options, _ = eval_sampler_spec(cfg)
        steps = options.pop("steps", cfg.rollout.steps)
        for key in _SAMPLER_LENGTH_KEYS:
            options.pop(key, None)
        task_options = dict(cfg.task_options)
        return cls(backend=cfg.backend, base_model=cfg.model, task=cfg.task, task_options=task_options,
                   prompt_style=task_options.get("prompt_style"), sampler=name, sampler_options=options,
                   gen_length=cfg.rollout.gen_length, block_length=cfg.rollout.block_length, steps=steps, step=step)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``dmpo_recipe.json`` (with its format version)."""
        return {"version": RECIPE_VERSION, **attrs.asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, *, source: str) -> Recipe:
        """Read a recipe object; a malformed one is a one-line CheckpointError naming ``source``."""
        if not isinstance(data, dict):
            raise CheckpointError(source, "is not a recipe (a JSON object)")
        version = data.get("version")
        if version != RECIPE_VERSION:
            raise CheckpointError(source, f"has recipe version {version!r}; this dmpo reads version "
                                  f"{RECIPE_VERSION} (upgrade dmpo, or delete the file and pass the options by hand)")
        fields = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - fields - {"version"})
        if unknown:
            raise CheckpointError(source, f"has unknown keys {', '.join(unknown)}")
        try:
            recipe = cls(**{k: v for k, v in data.items() if k != "version"})
        except TypeError as err:
            raise CheckpointError(source, f"is incomplete ({err})") from err
        problems = [f"{k}={getattr(recipe, k)!r}" for k in ("gen_length", "block_length")
                    if not isinstance(getattr(recipe, k), int) or getattr(recipe, k) < 1]
        problems += [f"{k} is not a mapping" for k in ("task_options", "sampler_options")
                     if not isinstance(getattr(recipe, k), dict)]
        if problems:
            raise CheckpointError(source, f"holds bad values: {', '.join(problems)}")
        return recipe


def write_recipe(folder: str | Path, recipe: Recipe | Mapping[str, Any]) -> Path:
    """Write ``dmpo_recipe.json`` into ``folder`` (a saved policy); returns the file."""
    data = recipe.to_dict() if isinstance(recipe, Recipe) else dict(recipe)
    path = Path(folder) / RECIPE_FILE
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_recipe(folder: str | Path) -> Recipe | None:
    """The recipe saved in ``folder``, or None when there is none (or ``folder`` is a hub id).

    Raises:
        CheckpointError: the file exists but is garbled or of another version.
    """
    path = Path(folder).expanduser() / RECIPE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(str(path), f"is garbled ({type(err).__name__}); delete it and pass the options "
                              "by hand") from err
    return Recipe.from_dict(data, source=str(path))


def checkpoint_layouts(cfg: Any) -> dict[str, str | None]:
    """``folder -> Policy.save format`` of the layouts each checkpoint of ``cfg`` holds.

    ``cfg.checkpoint_layouts`` names them (``original`` -> ``policy/``, ``hf`` ->
    ``policy-hf/``); a run with a LoRA adapter (the Hugging Face backends' ``lora`` option)
    also writes ``adapter/``, the adapter alone, which peft reloads onto the base model.
    """
    names = list(cfg.checkpoint_layouts)
    if cfg.backend_options.get("lora") is not None and "adapter" not in names:
        names.append("adapter")
    return {LAYOUT_FOLDERS[n]: LAYOUT_FORMATS[n] for n in names}


def save_layouts(
    policy: Any,
    root: str | Path,
    layouts: Mapping[str, str | None],
    *,
    recipe: Recipe | Mapping[str, Any] | None,
    notice: Callable[[str], None] | None = None,
    label: str = "checkpoint",
) -> list[str]:
    """Save ``policy`` into ``root/<folder>`` for each ``folder -> format`` of ``layouts``
    (:func:`checkpoint_layouts`), each with ``recipe`` as ``dmpo_recipe.json``; returns the
    folders written. Engine-neutral: it needs only the policy's ``save(path, format=...)``.

    A layout the policy cannot be converted to (learned absolute positions have no stock
    transformers class) is said through ``notice`` and left out; when it is the only one,
    its error is raised.
    """
    written = []
    for folder, fmt in layouts.items():
        target = Path(root) / folder
        try:
            if fmt is None:
                policy.save(str(target))
            else:
                policy.save(str(target), format=fmt)
        except InvalidArgumentError as err:
            if len(layouts) == 1:
                raise
            if notice:
                notice(f"{label}: {folder}/ not written ({err})")
            continue
        if recipe is not None:
            write_recipe(target, recipe)
        written.append(folder)
    return written


# ---------------------------------------------------------------------------------------
# Defaults of `dmpo eval` / `dmpo generate` from a recipe
# ---------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RunSettings:
    """The settings a command runs with, after the recipe and the user's options are merged."""

    backend: str
    gen_length: int
    block_length: int
    steps: int
    sampler: str
    sampler_options: dict[str, Any]
    task_options: dict[str, Any]
    note: str | None
    """One line naming every given option that differs from the recipe (None when none does)."""


def apply_recipe(
    recipe: Recipe | None,
    *,
    task: str | None,
    backend: str | None = None,
    gen_length: int | None = None,
    block_length: int | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    sampler_options: Mapping[str, Any] | None = None,
    task_options: Mapping[str, Any] | None = None,
    task_accepts: Callable[[str], bool] = lambda _key: False,
    label: str = "the checkpoint's recipe",
) -> RunSettings:
    """Merge the user's options (None: not given) over ``recipe`` over the defaults.

    Rules (each given option wins over the recipe):

    * ``backend``, ``gen_length``, ``sampler``: given, else the recipe's, else llada / 256 /
      low-confidence;
    * ``block_length``: given, else the recipe's (or 32), at most ``gen_length``;
    * ``steps``: given, else the recipe's when the completion length is the recipe's, else
      ``gen_length // 2`` (the recipe's steps were chosen for its length);
    * sampler options: the recipe's only for the recipe's sampler, the given ones over them;
    * task options: the recipe's only for the recipe's task (a Sudoku model's ``fixed_givens``
      is no option of Countdown), the given ones over them; for another task only the
      recipe's ``prompt_style``, when ``task_accepts("prompt_style")``.
    """
    r = recipe
    given_sampler_options = dict(sampler_options or {})
    given_task_options = dict(task_options or {})
    chosen_backend = backend or (r.backend if r else DEFAULT_BACKEND)
    chosen_length = gen_length if gen_length is not None else (r.gen_length if r else DEFAULT_GEN_LENGTH)
    chosen_block = block_length if block_length is not None else min(r.block_length if r else DEFAULT_BLOCK_LENGTH,
                                                                      chosen_length)
    recipe_steps = r.steps if r is not None and r.steps is not None and chosen_length == r.gen_length else None
    chosen_steps = steps if steps is not None else (recipe_steps if recipe_steps is not None else chosen_length // 2)
    chosen_sampler = sampler or (r.sampler if r else DEFAULT_SAMPLER)
    base_sampler_options = dict(r.sampler_options) if r is not None and chosen_sampler == r.sampler else {}
    same_task = r is not None and task is not None and task == r.task
    if same_task:
        base_task_options = dict(r.task_options)
    elif r is not None and r.prompt_style is not None and task_accepts("prompt_style"):
        base_task_options = {"prompt_style": r.prompt_style}
    else:
        base_task_options = {}

    differences: list[str] = []
    if r is not None:
        for flag, value, recorded in (("--backend", backend, r.backend), ("--gen-length", gen_length, r.gen_length),
                                      ("--block-length", block_length, r.block_length),
                                      ("--sampler", sampler, r.sampler)):
            if value is not None and value != recorded:
                differences.append(f"{flag} {value} (recipe {recorded})")
        if steps is not None and r.steps is not None and steps != r.steps:
            differences.append(f"--steps {steps} (recipe {r.steps})")
        if task is not None and task != r.task:
            differences.append(f"--task {task} (recipe {r.task}: its task options are not applied)")
        for flag, given, recorded in (("--sampler-option", given_sampler_options, base_sampler_options),
                                      ("--task-option", given_task_options, base_task_options)):
            for key, value in sorted(given.items()):
                if key in recorded and recorded[key] != value:
                    differences.append(f"{flag} {key}={value} (recipe {recorded[key]})")
    note = (f"note: options that differ from {label} (the given ones are used): " + "; ".join(differences)
            if differences else None)
    return RunSettings(backend=chosen_backend, gen_length=chosen_length, block_length=chosen_block,
                       steps=chosen_steps, sampler=chosen_sampler,
                       sampler_options={**base_sampler_options, **given_sampler_options},
                       task_options={**base_task_options, **given_task_options}, note=note)


__all__ = [
    "LAYOUT_FOLDERS",
    "LAYOUT_FORMATS",
    "RECIPE_FILE",
    "Recipe",
    "RunSettings",
    "apply_recipe",
    "checkpoint_layouts",
    "read_recipe",
    "save_layouts",
    "write_recipe",
]
