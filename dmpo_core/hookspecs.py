"""Plugin hook specifications.

Every hook is named ``register_<things>(register)``: dmpo passes a ``register`` callback
and owns the collection, so names, aliases and collisions are decided in one place.

``register(name, factory, *, options=None, fixed=None, aliases=(), help="", resolve_model=None,
recommended_config=None)``:

* ``name`` (str): the name users type (``--backend llada``); lower case, ``-`` allowed.
* ``factory``: a callable that builds the component from keyword arguments (a class or
  a function). What it builds must satisfy the matching contract of
  :mod:`dmpo_core.contracts`.
* ``options``: a frozen ``attrs`` class of the component's options (often the component
  class itself). Users' options are checked against it (unknown keys, types, validators,
  all at once, with their dotted path) before any model loads, its fields are what
  ``dmpo plugins NAME`` shows, and the property laws draw options from it. Without it
  the factory checks its own keywords.
* ``fixed``: options the name fixes (``register("dmpo", DmpoWeighting, options=DmpoWeighting,
  fixed={"baseline": "negative"})``); a user who sets one gets an error, not a silent override.
* ``resolve_model`` (backends only): ``fn(model: str) -> str`` run before anything loads,
  turning the user's model string into what the factory loads (or raising a typed error).
* ``recommended_config`` (backends and tasks): the training config the component is tuned
  with, as nested keys (``{"rollout": {"gen_length": 64}}``), or for a backend
  ``fn(model: str) -> config`` for the model it loads. ``dmpo train`` layers it under the
  user's config file, flags and ``--set`` (the user's values win).
* ``aliases``: further names for the same component.
* ``help``: one line shown by ``dmpo plugins``.

Registering a name that another plugin registered for the same kind raises
:class:`~dmpo_core.errors.DuplicateNameError` naming both plugins. A plugin module
implements any subset of these hooks with ``@dmpo_core.hookimpl`` and may accept fewer
arguments than the spec (so specs can grow). Third-party plugins are found through
the entry-point group ``dmpo``.
"""

from __future__ import annotations

import pluggy

PROJECT = "dmpo"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_backends(register):
    """Register dLLM backends: ``factory(model: str, **options) -> Policy``.

    ``model`` is a local folder or a hub id; options include dtype, device and LoRA
    settings. Example: ``register("llada", load_llada_policy, help="LLaDA checkpoints")``.
    """


@hookspec
def register_engines(register):
    """Register execution engines: ``factory(policy, **options) -> Engine``.

    An engine owns the optimizer and applies updates (single process, DeepSpeed ...).
    """


@hookspec
def register_samplers(register):
    """Register rollout samplers: ``factory(**options) -> Sampler``.

    Options are the sampler's own settings (gen length, steps, temperature ...).
    """


@hookspec
def register_tasks(register):
    """Register tasks: ``factory(**options) -> Task`` (data, prompts, rewards, metric)."""


@hookspec
def register_rewards(register):
    """Register reward components: ``factory(**options) -> Reward``.

    A task names its components; a config can add, remove or re-weight them by name.
    """


@hookspec
def register_weightings(register):
    """Register weighting schemes: ``factory(**options) -> WeightingScheme``.

    Example: ``register("dmpo", DmpoWeighting)``. Check a new scheme with the public laws
    in :mod:`dmpo_core.testing`.
    """


@hookspec
def register_objectives(register):
    """Register objectives (losses): ``factory(**options) -> Objective``."""


@hookspec
def register_commands(register):
    """Register extra command-line commands: ``factory() -> click.Command``.

    The command is added to the ``dmpo`` command group under ``name``.
    """
