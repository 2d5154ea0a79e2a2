"""Turn a TrainConfig into built components: names are checked, and every cheap component
is built, BEFORE the model is loaded, so a bad config fails in a second, not after a
multi-gigabyte load.
"""

from __future__ import annotations

import inspect
from typing import Any

import attrs

from dmpo_core.errors import ConfigError, DmpoError, InvalidArgumentError
from dmpo_core.registry import Registry, get_registry
from dmpo_core.training import Components, TrainConfig
from dmpo.backends import builtin


def accepted_options(factory: Any, options: dict[str, Any], optional: tuple[str, ...]) -> dict[str, Any]:
    """Drop the ``optional`` keys that ``factory`` does not take (e.g. ``steps`` for ROAR,
    which always takes one step per token); every other key is passed and checked by it."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return options
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return options
    return {k: v for k, v in options.items() if k in params or k not in optional}


def sampler_options(
    cfg: TrainConfig, *, temperature: float | None = None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Options of the rollout (or, with ``temperature=0``, evaluation) sampler.

    ``extra`` replaces ``rollout.sampler_options`` (the evaluation sampler's own options).
    """
    rc = cfg.rollout
    return {
        "gen_length": rc.gen_length,
        "block_length": rc.block_length,
        "steps": rc.steps,
        "temperature": rc.temperature if temperature is None else temperature,
        **(rc.sampler_options if extra is None else extra),
    }


def eval_sampler_spec(cfg: TrainConfig) -> tuple[str, dict[str, Any]]:
    """Name and options of the (greedy) evaluation sampler: ``eval_sampler`` or the rollout sampler."""
    if cfg.eval_sampler is None and cfg.eval_sampler_options is None:
        return cfg.rollout.sampler, sampler_options(cfg, temperature=0.0)
    name = cfg.eval_sampler or cfg.rollout.sampler
    return name, sampler_options(cfg, temperature=0.0, extra=cfg.eval_sampler_options or {})


def make_sampler(name: str, options: dict[str, Any], registry: Registry | None = None) -> Any:
    """Build a registered sampler; ``steps`` is passed only to samplers that take it."""
    reg = registry or get_registry()
    entry = reg.get("sampler", name)
    try:
        return entry.factory(**accepted_options(entry.factory, options, optional=("steps",)))
    except TypeError as err:  # an option this sampler does not have
        raise InvalidArgumentError("sampler_options", sorted(options), f"sampler {name!r}: {err}") from err


@attrs.frozen
class Plan:
    """Everything but the policy and the engine (which need the loaded model)."""

    task: Any
    sampler: Any
    eval_sampler: Any
    weighting: Any
    objective: Any


def plan(cfg: TrainConfig, registry: Registry | None = None) -> Plan:
    """Check every name and build the model-free components; one ConfigError lists all problems."""
    reg = registry or get_registry()
    problems: list[str] = []
    built: dict[str, Any] = {}

    def attempt(key: str, kind: str, name: str, options: dict[str, Any]) -> None:
        try:
            built[key] = reg.create(kind, name, **options)
        except DmpoError as err:
            problems.append(f"{key}: {err}")
        except TypeError as err:  # unknown keyword option of a component
            problems.append(f"{key} {name!r}: {err}")

    for kind, name in (("backend", cfg.backend), ("engine", cfg.engine)):
        try:
            reg.get(kind, name)
        except DmpoError as err:
            problems.append(str(err))
    try:
        builtin.resolve(cfg.model)
    except DmpoError as err:
        problems.append(str(err))
    attempt("task", "task", cfg.task, dict(cfg.task_options))
    specs = {"sampler": (cfg.rollout.sampler, sampler_options(cfg)), "eval_sampler": eval_sampler_spec(cfg)}
    for key, (name, options) in specs.items():
        try:
            built[key] = make_sampler(name, options, reg)
        except DmpoError as err:
            problems.append(f"{key}: {err}")
        except TypeError as err:
            problems.append(f"{key} {name!r}: {err}")
    attempt("weighting", "weighting", cfg.weighting.scheme, dict(cfg.weighting.options))
    attempt("objective", "objective", cfg.loss.objective, dict(cfg.loss.options))
    if problems:
        raise ConfigError(problems, source="run configuration")
    return Plan(**built)


def load_policy(backend: str, model: str, options: dict[str, Any], registry: Registry | None = None) -> Any:
    """Load a policy through its registered backend (``builtin:NAME`` resolved to the shipped folder)."""
    reg = registry or get_registry()
    return reg.create("backend", backend, model=builtin.resolve(model), **options)


def build_components(cfg: TrainConfig, registry: Registry | None = None) -> Components:
    """Plan (fast checks), then load the policy and make the engine."""
    reg = registry or get_registry()
    p = plan(cfg, reg)
    policy = load_policy(cfg.backend, cfg.model, dict(cfg.backend_options), reg)
    o = cfg.optim
    engine = reg.create(
        "engine", cfg.engine, policy=policy, lr=o.lr, beta1=o.beta1, beta2=o.beta2, weight_decay=o.weight_decay,
        grad_clip=o.grad_clip, warmup_steps=o.warmup_steps, schedule=o.schedule,
        total_steps=cfg.total_steps * cfg.loss.num_iterations,
    )
    return Components(policy=policy, task=p.task, sampler=p.sampler, eval_sampler=p.eval_sampler,
                      weighting=p.weighting, objective=p.objective, engine=engine)
