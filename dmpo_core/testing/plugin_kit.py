"""Contract suites for every kind of plugin, each a plain function that raises ``AssertionError``
naming what broke.

A plugin's tests pass its module (the one with the ``register_<things>`` hooks) and the
registered name; the suites register it beside dmpo's own components in a private registry
(no entry point needed, so the tests run from a source checkout too), then check:

========== ===========================================================================
kind       suite
========== ===========================================================================
backend    :func:`check_backend`: the checks of :mod:`dmpo_core.testing.backend_contract`
sampler    :func:`check_sampler`: outputs, prefill kept, NFE, seeded determinism; 2 steps
weighting  :func:`check_weighting_law`: the laws of :mod:`dmpo_core.testing.laws`; 2 steps
objective  :func:`check_objective`: the Objective contract; 2 steps move the weights
engine     :func:`check_engine`: the Engine contract, state round trip; 2 steps
task       :func:`check_task`: items, prompts, rewards and metric in range; 2 steps
reward     :func:`check_reward`: one float or None per completion, pure
command    :func:`check_command`: a click command whose ``--help`` works
========== ===========================================================================

"2 steps" trains the component for two steps with the toy backend and task of
:mod:`dmpo_core.testing.toys`, through the same run assembly as ``dmpo train``.
With the pytest plugin (:mod:`dmpo_core.testing.pytest_plugin`, installed with dmpo) these
are the fixture ``dmpo_kit``, and the parameters ``weighting_law`` and ``backend_check``.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dmpo_core.contracts import Engine, Objective, Reward, Sampler, Task, WeightingScheme
from dmpo_core.registry import Entry, Registry, build_registry
from dmpo_core.testing.toys import TOY_PLUGIN, CopyDigitsTask, ToyPolicy

PROTOCOLS: dict[str, type] = {"sampler": Sampler, "weighting": WeightingScheme, "objective": Objective,
                              "engine": Engine, "task": Task, "reward": Reward}
"""The contract of each kind whose component is built without a model."""

TOY_RUN: dict[str, Any] = {
    "backend": "toy", "model": "", "task": "toy-copy", "total_steps": 2, "eval_size": 4, "eval_batch_size": 4,
    "save_every": 0, "keep_checkpoints": 1,
    "rollout": {"prompts_per_step": 2, "group_size": 4, "gen_length": 4, "block_length": 4, "steps": 2,
                "temperature": 1.0},
    "scoring": {"replicates": 2}, "weighting": {"scheme": "dmpo-none", "options": {"alpha": 0.0}},
    "loss": {"objective": "wdce", "options": {"replicates": 2}, "num_iterations": 1},
    "optim": {"lr": 0.05, "grad_clip": 1.0, "weight_decay": 0.0},
}
"""The two-step run that the suites substitute a component into (toy backend and task). The
weights have no baseline, so every completion gets a positive advantage (``1/G`` when the
toy's rewards tie): each step has a gradient, and a component that breaks it is caught."""


def registry_with(plugin: object, name: str = "plugin-under-test") -> Registry:
    """dmpo's own components, the toy backend and task, and ``plugin``; AssertionError with the
    reason when ``plugin`` fails to load (a misspelt hook, a taken name, an import error)."""
    registry = build_registry(plugins=[("toy", TOY_PLUGIN), (name, plugin)], entry_points=False, defaults=True)
    if name in registry.report.failed:
        raise AssertionError(f"the plugin did not load: {registry.report.failed[name]}")
    return registry


def entry(plugin: object, kind: str, name: str) -> Entry:
    """The entry ``plugin`` registered as ``name`` of ``kind`` (AssertionError when it did not)."""
    registry = registry_with(plugin)
    if name not in registry.names(kind):
        raise AssertionError(f"the plugin registers no {kind} {name!r}; its {kind}s: "
                             f"{[e.name for e in registry.entries(kind) if e.plugin == 'plugin-under-test']}")
    return registry.get(kind, name)


def check_registered(plugin: object, kind: str, name: str) -> Entry:
    """The registration: the name, a help line, an attrs options class (or none) whose every
    field has a docstring (``dmpo plugins NAME`` shows them)."""
    found = entry(plugin, kind, name)
    if not found.help:
        raise AssertionError(f"{kind} {name!r}: pass help='one line' to register (shown by `dmpo plugins`)")
    from dmpo_core.options import describe

    for row in describe(found.options, fixed=found.fixed) if found.options is not None else []:
        if not row.help:
            raise AssertionError(f"{kind} {name!r}: option {row.name!r} has no docstring; write one under the field")
    return found


def _protocol(kind: str, name: str, component: Any) -> None:
    protocol = PROTOCOLS[kind]
    if not isinstance(component, protocol):
        members = {*vars(protocol), *getattr(protocol, "__annotations__", {})}
        missing = sorted(m for m in members if not m.startswith("_") and not hasattr(component, m))
        raise AssertionError(f"{kind} {name!r} does not satisfy dmpo_core.contracts.{protocol.__name__}"
                             f" (missing: {', '.join(missing) or 'a member'})")


def train_two_steps(plugin: object, overrides: Mapping[str, Any], out_dir: str | Path | None = None) -> dict[str, Any]:
    """Train :data:`TOY_RUN` with ``overrides`` (nested keys) for two steps; return the last step's
    record, with ``"moved"``: whether any trainable weight changed."""
    from dmpo_core.training import TrainConfig, train
    from dmpo_core.training.build import build_components

    data = _merge(TOY_RUN, overrides)
    cfg = TrainConfig.from_dict(data, source="plugin contract run")
    comp = build_components(cfg, registry_with(plugin))
    before = [p.detach().clone() for p in comp.policy.trainable_parameters()]
    with tempfile.TemporaryDirectory() as tmp:
        last = train(cfg, comp, Path(out_dir or tmp))
    if last.get("step") != cfg.total_steps:
        raise AssertionError(f"the run stopped at step {last.get('step')} of {cfg.total_steps}: {last}")
    loss = last.get("loss")
    if loss is None or not math.isfinite(float(loss)):
        raise AssertionError(f"the loss of the last step is {loss!r}, not a finite number")
    moved = any(not torch.equal(a, b) for a, b in zip(before, comp.policy.trainable_parameters()))
    return {**last, "moved": moved, "engine": comp.engine}


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Nested ``override`` over ``base``; an ``*options`` mapping is replaced whole (its keys
    belong to the component named beside it)."""
    out = dict(base)
    for key, value in override.items():
        nested = isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not key.endswith("options")
        out[key] = _merge(out[key], value) if nested else value
    return out


# ---------------------------------------------------------------------------- per kind


def check_backend(plugin: object, name: str, checkpoint: str | Path, check: str | None = None,
                  **options: Any) -> list[str]:
    """The backend contract (one ``check`` of :data:`~dmpo_core.testing.backend_contract.CHECK_NAMES`,
    or all) on fresh policies the registered factory loads from ``checkpoint``."""
    from dmpo_core.testing.backend_contract import run_backend_contract

    found = check_registered(plugin, "backend", name)

    def load(folder: str) -> Any:
        return found.factory(model=folder, **options)

    return run_backend_contract(load, checkpoint, only=(check,) if check else None)


def check_sampler(plugin: object, name: str, **options: Any) -> None:
    """The Sampler contract on the toy model: completions ``[N, L]`` of vocabulary ids with no
    mask left, the prefilled tokens kept, a positive NFE, the same output for the same seed,
    per-token log-probs ``<= 0`` when ``returns_logp``; then two training steps with it.
    Where :mod:`dmpo_core.testing.sampler_contract` exists, its checks run first (NFE
    accounting against the forwards actually run, block order, batch rows as unbatched ...)."""
    from dmpo_core.training.build import make_sampler

    found = check_registered(plugin, "sampler", name)
    try:  # the full sampler contract suite, where this dmpo has it
        from dmpo_core.testing.sampler_contract import run_sampler_contract
    except ImportError:
        run_sampler_contract = None
    if run_sampler_contract is not None:
        run_sampler_contract(found.factory, options=dict(options))
    rollout = {"gen_length": 8, "block_length": 4, "steps": 4, "temperature": 1.0}
    sampler = make_sampler(name, rollout, options, path="sampler_options", registry=registry_with(plugin))
    _protocol("sampler", name, sampler)
    policy = ToyPolicy(seed=0)
    prompts = torch.tensor([[policy.pad_id, 49, 50, 61], [51, 52, 53, 61]])  # [N=2, P=4], the first left padded
    mask = prompts != policy.pad_id  # [N, P]
    prefill = torch.full((2, 8), policy.mask_id)  # [N, L]
    prefill[:, 0] = 55  # a given token at position 0 of each completion

    def run(seed: int) -> Any:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return sampler(policy.logits, prompts, mask, mask_id=policy.mask_id, generator=gen, prefill=prefill)

    out = run(0)
    ids = out.completion_ids
    if tuple(ids.shape) != (2, 8) or ids.dtype != torch.long:
        raise AssertionError(f"completion_ids must be long [N=2, L=8], got {ids.dtype} {tuple(ids.shape)}")
    if bool((ids == policy.mask_id).any()) or bool(((ids < 0) | (ids >= 259)).any()):
        raise AssertionError(f"completions hold the mask id or ids outside the vocabulary: {ids.tolist()}")
    if not torch.equal(ids[:, 0], prefill[:, 0]):
        raise AssertionError(f"a prefilled token was changed: {ids[:, 0].tolist()} != {prefill[:, 0].tolist()}")
    if not isinstance(out.nfe, int) or out.nfe < 1:
        raise AssertionError(f"nfe must be the number of model forwards (an int >= 1), got {out.nfe!r}")
    if not torch.equal(run(0).completion_ids, ids):
        raise AssertionError("two calls with generators of the same seed gave different completions")
    if sampler.returns_logp:
        lp = out.token_logp
        if lp is None or tuple(lp.shape) != (2, 8) or not bool(torch.isfinite(lp[:, 1:]).all()) or bool((lp > 0).any()):
            raise AssertionError(f"returns_logp is True: token_logp must be finite log-probs <= 0 [N, L], got {lp}")
    train_two_steps(plugin, {"rollout": {"sampler": name, "sampler_options": dict(options)}})


def check_weighting_law(law: str, plugin: object, name: str) -> None:
    """One law of :data:`dmpo_core.testing.laws.WEIGHTING_LAWS` for the registered scheme (a law
    that does not apply raises :class:`~dmpo_core.testing.laws.LawNotApplicable`, a skip)."""
    from dmpo_core.testing import laws

    laws.check(law, check_registered(plugin, "weighting", name))


def check_weighting(plugin: object, name: str, **options: Any) -> None:
    """The WeightingScheme contract, then two training steps with the scheme."""
    check_registered(plugin, "weighting", name)
    _protocol("weighting", name, registry_with(plugin).create("weighting", name, **options))
    train_two_steps(plugin, {"weighting": {"scheme": name, "options": dict(options)}})


def check_objective(plugin: object, name: str, **options: Any) -> None:
    """The Objective contract, then two training steps that must move the weights."""
    check_registered(plugin, "objective", name)
    _protocol("objective", name, registry_with(plugin).create("objective", name, **options))
    last = train_two_steps(plugin, {"loss": {"objective": name, "options": dict(options)}})
    if not last["moved"]:
        raise AssertionError(f"two steps of objective {name!r} left every weight unchanged (no gradient?)")


def check_engine(plugin: object, name: str, **options: Any) -> None:
    """Two training steps through the engine move the weights; the engine satisfies the Engine
    contract and its ``load_state_dict(state_dict())`` round trip works."""
    check_registered(plugin, "engine", name)
    last = train_two_steps(plugin, {"engine": name, "engine_options": dict(options)})
    engine = last["engine"]
    _protocol("engine", name, engine)
    if not last["moved"]:
        raise AssertionError(f"two steps through engine {name!r} left every weight unchanged")
    engine.load_state_dict(engine.state_dict())


def check_task(plugin: object, name: str, **options: Any) -> None:
    """The Task contract: training and held-out items (disjoint), a prompt string per item,
    reward components giving one float or None per completion, ``score`` and ``correctness``
    in [0, 1], a metric of floats; then two training steps on the task (toy byte-level model)."""
    check_registered(plugin, "task", name)
    task = registry_with(plugin).create("task", name, **options)
    _protocol("task", name, task)
    train_items, test_items = list(task.train_items()), list(task.test_items())
    if not train_items or not test_items:
        raise AssertionError(f"task {name!r} has {len(train_items)} training and {len(test_items)} held-out items")
    seen = {json.dumps(it, sort_keys=True, default=str) for it in train_items}
    both = [it for it in test_items if json.dumps(it, sort_keys=True, default=str) in seen]
    if both:
        raise AssertionError(f"task {name!r}: {len(both)} held-out item(s) are also training items, e.g. {both[0]}")
    items = test_items[:3]
    tokenizer = ToyPolicy().tokenizer
    prompts = [task.prompt(it, tokenizer) for it in items]
    if not all(isinstance(p, str) and p for p in prompts):
        raise AssertionError(f"task {name!r}: prompt() must return a non-empty string, got {prompts!r}")
    completions = ["", "42", "an answer that is probably wrong"][: len(items)]
    for component in task.reward_components():
        values = component.fn(prompts, completions, items)
        _floats_or_none(f"task {name!r} reward component {component.name!r}", values, len(items))
    for c, it in zip(completions, items):
        for what in ("score", "correctness"):
            value = getattr(task, what)(c, it)
            if not 0.0 <= float(value) <= 1.0:
                raise AssertionError(f"task {name!r}: {what}({c!r}, item) = {value!r}, not in [0, 1]")
    metric = task.metric(completions, items)
    if not metric or not all(isinstance(v, (int, float)) for v in metric.values()):
        raise AssertionError(f"task {name!r}: metric() must return a non-empty name -> float mapping, got {metric!r}")
    train_two_steps(plugin, {"task": name, "task_options": dict(options)})


def check_reward(plugin: object, name: str, examples: list[tuple[str, str, Mapping[str, Any]]] | None = None,
                 **options: Any) -> None:
    """The Reward contract on ``examples`` (``(prompt, completion, item)``; default: three toy
    ones): one float or None per completion, the same values on a second call, the inputs untouched."""
    check_registered(plugin, "reward", name)
    reward = registry_with(plugin).create("reward", name, **options)
    _protocol("reward", name, reward)
    task = CopyDigitsTask()
    rows = examples or [(task.prompt(it, None), c, it) for it, c in zip(task.test_items(), ["1234", "", "x" * 50])]
    prompts, completions, items = ([r[i] for r in rows] for i in range(3))
    frozen = json.dumps([prompts, completions, items], sort_keys=True, default=str)
    first = reward(prompts, completions, items)
    _floats_or_none(f"reward {name!r}", first, len(rows))
    if reward(prompts, completions, items) != first:
        raise AssertionError(f"reward {name!r} gave other values on the same inputs")
    if json.dumps([prompts, completions, items], sort_keys=True, default=str) != frozen:
        raise AssertionError(f"reward {name!r} changed its inputs")


def _floats_or_none(what: str, values: Any, n: int) -> None:
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise AssertionError(f"{what} must return a list of {n} values, got {values!r}")
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
            raise AssertionError(f"{what} returned {v!r}; use a finite float, or None where it cannot score")


def check_command(plugin: object, name: str) -> None:
    """The factory gives a ``click.Command`` whose ``--help`` exits 0 and names the command."""
    import click
    from click.testing import CliRunner

    command = check_registered(plugin, "command", name).factory()
    if not isinstance(command, click.Command):
        raise AssertionError(f"command {name!r}: the factory must return a click.Command, got {type(command).__name__}")
    result = CliRunner().invoke(command, ["--help"], prog_name=f"dmpo {name}")
    if result.exit_code != 0 or f"dmpo {name}" not in result.output:
        raise AssertionError(f"`dmpo {name} --help` exited {result.exit_code}: {result.output[-500:]}")
