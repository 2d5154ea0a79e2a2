"""A new objective and a new engine, written as third-party plugins against the contracts alone.

Each skeleton imports nothing of dmpo but ``dmpo_core.contracts``, ``dmpo_core.data`` and the
hook marker, registers with an options class, and trains through the same run assembly as
``dmpo train`` (:mod:`dmpo_core.training.build`) on the fake backend and task.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import attrs
import pytest
import torch

from dmpo_core import builtin as core_plugin
from dmpo_core import hookimpl, samplers
from dmpo_core.contracts import Engine, Objective, Policy
from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.errors import ConfigError
from dmpo_core.registry import build_registry
from dmpo_core.training import TrainConfig, train
from dmpo_core.training.build import build_components
from tests.training.fakes import DigitTask, FakePolicy


# ---- the objective skeleton: a ratio to the old policy under a mask fixed per gradient step ----
@attrs.frozen(kw_only=True)
class RatioLossOptions:
    """Options of ``skeleton-ratio``."""

    clip: float = attrs.field(default=0.2, validator=attrs.validators.gt(0))
    """PPO-style clip of the per-token ratio."""


@attrs.frozen(kw_only=True)
class RatioLoss(RatioLossOptions):
    """``-mean(clip(p_theta / p_old) * advantage)`` over fully masked completions (a GRPO shape)."""

    @property
    def needs(self) -> frozenset[str]:
        return frozenset()  # it prepares its own old log-probs

    def prepare(self, policy: Policy, batch: RolloutBatch, *, num_iterations: int,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
        # old per-token log-probs [B*G, I, L], one fully masked forward per gradient step
        logp = self._token_logp(policy, batch)  # [B*G, L]
        return {"old_logp": logp[:, None, :].expand(-1, num_iterations, -1).contiguous()}

    @staticmethod
    def _token_logp(policy: Policy, batch: RolloutBatch) -> torch.Tensor:
        masked = torch.full_like(batch.completion_ids, policy.mask_id)  # [N, L]
        ids = torch.cat([batch.prompt_ids, masked], dim=1)  # [N, P+L]
        logits = policy.logits(ids, batch.attention_mask, last=batch.completion_ids.shape[1])  # [N, L, V]
        return torch.log_softmax(logits.float(), -1).gather(-1, batch.completion_ids[..., None])[..., 0]  # [N, L]

    def __call__(self, policy: Policy, batch: RolloutBatch, weights: WeightOutput, *, num_groups: int,
                 iteration: int = 0, weighting: Any = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        old = batch.extras["old_logp"][:, iteration]  # [N, L]
        ratio = torch.exp(self._token_logp(policy, batch) - old)  # [N, L]
        clipped = ratio.clamp(1 - self.clip, 1 + self.clip)  # [N, L]
        adv = weights.advantages[:, None]  # [N, 1]
        loss = -torch.minimum(ratio * adv, clipped * adv).mean(dim=1).sum() / (num_groups * batch.group_size)
        return loss, {"loss": float(loss.detach()), "skeleton/ratio_mean": float(ratio.detach().mean())}


# ---- the engine skeleton: plain SGD, one process ----------------------------------------------
@attrs.frozen(kw_only=True)
class SgdOptions:
    """``engine_options`` of ``skeleton-sgd``."""

    momentum: float = attrs.field(default=0.0, validator=attrs.validators.and_(attrs.validators.ge(0),
                                                                                attrs.validators.lt(1)))
    """SGD momentum in [0, 1)."""


class SgdEngine:
    """Satisfies :class:`dmpo_core.contracts.Engine` with torch.optim.SGD."""

    def __init__(self, policy: Policy, *, lr: float, grad_clip: float, momentum: float = 0.0,
                 **_optim: Any) -> None:
        self.params = list(policy.trainable_parameters())
        self.opt = torch.optim.SGD(self.params, lr=lr, momentum=momentum)
        self.grad_clip = grad_clip
        self._device = policy.device
        self.steps_taken = 0

    device = property(lambda self: self._device)
    lr = property(lambda self: float(self.opt.param_groups[0]["lr"]))
    rank = property(lambda self: 0)
    world_size = property(lambda self: 1)
    is_main = property(lambda self: True)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> float:
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip or math.inf))
        if math.isfinite(norm):
            self.opt.step()
            self.steps_taken += 1
        self.zero_grad()
        return norm

    def zero_grad(self) -> None:
        self.opt.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {"opt": self.opt.state_dict(), "steps_taken": self.steps_taken}

    def load_state_dict(self, state: Any) -> None:
        self.opt.load_state_dict(state["opt"])
        self.steps_taken = state["steps_taken"]


def plugin(name: str, **hooks: Any) -> ModuleType:
    module = ModuleType(name)
    for hook, fn in hooks.items():
        setattr(module, hook, hookimpl(fn))
    return module


SKELETONS = plugin(
    "skeletons",
    register_objectives=lambda register: register("skeleton-ratio", RatioLoss, options=RatioLoss),
    register_engines=lambda register: register("skeleton-sgd", SgdEngine, options=SgdOptions),
    register_backends=lambda register: register("fake", lambda model, seed=0: FakePolicy(seed=seed)),
    register_tasks=lambda register: register("digits", DigitTask),
)


def registry():
    return build_registry(plugins=[("core", core_plugin), ("samplers", samplers), ("skeletons", SKELETONS)],
                          entry_points=False)


BASE = {
    "backend": "fake", "model": "none", "task": "digits", "total_steps": 2, "eval_size": 4, "eval_batch_size": 4,
    "rollout": {"prompts_per_step": 2, "group_size": 4, "gen_length": 4, "block_length": 4, "steps": 2,
                "temperature": 1.0},
    "scoring": {"replicates": 2}, "weighting": {"scheme": "dmpo-mean", "options": {"alpha": 0.0}},
    "loss": {"objective": "skeleton-ratio", "options": {"clip": 0.3}, "num_iterations": 2},
    "engine": "skeleton-sgd", "engine_options": {"momentum": 0.5}, "optim": {"lr": 0.1, "grad_clip": 1.0},
}


def test_the_skeletons_satisfy_the_contracts():
    comp = build_components(TrainConfig.from_dict(BASE), registry())
    assert isinstance(comp.objective, Objective) and isinstance(comp.engine, Engine)
    assert comp.objective.clip == 0.3 and comp.engine.opt.param_groups[0]["momentum"] == 0.5


def test_a_new_objective_and_engine_train_through_the_run_assembly(tmp_path):
    cfg = TrainConfig.from_dict(BASE)
    comp = build_components(cfg, registry())
    before = [p.detach().clone() for p in comp.policy.trainable_parameters()]
    last = train(cfg, comp, tmp_path)
    assert last["step"] == 2 and "skeleton/ratio_mean" in last
    assert comp.engine.steps_taken == 4  # 2 steps x num_iterations 2
    assert any(not torch.equal(a, b) for a, b in zip(before, comp.policy.trainable_parameters()))


def test_the_skeletons_options_are_checked_with_their_paths():
    bad = {**BASE, "engine_options": {"momentun": 0.5}, "loss": {**BASE["loss"], "options": {"clip": -1}}}
    with pytest.raises(ConfigError) as err:
        build_components(TrainConfig.from_dict(bad), registry())
    text = str(err.value)
    assert "engine_options.momentun: unknown key" in text
    assert "loss.options.clip=-1" in text
