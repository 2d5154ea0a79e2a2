"""The public laws can fail: each one rejects a deliberately broken scheme or objective.

A law that cannot fail proves nothing, so every law of :mod:`dmpo_core.testing.laws` is run
here (without hypothesis, on fixed inputs) against a component that breaks it.
"""

from __future__ import annotations

import functools
import math

import attrs
import pytest
import torch

from dmpo_core.data import RolloutBatch
from dmpo_core.objective import DmpoWeighting, WdceObjective
from dmpo_core.objective.masks import sample_masks
from dmpo_core.testing import LawError, laws
from dmpo_core.testing.strategies import GroupBatch, LossInputs, TokenBatch


class Broken:
    """A DMPO scheme whose output goes through ``edit(out, rewards, log_rnd, group_size)``."""

    def __init__(self, edit, *, zero_sum=None, **options) -> None:
        self.inner = DmpoWeighting(**options)
        self.edit = edit
        self._zero_sum = zero_sum
        self.alpha = self.inner.alpha
        self.adaptive = self.inner.adaptive

    @property
    def needs(self):
        return self.inner.needs

    @property
    def zero_sum(self):
        return self.inner.zero_sum if self._zero_sum is None else self._zero_sum

    def __call__(self, rewards, log_rnd, group_size, **kw):
        return self.edit(self.inner(rewards, log_rnd, group_size, **kw), rewards, log_rnd, group_size)


def factory(edit, **fixed):
    return lambda **options: Broken(edit, **{**fixed, **options})


def batch(rewards, log_rnd=None, group_size=2) -> GroupBatch:
    rewards = torch.tensor(rewards, dtype=torch.float32)
    n = rewards.shape[0]
    return GroupBatch(
        rewards=rewards,
        log_rnd=torch.tensor(log_rnd, dtype=torch.float32) if log_rnd is not None else torch.zeros(n),
        group_size=group_size,
        log_p_current=-torch.arange(n, dtype=torch.float32),
        log_p_old=-2 * torch.arange(n, dtype=torch.float32),
        seed=3,
    )


GOOD = batch([1.0, 0.0, 0.5, 2.0, -1.0, 0.25], [0.1, -0.3, 0.0, 0.2, 0.5, -0.1], group_size=3)
WITH_NAN = batch([1.0, math.nan, 0.0, math.nan], group_size=2)


def renormalised(w: torch.Tensor, g: int) -> torch.Tensor:
    w = w.view(-1, g)
    return (w / w.sum(dim=1, keepdim=True).clamp_min(1e-30)).reshape(-1)


# --------------------------------------------------------------------------- the correct scheme passes


def test_the_builtin_scheme_passes_every_law_on_fixed_inputs():
    for scheme in (DmpoWeighting(alpha=0.5), DmpoWeighting(alpha=0.0, baseline="mean"), DmpoWeighting(adaptive=True)):
        for data in (GOOD, WITH_NAN):
            laws.weights_are_finite_and_non_negative(scheme, data)
            laws.weights_sum_to_one_per_group(scheme, data)
            laws.missing_rewards_are_excluded_and_counted(scheme, data)
            laws.invariant_to_reward_shift_per_group(scheme, data)
            laws.invariant_to_log_rnd_shift_per_group(scheme, data)
            laws.permutation_equivariant_within_group(scheme, data)
            laws.groups_are_independent(scheme, data)
            laws.higher_reward_never_gets_lower_weight(scheme, data)
            laws.ess_lies_between_one_over_g_and_one(scheme, data)
            laws.advantages_sum_to_zero_per_group(scheme, data)
            laws.equal_inputs_give_zero_advantages(scheme, data)


# --------------------------------------------------------------------------- each law rejects a broken scheme


def test_negative_weights_are_rejected():
    scheme = Broken(lambda out, *a: attrs.evolve(out, weights=out.weights - 0.5))
    with pytest.raises(LawError, match="weights_are_finite_and_non_negative"):
        laws.weights_are_finite_and_non_negative(scheme, GOOD)


def test_nan_advantages_are_rejected():
    scheme = Broken(lambda out, *a: attrs.evolve(out, advantages=out.advantages * math.nan))
    with pytest.raises(LawError, match="not finite"):
        laws.weights_are_finite_and_non_negative(scheme, GOOD)


def test_weights_normalised_over_the_batch_are_rejected():
    scheme = Broken(lambda out, *a: attrs.evolve(out, weights=out.weights / out.weights.sum()))
    with pytest.raises(LawError, match="weights_sum_to_one_per_group"):
        laws.weights_sum_to_one_per_group(scheme, GOOD)


def test_missing_rewards_treated_as_zero_are_rejected():
    def nan_to_zero(out, rewards, log_rnd, g):
        return DmpoWeighting(alpha=0.04)(torch.nan_to_num(rewards, nan=0.0), log_rnd, g)

    with pytest.raises(LawError, match="missing"):
        laws.weights_sum_to_one_per_group(Broken(nan_to_zero), WITH_NAN)
    with pytest.raises(LawError, match="missing_rewards_are_excluded_and_counted"):
        laws.missing_rewards_are_excluded_and_counted(Broken(nan_to_zero), WITH_NAN)


def test_wrong_invalid_count_is_rejected():
    scheme = Broken(lambda out, *a: attrs.evolve(out, stats={**out.stats, "n_invalid": 0}))
    with pytest.raises(LawError, match="n_invalid"):
        laws.missing_rewards_are_excluded_and_counted(scheme, WITH_NAN)


def test_a_scheme_reading_absolute_rewards_is_not_shift_invariant():
    def absolute(out, rewards, log_rnd, g):
        return DmpoWeighting(alpha=0.5)(rewards.double() ** 2, log_rnd, g)

    with pytest.raises(LawError, match="invariant_to_reward_shift_per_group"):
        laws.invariant_to_reward_shift_per_group(Broken(absolute), GOOD)


def test_a_scheme_reading_absolute_log_rnd_is_not_shift_invariant():
    def absolute(out, rewards, log_rnd, g):
        return DmpoWeighting(alpha=0.5)(rewards, log_rnd.double() ** 2, g)

    with pytest.raises(LawError, match="invariant_to_log_rnd_shift_per_group"):
        laws.invariant_to_log_rnd_shift_per_group(Broken(absolute), GOOD)


def test_a_position_biased_scheme_is_not_permutation_equivariant():
    def first_row_bonus(out, rewards, log_rnd, g):
        w = out.weights.view(-1, g).clone()
        w[:, 0] *= 2.0
        return attrs.evolve(out, weights=renormalised(w.reshape(-1), g))

    with pytest.raises(LawError, match="permutation_equivariant_within_group"):
        laws.permutation_equivariant_within_group(Broken(first_row_bonus, alpha=0.5), GOOD)


def test_a_scheme_mixing_groups_is_rejected():
    def leak(out, rewards, log_rnd, g):  # every group's weights pulled toward the batch's first group
        w = out.weights.view(-1, g)
        return attrs.evolve(out, weights=renormalised((w + w[:1]).reshape(-1), g))

    with pytest.raises(LawError, match="groups_are_independent"):
        laws.groups_are_independent(Broken(leak, alpha=0.5), GOOD)


def test_a_scheme_preferring_low_rewards_is_rejected():
    def flipped(out, rewards, log_rnd, g):
        return DmpoWeighting(alpha=0.5)(-rewards.double(), log_rnd, g)

    with pytest.raises(LawError, match="higher_reward_never_gets_lower_weight"):
        laws.higher_reward_never_gets_lower_weight(Broken(flipped), GOOD)


def test_a_scheme_misreporting_its_ess_is_rejected():
    scheme = Broken(lambda out, *a: attrs.evolve(out, stats={**out.stats, "ess_mean": 1.0}), alpha=0.5)
    with pytest.raises(LawError, match=r"stats\['ess_mean'\]"):
        laws.ess_lies_between_one_over_g_and_one(scheme, GOOD)


def test_a_scheme_ignoring_log_rnd_does_not_approach_its_softmax():
    def no_reference(out, rewards, log_rnd, g):
        return DmpoWeighting(alpha=0.0)(rewards, None, g)

    data = batch([0.0, 0.0, 0.0, 0.0], [0.0, 3.0, -1.0, 0.5])
    with pytest.raises(LawError, match="approaches_softmax_of_log_rnd_as_alpha_grows"):
        laws.approaches_softmax_of_log_rnd_as_alpha_grows(factory(no_reference), data, alpha=1e9)


def test_a_scheme_ignoring_the_coefficient_does_not_approach_uniform():
    def full_step(out, rewards, log_rnd, g):
        return DmpoWeighting(alpha=0.0)(rewards, None, g)

    with pytest.raises(LawError, match="approaches_uniform_as_coeff_shrinks"):
        laws.approaches_uniform_as_coeff_shrinks(factory(full_step), GOOD, coeff=1e-6, alpha=0.0)


def test_a_scheme_claiming_zero_sum_without_a_baseline_is_rejected():
    scheme = Broken(lambda out, *a: out, zero_sum=True, baseline="none")
    with pytest.raises(LawError, match="advantages_sum_to_zero_per_group"):
        laws.advantages_sum_to_zero_per_group(scheme, GOOD)
    with pytest.raises(LawError, match="equal_inputs_give_zero_advantages"):
        laws.equal_inputs_give_zero_advantages(scheme, GOOD)


def test_an_adaptive_scheme_hiding_its_fallback_is_rejected():
    def hide(out, *a):
        return attrs.evolve(out, stats={**out.stats, "coeff_fallback": False})

    data = batch([0.0, 0.0, 0.0, 0.0])  # equal rewards: ESS 1 > threshold, the search must fall back
    with pytest.raises(LawError, match="no fallback is reported"):
        laws.adaptive_coeff_meets_ess_threshold_or_reports_fallback(factory(hide), data, threshold=0.7)


def test_an_adaptive_scheme_falling_back_to_the_wrong_bound_is_rejected():
    def wrong_bound(out, *a):
        return attrs.evolve(out, stats={**out.stats, "coeff": 0.01})

    data = batch([0.0, 0.0, 0.0, 0.0])
    with pytest.raises(LawError, match="fallback reported"):
        laws.adaptive_coeff_meets_ess_threshold_or_reports_fallback(factory(wrong_bound), data, threshold=0.7)


# --------------------------------------------------------------------------- objective laws


def test_mask_laws_pass_on_the_library():
    eligible = torch.tensor([[True, True, False], [True, False, True]])
    laws.antithetic_masks_cover_each_eligible_token_once_per_pair(eligible, 4, seed=1)
    laws.mask_ratios_are_clamped(3, 5, seed=2)
    masks = sample_masks(eligible, 2, generator=torch.Generator().manual_seed(0))
    prompts, completions = torch.tensor([[1, 2], [3, 4]]), torch.tensor([[5, 6, 7], [8, 0, 1]])
    laws.noisy_inputs_leave_prompt_intact(prompts, completions, masks, 9)


def tokens() -> TokenBatch:
    gen = torch.Generator().manual_seed(0)
    rollout = RolloutBatch(
        prompt_ids=torch.randint(0, 9, (4, 3), generator=gen),
        prompt_mask=torch.ones(4, 3, dtype=torch.bool),
        completion_ids=torch.randint(0, 9, (4, 5), generator=gen),
        eligible=torch.ones(4, 5, dtype=torch.bool),
        rewards=torch.rand(4, generator=gen),
        group_size=2,
    )
    return TokenBatch(batch=rollout, mask_id=9, vocab_size=10, replicates=4, seed=1)


def test_wdce_mask_law_passes_on_the_library_and_rejects_prompt_masking():
    laws.wdce_masks_each_completion_token_once_per_pair(WdceObjective(), tokens())

    def masks_the_prompt(policy, batch, weights, *, num_groups, generator=None, weighting=None):
        prompt = batch.prompt_ids.clone()
        prompt[:, 0] = policy.mask_id
        bad = attrs.evolve(batch, prompt_ids=prompt)
        return WdceObjective()(policy, bad, weights, num_groups=num_groups, generator=generator)

    with pytest.raises(LawError, match="prompt"):
        laws.wdce_masks_each_completion_token_once_per_pair(masks_the_prompt, tokens())


def test_wdce_mask_law_rejects_independent_masks():
    with pytest.raises(LawError, match="complementary"):
        laws.wdce_masks_each_completion_token_once_per_pair(WdceObjective(antithetic=False), tokens())


def test_sft_law_passes_and_detects_a_wrong_normaliser(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(2, 4, 6, generator=gen) < 0.5
    inputs = LossInputs(token_logp=-torch.rand(2, 4, 6, generator=gen) * masks, masks=masks, group_size=2)
    laws.wdce_with_uniform_weights_equals_sft_loss(inputs)
    from dmpo_core.objective import wdce

    monkeypatch.setattr(laws, "wdce_loss", functools.partial(_double_loss, wdce.wdce_loss))
    with pytest.raises(LawError, match="wdce_with_uniform_weights_equals_sft_loss"):
        laws.wdce_with_uniform_weights_equals_sft_loss(inputs)


def _double_loss(real, *args, **kwargs):
    loss, stats = real(*args, **kwargs)
    return 2 * loss, stats


# --------------------------------------------------------------------------- runners


def test_check_runs_a_law_and_rejects_unknown_names():
    laws.check("weights_sum_to_one_per_group", DmpoWeighting, max_examples=5)
    with pytest.raises(ValueError, match="unknown law 'no-such-law'"):
        laws.check("no-such-law", DmpoWeighting)


def test_check_all_names_every_failing_law():
    def flipped(out, rewards, log_rnd, g):
        return DmpoWeighting(alpha=0.5)(-rewards.double(), log_rnd, g)

    keep = {"weights_sum_to_one_per_group", "higher_reward_never_gets_lower_weight"}
    skip = [name for name in laws.WEIGHTING_LAWS if name not in keep]
    with pytest.raises(AssertionError) as info:
        laws.check_all(factory(flipped), max_examples=30, skip=skip)
    assert "higher_reward_never_gets_lower_weight" in str(info.value)
    assert "weights_sum_to_one_per_group" not in str(info.value)  # that one holds for the flipped scheme
    with pytest.raises(ValueError, match="unknown law"):
        laws.check_all(DmpoWeighting, skip=["typo"])
