"""d1's diffu-GRPO: advantages, the loss against a loop-based reference of its formula, and a
unit test per term (the clip, the KL, the shared prompt mask) that fails when it is removed."""

from __future__ import annotations

import math

import pytest
import torch

from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.errors import ConfigError
from dmpo_core.objective.grpo import (
    DiffuGrpoObjective,
    GroupNormalisedWeighting,
    diffu_grpo_loss,
    group_normalised_advantages,
    mean_field_token_logp,
)
from dmpo_core.testing import laws
from tests.training.fakes import FakePolicy

MASK = 12


def test_group_normalised_advantages_by_hand():
    # group [1, 0, 0, 1]: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.57735 -> +-0.5 / (0.57735 + 1e-4)
    # group [1, 0, nan, nan]: mean 0.5, std sqrt(0.5) -> +-0.5 / (0.70711 + 1e-4), 0 on the missing rows
    adv, valid = group_normalised_advantages(torch.tensor([1.0, 0, 0, 1, 1, 0, math.nan, math.nan]), 4,
                                             eps=1e-4, scale="group")
    a, b = 0.5 / (math.sqrt(1 / 3) + 1e-4), 0.5 / (math.sqrt(0.5) + 1e-4)
    assert adv.tolist() == pytest.approx([a, -a, -a, a, b, -b, 0, 0], rel=1e-6)
    assert valid.tolist() == [True] * 6 + [False] * 2
    # one valid row: no signal; equal rewards: zero; scale none only centres
    adv, _ = group_normalised_advantages(torch.tensor([1.0, math.nan, 3.0, 3.0]), 2, eps=1e-4, scale="group")
    assert adv.tolist() == [0, 0, 0, 0]
    adv, _ = group_normalised_advantages(torch.tensor([2.0, 0.0]), 2, eps=1e-4, scale="none")
    assert adv.tolist() == [1.0, -1.0]


def test_the_grpo_scheme_passes_the_universal_laws():
    for law in laws.UNIVERSAL_WEIGHTING_LAWS:
        try:
            laws.check(law, GroupNormalisedWeighting)
        except laws.LawNotApplicable as why:  # e.g. laws about importance weights: this scheme has none
            assert "weight" in str(why), (law, str(why))
    out = GroupNormalisedWeighting()(torch.tensor([1.0, 0.0]), None, 2)
    assert out.weights is None and GroupNormalisedWeighting().needs == frozenset()


def reference_loss(logp, old, ref, adv, elig, num_rows, eps, beta) -> float:
    """The module docstring's formula, one token at a time in plain Python floats."""
    total = 0.0
    for j in range(len(adv)):
        terms = []
        for l_ in range(len(logp[j])):
            if not elig[j][l_]:
                continue
            rho = math.exp(logp[j][l_] - old[j][l_])
            clipped = min(max(rho, 1 - eps), 1 + eps)
            term = -min(rho * adv[j], clipped * adv[j])
            if beta:
                d = ref[j][l_] - logp[j][l_]
                term += beta * (math.exp(d) - d - 1)
            terms.append(term)
        total += sum(terms) / max(len(terms), 1)
    return total / num_rows


@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_loss_equals_the_loop_reference(beta):
    g = torch.Generator().manual_seed(3)
    logp = -torch.rand(6, 5, generator=g, dtype=torch.float64) * 3
    old = logp + (torch.rand(6, 5, generator=g, dtype=torch.float64) - 0.5)  # ratios in about [0.6, 1.65]
    ref = logp + (torch.rand(6, 5, generator=g, dtype=torch.float64) - 0.5)
    adv = torch.randn(6, generator=g, dtype=torch.float64)
    elig = torch.rand(6, 5, generator=g) > 0.3
    loss, stats = diffu_grpo_loss(logp, old, ref, adv, elig, 8, epsilon=0.2, beta=beta)
    expected = reference_loss(logp.tolist(), old.tolist(), ref.tolist(), adv.tolist(), elig.tolist(), 8, 0.2, beta)
    assert float(loss) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert 0 < stats["clip_fraction"] < 1


def test_the_clip_stops_the_gradient_of_tokens_past_the_range():
    # ratio e^1 = 2.72 > 1.2 with advantage +1: the clipped branch is the minimum, no gradient flows;
    # ratio e^-1 = 0.37 < 0.8 with advantage +1: the unclipped branch is the minimum, gradient 0.37.
    logp = torch.tensor([[1.0, -1.0]], requires_grad=True)
    loss, _ = diffu_grpo_loss(logp, torch.zeros(1, 2), None, torch.tensor([1.0]), torch.ones(1, 2, dtype=torch.bool),
                              1, epsilon=0.2, beta=0.0)
    loss.backward()
    assert logp.grad[0, 0] == 0.0  # without the clip this would be -e / 2
    assert float(logp.grad[0, 1]) == pytest.approx(-math.exp(-1) / 2)
    assert float(loss.detach()) == pytest.approx(-(1.2 + math.exp(-1)) / 2)


def test_the_k3_kl_term_by_hand():
    # logp_ref - logp = ln 2 on every token, ratio 1, advantage 0: loss = beta * (2 - ln 2 - 1)
    logp = torch.zeros(2, 3)
    loss, stats = diffu_grpo_loss(logp, logp, logp + math.log(2), torch.zeros(2), torch.ones(2, 3, dtype=torch.bool),
                                  2, epsilon=0.2, beta=0.04)
    assert float(loss) == pytest.approx(0.04 * (1 - math.log(2)))
    assert stats["kl_mean"] == pytest.approx(1 - math.log(2))
    zero, _ = diffu_grpo_loss(logp, logp, logp + math.log(2), torch.zeros(2), torch.ones(2, 3, dtype=torch.bool),
                              2, epsilon=0.2, beta=0.0)
    assert float(zero) == 0.0


def batch(n=4, g=2, p=3, length=4, seed=0) -> RolloutBatch:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, p, dtype=torch.bool)
    mask[0, 0] = False  # left padding on the first row
    return RolloutBatch(prompt_ids=torch.randint(0, 10, (n, p), generator=gen), prompt_mask=mask,
                        completion_ids=torch.randint(0, 10, (n, length), generator=gen),
                        eligible=torch.ones(n, length, dtype=torch.bool), rewards=torch.rand(n, generator=gen),
                        group_size=g)


def test_prepare_draws_one_prompt_mask_per_step_shared_by_old_and_reference():
    policy, b = FakePolicy(seed=0), batch()
    objective = DiffuGrpoObjective(p_mask_prompt=0.5)
    extras = objective.prepare(policy, b, num_iterations=3, generator=torch.Generator().manual_seed(0))
    assert extras["grpo_prompt_noise"].shape == (4, 3, 3) and extras["grpo_old_logp"].shape == (4, 3, 4)
    noise = extras["grpo_prompt_noise"]
    assert not torch.equal(noise[:, 0], noise[:, 1])  # re-drawn per gradient step
    for i in range(3):  # the old log-probs are those of mask i, computed with the same policy
        again = mean_field_token_logp(policy.logits, b.prompt_ids, b.prompt_mask, noise[:, i], b.completion_ids, MASK)
        assert torch.equal(again, extras["grpo_old_logp"][:, i])
        ref = mean_field_token_logp(policy.reference_logits, b.prompt_ids, b.prompt_mask, noise[:, i],
                                    b.completion_ids, MASK)
        assert torch.equal(ref, extras["grpo_ref_logp"][:, i])
    # the loss at step i re-uses mask i: before any update the ratio is exactly 1
    full = RolloutBatch(**{**{k: getattr(b, k) for k in ("prompt_ids", "prompt_mask", "completion_ids", "eligible",
                                                           "rewards", "group_size")}, "extras": extras})
    weights = WeightOutput(advantages=torch.ones(4), valid=torch.ones(4, dtype=torch.bool))
    for i in range(3):
        _, stats = objective(policy, full, weights, num_groups=2, iteration=i)
        assert stats["ratio_mean"] == 1.0 and stats["kl_mean"] == 0.0
    assert not objective.needs


def test_padding_is_never_masked_in_the_prompt():
    seen = {}

    def logits_fn(ids, attn, *, last):
        seen["ids"] = ids.clone()
        return torch.zeros(ids.shape[0], last, 13)

    b = batch()
    mean_field_token_logp(logits_fn, b.prompt_ids, b.prompt_mask, torch.ones(4, 3, dtype=torch.bool),
                          b.completion_ids, MASK)
    assert seen["ids"][0, 0] == b.prompt_ids[0, 0]  # the padded position kept its id
    assert (seen["ids"][1:, :3] == MASK).all() and (seen["ids"][:, 3:] == MASK).all()


@pytest.mark.parametrize("options", [{"p_mask_prompt": 1.0}, {"epsilon": 0}, {"beta": -1}, {"beta": math.inf}])
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        DiffuGrpoObjective(**options)
    with pytest.raises(ConfigError):
        GroupNormalisedWeighting(eps=0)


def test_a_group_of_equal_large_rewards_gets_exactly_zero_advantages():
    # the mean of G equal float64 values can be an ulp off them, which a near-zero std blows up
    # (hypothesis found a 1.8e-5 advantage); these values are such cases for the plain mean
    from dmpo_core.objective.grpo import group_normalised_advantages

    for g, value in ((3, -6427.876495984981), (5, -7437.934316945957), (6, -5411.437576639464),
                     (7, -3017.1549714382227)):
        rewards = torch.full((2 * g,), value, dtype=torch.float64)  # [2*g]: two groups of equal rows
        rewards[1] = float("nan")  # a missing reward in the first group
        adv, valid = group_normalised_advantages(rewards, g, eps=1e-8, scale="group")
        assert torch.equal(adv, torch.zeros_like(adv)) and int(valid.sum()) == 2 * g - 1
