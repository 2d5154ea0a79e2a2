"""The loop, rollout and evaluation use only what the contracts declare.

Every built-in component is wrapped in a proxy that exposes the members of its protocol in
``dmpo_core.contracts`` and nothing else (an undeclared member raises AttributeError), then
the demo recipe and each objective train 2 steps on the built-in model. The proxied run
must also reach exactly the weights of the plain run.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dmpo_core.contracts import Engine, Objective, Policy, Sampler, Task, WeightingScheme
from dmpo_core.training import TrainConfig, train
from dmpo_core.training.build import _members, build_components
from dmpo_core.training.loop import Components
from dmpo.backends import builtin
from dmpo.cli.configfile import layer, merge


def declared_only(obj: Any, protocol: type) -> Any:
    """``obj`` seen through ``protocol``: its declared members pass, every other one fails."""
    allowed = set(_members(protocol))

    class Proxy:
        __slots__ = ("_obj",)

        def __init__(self, wrapped: Any) -> None:
            object.__setattr__(self, "_obj", wrapped)

        def __getattr__(self, name: str) -> Any:
            if name in allowed:
                return getattr(self._obj, name)
            raise AttributeError(f"{name!r} is not declared by the {protocol.__name__} contract")

        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError(f"setting {name!r}: the {protocol.__name__} contract declares no such write")

        if "__call__" in vars(protocol):
            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                return self._obj(*args, **kwargs)

    Proxy.__name__ = f"Only{protocol.__name__}"
    return Proxy(obj)


def proxied(comp: Components) -> Components:
    return Components(
        policy=declared_only(comp.policy, Policy), task=declared_only(comp.task, Task),
        sampler=declared_only(comp.sampler, Sampler), eval_sampler=declared_only(comp.eval_sampler, Sampler),
        weighting=declared_only(comp.weighting, WeightingScheme), objective=declared_only(comp.objective, Objective),
        engine=declared_only(comp.engine, Engine),
    )


def test_the_proxy_refuses_undeclared_members():
    comp = build_components(recipe({}))
    scheme = declared_only(comp.weighting, WeightingScheme)
    assert scheme.needs == comp.weighting.needs
    with pytest.raises(AttributeError, match="'alpha' is not declared by the WeightingScheme contract"):
        _ = scheme.alpha
    assert isinstance(scheme, WeightingScheme)


def recipe(override: dict) -> TrainConfig:
    shipped = builtin.recommended_config("builtin:sudoku-tiny")
    short = {"total_steps": 2, "eval_size": 8, "eval_batch_size": 8, "save_every": 1, "max_minutes": None,
             "rollout": {"prompts_per_step": 2, "group_size": 4}}
    return TrainConfig.from_dict(layer(merge(shipped, short), override))


@pytest.mark.parametrize("override", [
    {},  # the demo recipe: dmpo-mean + wdce, compact Sudoku with fixed givens (prefill)
    {"loss": {"objective": "ddo", "options": {"replicates": 2}}, "weighting": {"scheme": "dmpo"}},
    {"weighting": {"scheme": "dmpo-unbiased"}, "loss": {"num_iterations": 2}},
    {"rollout": {"sampler": "roar"}, "scoring": {"method": "exact"}, "ref_sync_every": 1,
     "eval_sampler": "low-confidence"},
    {"weighting": {"scheme": "grpo"}, "loss": {"objective": "diffu-grpo", "num_iterations": 2}},
    {"weighting": {"scheme": "grpo"}, "loss": {"objective": "diffpo", "num_iterations": 2},
     "rollout": {"sampler": "diffpo-eb"}, "eval_sampler_options": None},
], ids=["demo", "ddo", "unbiased", "roar-exact", "diffu-grpo", "diffpo"])
def test_two_steps_run_on_declared_members_only_and_match_the_plain_run(tmp_path, override):
    cfg = recipe(override)
    plain = build_components(cfg)
    train(cfg, plain, tmp_path / "plain")
    seen = build_components(cfg)
    last = train(cfg, proxied(seen), tmp_path / "proxied")
    assert last["step"] == 2
    for a, b in zip(plain.policy.trainable_parameters(), seen.policy.trainable_parameters()):
        assert torch.equal(a, b)
