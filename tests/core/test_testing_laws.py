"""The public laws can fail: each one rejects a deliberately broken scheme or objective.

A law that cannot fail proves nothing, so every law of :mod:`dmpo_core.testing.laws` is run
here (without hypothesis, on fixed inputs) against a component that breaks it.
"""

from __future__ import annotations

import functools
import math
import unittest

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.errors import ConfigError
from dmpo_core.objective import DmpoWeighting, WdceObjective
from dmpo_core.objective.masks import sample_masks
from dmpo_core.registry import Entry, Registry, build_registry
from dmpo_core.testing import LawError, laws
from dmpo_core.testing import strategies as dst
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
            for law in (laws.outputs_have_contract_shapes_and_are_finite, laws.stats_are_a_name_to_float_mapping,
                        laws.invalid_rows_get_zero_advantage, laws.group_without_valid_reward_gets_zero_advantages,
                        laws.calls_are_pure, laws.uses_only_the_inputs_its_needs_declare):
                law(scheme, data)
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


def test_check_all_names_every_failing_law_and_lists_those_that_do_not_apply(monkeypatch):
    # Runners replaced by stubs: what is tested is check_all's bookkeeping, not hypothesis.
    def holds(factory, **kw):
        pass

    def fails(factory, **kw):
        raise LawError("higher_reward_never_gets_lower_weight: row 1 ...")

    def does_not_apply(factory, **kw):
        raise laws.LawNotApplicable("ess_lies_between_one_over_g_and_one: does not apply: no weights")

    stubs = {name: holds for name in laws.WEIGHTING_LAWS}
    stubs["higher_reward_never_gets_lower_weight"] = fails
    stubs["ess_lies_between_one_over_g_and_one"] = does_not_apply
    monkeypatch.setattr(laws, "WEIGHTING_LAWS", stubs)
    with pytest.raises(AssertionError) as info:
        laws.check_all(DmpoWeighting)
    assert "higher_reward_never_gets_lower_weight" in str(info.value)
    assert "(not applicable) ess_lies_between_one_over_g_and_one" in str(info.value)
    assert "weights_sum_to_one_per_group" not in str(info.value)
    assert laws.check_all(DmpoWeighting, skip=["higher_reward_never_gets_lower_weight"]) == {
        "ess_lies_between_one_over_g_and_one": "ess_lies_between_one_over_g_and_one: does not apply: no weights"
    }
    with pytest.raises(ValueError, match="unknown law"):
        laws.check_all(DmpoWeighting, skip=["typo"])


def test_law_lists_split_universal_from_dmpo_family():
    assert set(laws.UNIVERSAL_WEIGHTING_LAWS).isdisjoint(laws.DMPO_WEIGHTING_LAWS)
    assert list(laws.WEIGHTING_LAWS) == [*laws.UNIVERSAL_WEIGHTING_LAWS, *laws.DMPO_WEIGHTING_LAWS]
    assert issubclass(laws.LawNotApplicable, unittest.SkipTest)  # pytest reports it as a skip
    assert not issubclass(laws.LawNotApplicable, AssertionError)  # never counted as a pass or a failure


# --------------------------------------------------------------------------- a scheme that is not DMPO


@attrs.frozen(kw_only=True)
class GroupNormalised:
    """Test-only GRPO-style scheme: ``a_j = (r_j - mean) / (std + eps)`` over the valid rows of
    each group, float64 inside; no importance weights, no ``coeff``: not DMPO-like."""

    eps: float = 1e-4
    """Added to the group's standard deviation, > 0."""

    def __attrs_post_init__(self):
        if not (isinstance(self.eps, float) and 0 < self.eps < math.inf):
            raise ValueError(f"eps={self.eps!r}: pass a finite value > 0")

    @property
    def needs(self):
        return frozenset()

    @property
    def zero_sum(self):
        return True

    def __call__(self, rewards, log_rnd, group_size, *, log_p_current=None, log_p_old=None):
        r = rewards.double().view(-1, group_size)  # [B, G]
        ok = torch.isfinite(r)  # [B, G]
        n = ok.sum(dim=1, keepdim=True).clamp_min(1)  # [B, 1]
        first = ok.double().argmax(dim=1, keepdim=True)  # [B, 1]: a valid row (shift-invariance: equal
        z = torch.where(ok, r - r.gather(1, first), torch.zeros_like(r))  # [B, G]   rows centre to exactly 0)
        r = torch.where(ok, z, r)  # [B, G]
        mean = z.sum(dim=1, keepdim=True) / n  # [B, 1]
        dev = torch.where(ok, r - mean, torch.zeros_like(r))  # [B, G]
        std = (dev.square().sum(dim=1, keepdim=True) / n).sqrt()  # [B, 1]
        adv = (dev / (std + self.eps)).reshape(-1)  # [B*G]
        return WeightOutput(advantages=adv.float(), valid=ok.reshape(-1), stats={"n_invalid": float((~ok).sum())})


def test_a_scheme_without_coeff_passes_the_universal_laws_and_skips_the_dmpo_ones():
    # A cheap run (15 examples a law): the machinery is what is tested; the suites run 200.
    not_applicable = laws.check_all(GroupNormalised, max_examples=15)
    weight_laws = {"weights_are_finite_and_non_negative", "weights_sum_to_one_per_group"}
    assert set(not_applicable) == set(laws.DMPO_WEIGHTING_LAWS) | weight_laws
    assert "weights is None" in not_applicable["weights_sum_to_one_per_group"]
    assert "lacks ['alpha', 'coeff']" in not_applicable["approaches_uniform_as_coeff_shrinks"]
    with pytest.raises(laws.LawNotApplicable, match="alpha"):
        laws.check("groups_are_independent", GroupNormalised)


def test_a_factory_without_options_draws_none_and_is_still_checked():
    calls = []

    def factory(**options):
        calls.append(options)
        return GroupNormalised()

    laws.check("invalid_rows_get_zero_advantage", factory, max_examples=5)
    assert calls and all(c == {} for c in calls)
    with pytest.raises(laws.LawNotApplicable, match="no options class"):
        laws.check("invariant_to_reward_shift_per_group", factory)


def test_options_are_drawn_from_the_options_class():
    seen = []

    @settings(max_examples=60, database=None, derandomize=True)
    @given(options=dst.scheme_options(functools.partial(DmpoWeighting, baseline="mean")))
    def record(options):
        seen.append(options)

    record()
    assert all("baseline" not in o for o in seen)  # fixed by the partial, not drawn
    assert all(0 < o["coeff"] <= 1 and 0 < o["ess_threshold"] <= 1 and o["alpha"] >= 0 for o in seen)
    assert all(o["coeff_min"] < o["coeff_max"] for o in seen)  # the cross-field check holds
    assert {o["adaptive"] for o in seen} == {True, False}
    assert any(o["coeff"] < 1 for o in seen) and any(o["alpha"] == 0 for o in seen)
    # An author's per-field strategy wins; an unknown field is an error.
    eps = []

    @settings(max_examples=5, database=None)
    @given(options=dst.scheme_options(GroupNormalised, strategies={"eps": st.just(0.5)}))
    def record_eps(options):
        eps.append(options)

    record_eps()
    assert eps and all(o == {"eps": 0.5} for o in eps)
    with pytest.raises(ValueError, match="unknown options"):
        dst.scheme_options(GroupNormalised, strategies={"coeff": st.just(0.5)})
    assert dst.options_class_of(lambda **kw: None) == (None, {})


# --------------------------------------------------------------------------- each new universal law rejects a broken scheme


def test_a_wrong_dtype_of_valid_is_rejected():
    scheme = Broken(lambda out, *a: attrs.evolve(out, valid=out.valid.float()))
    with pytest.raises(LawError, match="outputs_have_contract_shapes_and_are_finite: valid has dtype"):
        laws.outputs_have_contract_shapes_and_are_finite(scheme, GOOD)


def test_a_truncated_advantage_vector_is_rejected():
    scheme = Broken(lambda out, *a: attrs.evolve(out, advantages=out.advantages[:-1]))
    with pytest.raises(LawError, match=r"outputs_have_contract_shapes_and_are_finite: advantages must be .*\(6,\)"):
        laws.outputs_have_contract_shapes_and_are_finite(scheme, GOOD)


def test_a_tensor_in_the_stats_is_rejected():
    scheme = Broken(lambda out, *a: attrs.evolve(out, stats={**out.stats, "ess_mean": torch.tensor(0.5)}))
    with pytest.raises(LawError, match=r"stats_are_a_name_to_float_mapping: stats\['ess_mean'\]"):
        laws.stats_are_a_name_to_float_mapping(scheme, GOOD)


def test_advantage_on_an_invalid_row_is_rejected():
    def leak(out, rewards, *a):  # every row, scored or not, gets 0.1 more
        return attrs.evolve(out, advantages=out.advantages + 0.1)

    with pytest.raises(LawError, match=r"invalid_rows_get_zero_advantage: advantages\[1\]"):
        laws.invalid_rows_get_zero_advantage(Broken(leak), WITH_NAN)


def test_an_empty_group_given_uniform_advantages_is_rejected():
    def uniform_when_empty(out, rewards, log_rnd, g):
        a = out.advantages.view(-1, g).clone()
        empty = torch.isnan(rewards.view(-1, g)).all(dim=1)
        a[empty] = 1.0 / g
        return attrs.evolve(out, advantages=a.reshape(-1))

    with pytest.raises(LawError, match="group_without_valid_reward_gets_zero_advantages: group"):
        laws.group_without_valid_reward_gets_zero_advantages(Broken(uniform_when_empty), GOOD)


def test_a_scheme_with_hidden_state_is_not_pure():
    calls = []

    def counting(out, *a):
        calls.append(1)
        return attrs.evolve(out, advantages=out.advantages + len(calls))

    with pytest.raises(LawError, match="calls_are_pure: advantages differs"):
        laws.calls_are_pure(Broken(counting), GOOD)


def test_a_scheme_mutating_its_rewards_is_not_pure():
    def clobber(out, rewards, *a):
        rewards.mul_(2.0)
        return out

    with pytest.raises(LawError, match="calls_are_pure: the scheme modified its input rewards"):
        laws.calls_are_pure(Broken(clobber), GOOD)


def test_a_scheme_reading_an_undeclared_input_is_rejected():
    class Undeclared(GroupNormalised):  # reads log_rnd, declares nothing
        def __call__(self, rewards, log_rnd, group_size, **kw):
            return super().__call__(rewards + log_rnd, log_rnd, group_size)

    with pytest.raises(LawError, match="uses_only_the_inputs_its_needs_declare: .*raised TypeError"):
        laws.uses_only_the_inputs_its_needs_declare(Undeclared(), GOOD)


def test_an_unknown_need_is_rejected():
    class Odd(GroupNormalised):
        @property
        def needs(self):
            return frozenset({"log_p_reference"})

    with pytest.raises(LawError, match="unknown names"):
        laws.uses_only_the_inputs_its_needs_declare(Odd(), GOOD)


def test_weight_laws_do_not_apply_to_a_scheme_without_weights():
    with pytest.raises(laws.LawNotApplicable, match="weights is None"):
        laws.weights_sum_to_one_per_group(GroupNormalised(), GOOD)
    with pytest.raises(laws.LawNotApplicable, match="zero_sum=False"):
        laws.advantages_sum_to_zero_per_group(DmpoWeighting(baseline="none"), GOOD)


# --------------------------------------------------------------------------- a registered name fixes its defining option


def test_dmpo_refuses_a_mean_baseline():
    registry = build_registry()
    laws.registered_name_refuses_its_fixed_options(registry, "weighting", "dmpo", {"baseline": "mean"})
    with pytest.raises(ConfigError, match=r"weighting\.options\.baseline='mean'"):
        registry.validate("weighting", "dmpo", {"baseline": "mean"}, path="weighting.options")
    for name in ("dmpo-mean", "dmpo-none", "dmpo-unbiased"):
        laws.registered_name_refuses_its_fixed_options(registry, "weighting", name)


def test_a_name_that_does_not_fix_its_baseline_is_rejected():
    registry = Registry()
    registry.add(Entry(kind="weighting", name="dmpo", factory=DmpoWeighting, plugin="sloppy", options=DmpoWeighting,
                       fixed={"baseline": "negative"}))
    sloppy = Registry()  # same options class, but the name forgot to fix baseline ...
    sloppy.add(Entry(kind="weighting", name="dmpo", factory=DmpoWeighting, plugin="sloppy", options=DmpoWeighting))
    laws.registered_name_refuses_its_fixed_options(registry, "weighting", "dmpo")
    with pytest.raises(laws.LawNotApplicable, match="fixes no option"):
        laws.registered_name_refuses_its_fixed_options(sloppy, "weighting", "dmpo")

    class Permissive(Registry):  # ... or a registry that lets a user override a fixed option
        def validate(self, kind, name, options, *, path=""):
            return {**self.get(kind, name).fixed, **dict(options or {})}

        def create(self, kind, name, _path="", /, **options):
            return self.get(kind, name).factory(**self.validate(kind, name, options))

    permissive = Permissive()
    permissive.add(Entry(kind="weighting", name="dmpo", factory=DmpoWeighting, plugin="p", options=DmpoWeighting,
                         fixed={"baseline": "negative"}))
    with pytest.raises(LawError, match="validate.*baseline='none'.*was accepted"):
        laws.registered_name_refuses_its_fixed_options(permissive, "weighting", "dmpo")
