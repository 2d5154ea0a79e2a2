"""Run assembly: a :class:`TrainConfig` becomes the components of a run, through the registry.

Two stages, so that a bad config fails in a second, not after a multi-gigabyte load:

* :func:`plan` checks every name and every option against the registered options classes
  (all problems at once, each with its dotted path: ``weighting.options.alpha=-1: ...``),
  resolves the model string, and builds every component that needs no model (task,
  samplers, weighting scheme, objective);
* :func:`build_components` then loads the policy through its backend and wraps it in the
  engine.

The command line and ``bench/`` both assemble runs here, so a benchmark trains exactly
what ``dmpo train`` trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from dmpo_core.contracts import TRAJECTORY, Objective, Policy, Sampler, Task, WeightingScheme
from dmpo_core.errors import ConfigError, DmpoError
from dmpo_core.registry import Registry, get_registry
from dmpo_core.training.config import TrainConfig
from dmpo_core.training.loop import Components

#: Sampler options that come from ``rollout.*`` (``temperature`` is 0 for evaluation). A
#: sampler with an options class gets those its class has (ROAR takes no ``steps``); one
#: without an options class gets all four.
ROLLOUT_KEYS: tuple[str, ...] = ("gen_length", "block_length", "steps", "temperature")


@attrs.frozen(kw_only=True)
class Plan:
    """Everything of a run but the policy and the engine, checked before any model loads."""

    task: Task
    sampler: Sampler
    eval_sampler: Sampler
    weighting: WeightingScheme
    objective: Objective
    model: str
    """What the backend loads: the model string after the backend's resolver (a folder for ``builtin:NAME``)."""
    backend_options: dict[str, Any]
    """The backend factory's keyword options, validated."""
    engine_options: dict[str, Any]
    """The engine factory's keyword options, validated."""


def _problems(err: DmpoError, label: str = "") -> list[str]:
    """The one-line problems of ``err``; a lone error (an unknown name) is put under ``label``."""
    if isinstance(err, ConfigError):
        return list(err.problems)
    return [f"{label}: {err}" if label else str(err)]


def make_sampler(
    name: str,
    rollout: Mapping[str, Any],
    options: Mapping[str, Any],
    *,
    path: str,
    registry: Registry | None = None,
) -> Sampler:
    """Build a registered sampler from the ``rollout`` values of :data:`ROLLOUT_KEYS` and its
    own ``options`` (which win).

    A problem with a value taken from ``rollout`` is reported under ``rollout.KEY``, one with
    the user's options under ``path.KEY``.

    Raises:
        UnknownNameError: no such sampler.
        ConfigError: every invalid option, with its dotted path.
    """
    reg = registry or get_registry()
    entry = reg.get("sampler", name)
    declared = entry.option_fields() if entry.options is not None else None
    injected = {k: v for k, v in rollout.items() if k not in options and (declared is None or k in declared)}
    try:
        return reg.create("sampler", name, path, **injected, **options)
    except ConfigError as err:
        fixed = []
        for problem in err.problems:
            for key in injected:
                if problem.startswith(f"{path}.{key}="):
                    problem = f"rollout.{key}=" + problem[len(f"{path}.{key}="):]
            fixed.append(problem)
        raise ConfigError(fixed, source=err.source) from err


def rollout_values(cfg: TrainConfig, *, evaluation: bool) -> dict[str, Any]:
    """The :data:`ROLLOUT_KEYS` of the rollout sampler, or of the (greedy) evaluation sampler."""
    rc = cfg.rollout
    return {"gen_length": rc.gen_length, "block_length": rc.block_length, "steps": rc.steps,
            "temperature": 0.0 if evaluation else rc.temperature}


def eval_sampler_spec(cfg: TrainConfig) -> tuple[str, dict[str, Any], str]:
    """Name, own options and config path of the evaluation sampler: ``eval_sampler`` with
    ``eval_sampler_options``, or the rollout sampler with its options when neither is set."""
    if cfg.eval_sampler is None and cfg.eval_sampler_options is None:
        return cfg.rollout.sampler, dict(cfg.rollout.sampler_options), "rollout.sampler_options"
    return cfg.eval_sampler or cfg.rollout.sampler, dict(cfg.eval_sampler_options or {}), "eval_sampler_options"


def plan(cfg: TrainConfig, registry: Registry | None = None) -> Plan:
    """Check every name and option of ``cfg`` and build the model-free components.

    Raises:
        ConfigError: one error listing every problem found (names, options, cross-component checks).
    """
    reg = registry or get_registry()
    problems: list[str] = []
    built: dict[str, Any] = {}

    def attempt(key: str, label: str, make: Any) -> None:
        try:
            built[key] = make()
        except DmpoError as err:
            problems.extend(_problems(err, label))

    attempt("backend", "backend", lambda: check_backend(cfg.backend, cfg.model, cfg.backend_options, reg))
    if "backend" in built:
        built["model"], built["backend_options"] = built.pop("backend")
    attempt("engine_options", "engine",
            lambda: reg.validate("engine", cfg.engine, cfg.engine_options, path="engine_options"))
    attempt("task", "task", lambda: reg.create("task", cfg.task, "task_options", **cfg.task_options))
    attempt("sampler", "rollout.sampler",
            lambda: make_sampler(cfg.rollout.sampler, rollout_values(cfg, evaluation=False),
                                 cfg.rollout.sampler_options, path="rollout.sampler_options", registry=reg))
    name, options, path = eval_sampler_spec(cfg)
    if path != "rollout.sampler_options" or "sampler" in built:  # the same problems are not reported twice
        attempt("eval_sampler", "eval_sampler",
                lambda: make_sampler(name, rollout_values(cfg, evaluation=True), options, path=path, registry=reg))
    attempt("weighting", "weighting.scheme",
            lambda: reg.create("weighting", cfg.weighting.scheme, "weighting.options", **cfg.weighting.options))
    attempt("objective", "loss.objective",
            lambda: reg.create("objective", cfg.loss.objective, "loss.options", **cfg.loss.options))
    problems.extend(_contract_problems(cfg, built))
    if problems:
        raise ConfigError(problems, source="run configuration")
    return Plan(**built)


def _contract_problems(cfg: TrainConfig, built: Mapping[str, Any]) -> list[str]:
    """Components that do not satisfy their contract, and settings that contradict a component."""
    out = []
    for key, protocol, name in (
        ("task", Task, cfg.task), ("sampler", Sampler, cfg.rollout.sampler),
        ("eval_sampler", Sampler, cfg.eval_sampler or cfg.rollout.sampler),
        ("weighting", WeightingScheme, cfg.weighting.scheme), ("objective", Objective, cfg.loss.objective),
    ):
        if key in built and not isinstance(built[key], protocol):
            missing = sorted(m for m in _members(protocol) if not hasattr(built[key], m))
            out.append(f"{key} {name!r}: does not satisfy the {protocol.__name__} contract "
                       f"(missing {', '.join(missing) or 'a member'}); see dmpo_core.contracts")
    sampler = built.get("sampler")
    needs = {n for key, protocol in (("weighting", WeightingScheme), ("objective", Objective))
             if isinstance(built.get(key), protocol) for n in built[key].needs}
    if TRAJECTORY in needs and isinstance(sampler, Sampler) and not sampler.returns_logp:
        out.append(f"loss.objective={cfg.loss.objective!r} reads the sampler's trajectory; sampler "
                   f"{cfg.rollout.sampler!r} records none: use diffpo-eb, roar, or random-remask with "
                   "rollout.sampler_options.record_logp=true")
    if cfg.scoring.method == "exact" and isinstance(sampler, Sampler) and not sampler.returns_logp:
        out.append(f"scoring.method=exact: sampler {cfg.rollout.sampler!r} records no per-token log-probs; "
                   "use roar, or random-remask with rollout.sampler_options.record_logp=true, or scoring.method=elbo")
    return out


def _members(protocol: type) -> list[str]:
    """The members a protocol declares: its methods, properties and annotated attributes."""
    return sorted(n for n in {*vars(protocol), *protocol.__annotations__} if not n.startswith("_"))


def check_backend(backend: str, model: str, options: Mapping[str, Any], registry: Registry | None = None,
                  *, path: str = "backend_options") -> tuple[str, dict[str, Any]]:
    """The model the backend loads (after its resolver: ``builtin:NAME`` becomes the shipped
    folder) and the factory's validated options, or one ConfigError with every problem."""
    reg = registry or get_registry()
    entry = reg.get("backend", backend)
    problems: list[str] = []
    kwargs: dict[str, Any] = {}
    resolved = model
    try:
        kwargs = reg.validate("backend", backend, options, path=path)
    except DmpoError as err:
        problems.extend(_problems(err))
    try:
        resolved = entry.resolve_model(model) if entry.resolve_model is not None else model
    except DmpoError as err:
        problems.extend(_problems(err, "model"))
    if problems:
        raise ConfigError(problems, source=f"backend {backend!r}")
    return resolved, kwargs


def load_policy(backend: str, model: str, options: Mapping[str, Any], registry: Registry | None = None,
                *, path: str = "backend_options") -> Policy:
    """Load a policy through its registered backend, after :func:`check_backend`."""
    reg = registry or get_registry()
    resolved, kwargs = check_backend(backend, model, options, reg, path=path)
    return reg.get("backend", backend).factory(model=resolved, **kwargs)


def build_components(cfg: TrainConfig, registry: Registry | None = None, *, checked: Plan | None = None) -> Components:
    """:func:`plan` (unless ``checked`` is given), then load the policy and make the engine."""
    reg = registry or get_registry()
    p = checked or plan(cfg, reg)
    policy = reg.get("backend", cfg.backend).factory(model=p.model, **p.backend_options)
    o = cfg.optim
    engine = reg.get("engine", cfg.engine).factory(
        policy, lr=o.lr, beta1=o.beta1, beta2=o.beta2, weight_decay=o.weight_decay, grad_clip=o.grad_clip,
        warmup_steps=o.warmup_steps, schedule=o.schedule, total_steps=cfg.total_steps * cfg.loss.num_iterations,
        **p.engine_options,
    )
    return Components(policy=policy, task=p.task, sampler=p.sampler, eval_sampler=p.eval_sampler,
                      weighting=p.weighting, objective=p.objective, engine=engine)
