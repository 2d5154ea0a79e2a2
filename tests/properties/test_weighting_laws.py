"""The laws of DMPO's weighting schemes, one hypothesis property per law.

Every property draws the built-in :class:`DmpoWeighting` over all baselines (none, mean,
negative, unbiased), fixed and adaptive coefficients, ``alpha = 0`` and ``alpha > 0``, and
batches (:func:`dmpo_core.testing.strategies.group_batches`) with groups of 1 to 256 rows,
rewards and log-RNDs up to 1e4 in float32 and bfloat16, and missing (NaN) rewards. The
laws themselves live in :mod:`dmpo_core.testing.laws`, public, so plugins reuse them.
"""

from __future__ import annotations

import functools

import torch
from hypothesis import given
from hypothesis import strategies as st

from dmpo_core.objective import DmpoWeighting
from dmpo_core.testing import laws
from dmpo_core.testing import strategies as dst

# These two laws hold for every input, so they also get extreme ones: alpha down to
# subnormal values and float64 rewards up to 1e300, where r / alpha overflows float64.
EXTREME_ALPHAS = st.one_of(st.sampled_from([5e-324, 1e-310, 1e-300, 1e300]), dst.alphas(low=1e-320, high=1e300))
EXTREME_SCHEMES = st.one_of(dst.dmpo_schemes(), dst.dmpo_schemes(alpha=EXTREME_ALPHAS))
EXTREME_BATCHES = st.one_of(dst.group_batches(), dst.group_batches(magnitude=1e300, dtypes=(torch.float64,)))


@given(scheme=EXTREME_SCHEMES, batch=EXTREME_BATCHES)
def test_weights_are_finite_and_non_negative(scheme, batch):
    laws.weights_are_finite_and_non_negative(scheme, batch)


@given(scheme=EXTREME_SCHEMES, batch=EXTREME_BATCHES)
def test_weights_sum_to_one_per_group(scheme, batch):
    laws.weights_sum_to_one_per_group(scheme, batch)


@given(scheme=dst.dmpo_schemes(), batch=dst.group_batches())
def test_missing_rewards_are_excluded_and_counted(scheme, batch):
    laws.missing_rewards_are_excluded_and_counted(scheme, batch)


@given(scheme=dst.dmpo_schemes(), batch=dst.group_batches(), data=st.data())
def test_invariant_to_reward_shift_per_group(scheme, batch, data):
    shift = st.floats(-dst.MAGNITUDE, dst.MAGNITUDE, allow_nan=False)
    shifts = data.draw(st.lists(shift, min_size=batch.num_groups, max_size=batch.num_groups))
    laws.invariant_to_reward_shift_per_group(scheme, batch, torch.tensor(shifts, dtype=torch.float64))


@given(scheme=dst.dmpo_schemes(), batch=dst.group_batches(), data=st.data())
def test_invariant_to_log_rnd_shift_per_group(scheme, batch, data):
    shift = st.floats(-dst.MAGNITUDE, dst.MAGNITUDE, allow_nan=False)
    shifts = data.draw(st.lists(shift, min_size=batch.num_groups, max_size=batch.num_groups))
    laws.invariant_to_log_rnd_shift_per_group(scheme, batch, torch.tensor(shifts, dtype=torch.float64))


@given(scheme=dst.dmpo_schemes(), batch=dst.group_batches())
def test_permutation_equivariant_within_group(scheme, batch):
    laws.permutation_equivariant_within_group(scheme, batch)


# Fixed coefficient: the adaptive one is ONE coefficient per batch and couples groups by design.
@given(scheme=dst.dmpo_schemes(adaptive=st.just(False)), batch=dst.group_batches(min_groups=2))
def test_groups_are_independent(scheme, batch):
    laws.groups_are_independent(scheme, batch)


@given(scheme=dst.dmpo_schemes(), batch=dst.group_batches())
def test_higher_reward_never_gets_lower_weight(scheme, batch):
    laws.higher_reward_never_gets_lower_weight(scheme, batch)


@given(scheme=dst.dmpo_schemes(), batch=dst.group_batches())
def test_ess_lies_between_one_over_g_and_one(scheme, batch):
    laws.ess_lies_between_one_over_g_and_one(scheme, batch)


@given(
    baseline=st.sampled_from(["none", "mean", "negative", "unbiased"]),
    batch=dst.group_batches(),
    alpha=dst.large_alphas(),
    coeff=dst.coeffs(),
)
def test_approaches_softmax_of_log_rnd_as_alpha_grows(baseline, batch, alpha, coeff):
    factory = functools.partial(DmpoWeighting, baseline=baseline)
    laws.approaches_softmax_of_log_rnd_as_alpha_grows(factory, batch, alpha=alpha, coeff=coeff)


@given(
    baseline=st.sampled_from(["none", "mean", "negative", "unbiased"]),
    batch=dst.group_batches(),
    alpha=dst.alphas(),
    coeff=dst.coeffs(low=1e-12),
)
def test_approaches_uniform_as_coeff_shrinks(baseline, batch, alpha, coeff):
    factory = functools.partial(DmpoWeighting, baseline=baseline)
    laws.approaches_uniform_as_coeff_shrinks(factory, batch, coeff=coeff, alpha=alpha)


@given(scheme=dst.zero_sum_schemes(), batch=dst.group_batches())
def test_advantages_sum_to_zero_per_group(scheme, batch):
    # The mean and negative baselines at lambda 1 must declare zero_sum, or the law is vacuous.
    assert scheme.zero_sum
    laws.advantages_sum_to_zero_per_group(scheme, batch)


@given(scheme=dst.zero_sum_schemes(), batch=dst.group_batches())
def test_equal_inputs_give_zero_advantages(scheme, batch):
    assert scheme.zero_sum
    laws.equal_inputs_give_zero_advantages(scheme, batch)


@given(
    baseline=st.sampled_from(["none", "mean", "negative", "unbiased"]),
    batch=dst.group_batches(),
    alpha=dst.alphas(),
    threshold=dst.ess_thresholds(),
    bounds=st.sampled_from([(0.01, 0.99), (1e-6, 1.0), (0.3, 0.5)]),
)
def test_adaptive_coeff_meets_ess_threshold_or_reports_fallback(baseline, batch, alpha, threshold, bounds):
    factory = functools.partial(DmpoWeighting, baseline=baseline)
    laws.adaptive_coeff_meets_ess_threshold_or_reports_fallback(
        factory, batch, threshold=threshold, alpha=alpha, coeff_min=bounds[0], coeff_max=bounds[1]
    )

