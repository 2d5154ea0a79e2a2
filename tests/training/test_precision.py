"""Per-stage mixed precision: each stage's forwards run under bf16 autocast exactly when its
``precision.*`` key says so, the weights and AdamW's state stay float32, and bad values are
reported by key before anything runs."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from dmpo_core.errors import ConfigError, InvalidArgumentError
from dmpo_core.samplers import LowConfidenceSampler
from dmpo_core.training import TrainConfig, train
from dmpo_core.training.precision import stage_precision
from tests.training.fakes import DigitTask, FakePolicy
from tests.training.test_loop import SMALL, make_components

STAGES = ("rollout", "logp", "loss", "evaluation")


class PhaseSampler:
    """Runs a sampler with the policy's ``phase`` set, so a forward knows whose it is."""

    def __init__(self, inner: LowConfidenceSampler, policy: FakePolicy, phase: str) -> None:
        self.inner, self.policy, self.phase = inner, policy, phase
        self.returns_logp = inner.returns_logp

    def __call__(self, *args, **kwargs):
        self.policy.phase = self.phase
        try:
            return self.inner(*args, **kwargs)
        finally:
            self.policy.phase = None


def probed_run(tmp_path, precision: dict[str, str]) -> tuple[dict[str, set[torch.dtype]], object]:
    """One training step (with its evaluations); the dtypes of the head's output per stage."""
    cfg = TrainConfig.from_dict({**SMALL, "total_steps": 1, "save_every": 0, "precision": precision})
    comp = make_components(cfg, task=DigitTask())
    policy = comp.policy
    policy.phase = None
    comp.sampler = PhaseSampler(comp.sampler, policy, "rollout")
    comp.eval_sampler = PhaseSampler(comp.eval_sampler, policy, "evaluation")
    seen: dict[str, set[torch.dtype]] = defaultdict(set)

    def hook(_module, _inputs, output):
        # outside the samplers: the loss forward has gradients on, the log-prob estimates do not
        stage = policy.phase or ("loss" if torch.is_grad_enabled() and policy.training else "logp")
        seen[stage].add(output.dtype)

    policy.model.head.register_forward_hook(hook)
    policy.ref.head.register_forward_hook(hook)
    train(cfg, comp, tmp_path)
    return seen, comp


@pytest.mark.parametrize("stage", STAGES)
def test_only_the_chosen_stage_runs_its_matmuls_in_bf16(tmp_path, stage):
    seen, _ = probed_run(tmp_path, {stage: "bfloat16"})
    assert set(seen) == set(STAGES)  # every stage ran a forward
    for name, dtypes in seen.items():
        expected = {torch.bfloat16} if name == stage else {torch.float32}
        assert dtypes == expected, f"{name}: head outputs {dtypes}, expected {expected}"


def test_autocast_keeps_float32_master_weights_and_optimizer_state(tmp_path):
    seen, comp = probed_run(tmp_path, dict.fromkeys(STAGES, "bfloat16"))
    assert all(d == {torch.bfloat16} for d in seen.values())
    params = list(comp.policy.trainable_parameters())
    assert all(p.dtype == torch.float32 for p in params)
    state = comp.engine.optimizer.state
    assert state, "the optimizer took no step"
    for p in params:
        assert state[p]["exp_avg"].dtype == torch.float32
        assert state[p]["exp_avg_sq"].dtype == torch.float32


def test_float32_stage_enters_no_autocast():
    with stage_precision("float32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == torch.float32
    with stage_precision("bfloat16", torch.device("cpu")):
        assert torch.nn.Linear(4, 4)(torch.ones(2, 4)).dtype == torch.bfloat16


def test_bad_precision_is_reported_by_key():
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({"precision": {"loss": "float16", "rollout": "fp8"}})
    text = str(err.value)
    assert "precision.loss='float16'" in text and "precision.rollout='fp8'" in text
    with pytest.raises(InvalidArgumentError):
        stage_precision("half", "cpu")
