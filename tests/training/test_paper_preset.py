"""The ``paper`` preset: the official DMPO code's effective update (loss 0.25x ours, clip 0.2)
equals ours with the clip at 0.8, and the preset layers over a model's recipe."""

from __future__ import annotations

import pytest
import torch

from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.errors import InvalidArgumentError, UnknownNameError
from dmpo_core.objective.wdce import WdceObjective
from dmpo_core.training.presets import PAPER_GRAD_CLIP, PAPER_LOSS_SCALE, preset
from dmpo.backends.engines import LocalEngine
from dmpo.cli.commands_train import resolve_config
from tests.training.fakes import FakePolicy


def _batch(step: int) -> tuple[RolloutBatch, WeightOutput]:
    g = torch.Generator().manual_seed(100 + step)
    n, p, length = 8, 3, 5
    batch = RolloutBatch(prompt_ids=torch.randint(0, 10, (n, p), generator=g), prompt_mask=torch.ones(n, p, dtype=torch.bool),
                         completion_ids=torch.randint(0, 10, (n, length), generator=g),
                         eligible=torch.ones(n, length, dtype=torch.bool), rewards=torch.rand(n, generator=g), group_size=4)
    adv = torch.randn(n, generator=g) * (0.05 if step % 2 else 3.0)  # small and large gradients: the clip bites on some
    return batch, WeightOutput(advantages=adv, valid=torch.ones(n, dtype=torch.bool))


def _train(loss_scale: float, grad_clip: float, steps: int = 6):
    """Weights after ``steps`` AdamW steps, the gradient norms, and the clipped gradients AdamW received."""
    policy = FakePolicy(seed=0)
    engine = LocalEngine(policy, lr=1e-2, grad_clip=grad_clip, weight_decay=0.1)
    applied: list[list[torch.Tensor]] = []
    engine.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: applied.append([p.grad.clone() for p in engine.params]))
    objective = WdceObjective(replicates=2, loss_scale=loss_scale)
    norms = []
    for step in range(steps):
        batch, weights = _batch(step)
        loss, _ = objective(policy, batch, weights, num_groups=2, generator=torch.Generator().manual_seed(step))
        engine.backward(loss)
        norms.append(engine.step())
    return [p.detach().clone() for p in policy.trainable_parameters()], norms, applied


def test_the_paper_update_equals_ours_with_the_clip_at_four_times_its_number():
    paper, paper_norms, paper_grads = _train(PAPER_LOSS_SCALE, PAPER_GRAD_CLIP)
    ours_08, ours_norms, ours_grads = _train(1.0, PAPER_GRAD_CLIP / PAPER_LOSS_SCALE)
    ours_02, _, _ = _train(1.0, PAPER_GRAD_CLIP)
    # its gradient is 0.25x ours at every step (before clipping) ...
    assert paper_norms == pytest.approx([PAPER_LOSS_SCALE * n for n in ours_norms], rel=1e-5)
    # ... the clip binds on some steps and not on others (so the test can tell the clips apart) ...
    assert min(ours_norms) < PAPER_GRAD_CLIP < 0.8 < max(ours_norms)
    # ... after clipping AdamW receives exactly 0.25x what ours receives with the clip at 0.8 (step 0, where the
    # clip binds: equal weights; later steps drift apart by AdamW's eps, 1e-8, acting on a 4x smaller gradient)
    for a, b in zip(paper_grads[0], ours_grads[0]):
        torch.testing.assert_close(a, PAPER_LOSS_SCALE * b, rtol=1e-6, atol=1e-9)
    for step_paper, step_ours in zip(paper_grads, ours_grads):
        for a, b in zip(step_paper, step_ours):
            torch.testing.assert_close(a, PAPER_LOSS_SCALE * b, rtol=1e-2, atol=1e-5)
    # ... so AdamW, blind to the scale but for its eps (1e-8), makes ours-at-0.8's update, not ours-at-0.2's
    for a, b in zip(paper, ours_08):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
    assert any(not torch.allclose(a, c, rtol=1e-3, atol=1e-3) for a, c in zip(paper, ours_02))


def test_the_preset_layers_over_the_recipe():
    cfg = resolve_config(None, None, None, None, (), "paper")
    assert cfg.loss.options["loss_scale"] == 0.25 and cfg.optim.grad_clip == 0.2
    assert cfg.weighting.scheme == "dmpo" and cfg.rollout.group_size == 16 and cfg.loss.num_iterations == 8
    assert cfg.ref_sync_every == 64 and cfg.optim.weight_decay == 0.1 and cfg.rollout.temperature == 0.2
    recipe = resolve_config(None, None, None, None, ())
    assert cfg.optim.lr == recipe.optim.lr and cfg.rollout.gen_length == recipe.rollout.gen_length
    assert "loss_scale" not in recipe.loss.options  # our default is untouched
    later = resolve_config(None, None, None, None, ("optim.grad_clip=1.0",), "paper")
    assert later.optim.grad_clip == 1.0  # --set wins over the preset
    with pytest.raises(UnknownNameError):
        preset("papers")
    with pytest.raises(InvalidArgumentError):
        WdceObjective(loss_scale=0)
