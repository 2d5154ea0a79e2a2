"""Unit tests of DMPO's weighting schemes: hand-computed expectations and the bad-input contract.

Expected values are worked out in the comments (e = exp(1)); the code only restates them.
"""

from __future__ import annotations

import math

import pytest
import torch

from dmpo_core.errors import ConfigError, InvalidArgumentError, ShapeError
from dmpo_core.objective import DmpoWeighting, adaptive_coeff, group_ess, group_softmax

NAN = math.nan


def approx(values, rel=1e-6, abs=1e-7):
    return pytest.approx(values, rel=rel, abs=abs)


# --------------------------------------------------------------------------- weights


def test_two_rows_alpha_half_is_softmax_of_doubled_rewards():
    # rewards [1, 0], alpha 0.5, log_rnd 0, c 1: logits r/alpha = [2, 0], so
    # w = softmax([2, 0]) = [e^2/(e^2+1), 1/(e^2+1)] = [0.880797, 0.119203].
    out = DmpoWeighting(alpha=0.5, baseline="none")(torch.tensor([1.0, 0.0]), torch.zeros(2), 2)
    e2 = math.exp(2)
    assert out.weights.tolist() == approx([e2 / (e2 + 1), 1 / (e2 + 1)])
    assert out.advantages.tolist() == approx(out.weights.tolist())  # no baseline: a = w


def test_negative_baseline_advantages_are_plus_minus_tanh_one():
    # Same group. Negative baseline b = softmax([-2, 0]) = [1/(e^2+1), e^2/(e^2+1)], so
    # a = w - b = +-(e^2-1)/(e^2+1) = +-tanh(1) = +-0.761594: they sum to zero.
    out = DmpoWeighting(alpha=0.5, baseline="negative")(torch.tensor([1.0, 0.0]), torch.zeros(2), 2)
    assert out.baseline.tolist() == approx([1 / (math.exp(2) + 1), math.exp(2) / (math.exp(2) + 1)])
    assert out.advantages.tolist() == approx([math.tanh(1), -math.tanh(1)])


def test_mean_baseline_subtracts_one_over_g():
    # a = w - 1/2 = [0.880797 - 0.5, 0.119203 - 0.5] = [0.380797, -0.380797].
    out = DmpoWeighting(alpha=0.5, baseline="mean")(torch.tensor([1.0, 0.0]), torch.zeros(2), 2)
    w1 = math.exp(2) / (math.exp(2) + 1)
    assert out.advantages.tolist() == approx([w1 - 0.5, 0.5 - w1])


def test_baseline_strength_lambda_scales_the_baseline():
    # lam 0.5, mean baseline, G 2: a = w - 0.25 = [0.630797, -0.130797] (sum 0.5, not 0).
    out = DmpoWeighting(alpha=0.5, baseline="mean", lam=0.5)(torch.tensor([1.0, 0.0]), torch.zeros(2), 2)
    w1 = math.exp(2) / (math.exp(2) + 1)
    assert out.advantages.tolist() == approx([w1 - 0.25, 1 - w1 - 0.25])
    assert not DmpoWeighting(baseline="mean", lam=0.5).zero_sum


def test_alpha_zero_drops_the_reference_and_coeff_tempers():
    # alpha 0, c 0.5, rewards [2, 0, 1]: w = softmax(0.5 * r) = softmax([1, 0, 0.5])
    # = [e, 1, e^0.5] / (e + 1 + e^0.5) = [0.506480, 0.186324, 0.307196]; log_rnd is not needed.
    out = DmpoWeighting(alpha=0.0, coeff=0.5, baseline="none")(torch.tensor([2.0, 0.0, 1.0]), None, 3)
    total = math.e + 1 + math.exp(0.5)
    assert out.weights.tolist() == approx([math.e / total, 1 / total, math.exp(0.5) / total])


def test_log_rnd_reweights_equal_rewards():
    # Equal rewards, log_rnd [ln 2, 0], alpha 1: w = softmax([ln 2, 0]) = [2/3, 1/3].
    out = DmpoWeighting(alpha=1.0, baseline="none")(torch.zeros(2), torch.tensor([math.log(2), 0.0]), 2)
    assert out.weights.tolist() == approx([2 / 3, 1 / 3])


def test_unbiased_baseline_is_softmax_of_current_minus_old():
    # log p_current - log p_old = [ln 3, 0] -> b = [3/4, 1/4]; rewards equal, log_rnd 0 -> w = [1/2, 1/2];
    # a = [-1/4, 1/4].
    scheme = DmpoWeighting(alpha=1.0, baseline="unbiased")
    assert scheme.needs == {"log_rnd", "log_p_old", "current_logp"}
    out = scheme(
        torch.zeros(2), torch.zeros(2), 2,
        log_p_current=torch.tensor([math.log(3) - 5.0, -5.0]), log_p_old=torch.tensor([-5.0, -5.0]),
    )
    assert out.baseline.tolist() == approx([0.75, 0.25])
    assert out.advantages.tolist() == approx([-0.25, 0.25])


def test_groups_are_softmaxed_separately():
    # Two groups of 2: [1, 0] and [0, 0] with alpha 1: [e/(e+1), 1/(e+1)] and [1/2, 1/2].
    out = DmpoWeighting(alpha=1.0, baseline="none")(torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.zeros(4), 2)
    assert out.weights.tolist() == approx([math.e / (math.e + 1), 1 / (math.e + 1), 0.5, 0.5])


def test_ess_of_a_two_row_group():
    # w = [0.880797, 0.119203]: ESS = 1 / (2 * (0.775803 + 0.014209)) = 0.632902.
    w1 = math.exp(2) / (math.exp(2) + 1)
    expected = 1 / (2 * (w1**2 + (1 - w1) ** 2))
    out = DmpoWeighting(alpha=0.5, baseline="none")(torch.tensor([1.0, 0.0]), torch.zeros(2), 2)
    assert out.stats["ess_mean"] == approx(expected)
    assert out.stats["ess_min"] == approx(expected)
    assert out.stats["weight_max"] == approx(w1)
    ess = group_ess(torch.tensor([w1, 1 - w1]), 2, torch.tensor([True, True]))
    assert ess.tolist() == approx([expected])


def test_group_ess_bounds_one_over_g_and_one():
    # One-hot weights: ESS = 1/(G * 1) = 1/G; uniform: 1/(G * G * 1/G^2) = 1.
    valid = torch.ones(4, dtype=torch.bool)
    assert group_ess(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, valid).tolist() == approx([0.25])
    assert group_ess(torch.full((4,), 0.25), 4, valid).tolist() == approx([1.0])


# --------------------------------------------------------------------------- missing rewards


def test_nan_rewards_are_excluded_and_counted():
    # Group 0 = [1, nan, 0, nan]: the softmax runs over rows 0 and 2 only -> [e/(e+1), 0, 1/(e+1), 0].
    # Group 1 has no valid reward: all zeros, never NaN. 6 invalid rows, 1 empty group;
    # ess_min is 0 (the empty group), ess_mean is the ESS of group 0 alone.
    rewards = torch.tensor([1.0, NAN, 0.0, NAN, NAN, NAN, NAN, NAN])
    out = DmpoWeighting(alpha=1.0, baseline="negative")(rewards, torch.zeros(8), 4)
    p = math.e / (math.e + 1)
    assert out.weights.tolist() == approx([p, 0, 1 - p, 0, 0, 0, 0, 0])
    # negative baseline [1-p, 0, p, 0]: advantages [2p-1, 0, 1-2p, 0] = [tanh(1/2), 0, -tanh(1/2), 0].
    assert out.advantages.tolist() == approx([math.tanh(0.5), 0, -math.tanh(0.5), 0, 0, 0, 0, 0])
    assert out.valid.tolist() == [True, False, True, False, False, False, False, False]
    assert out.stats["n_invalid"] == 6
    assert out.stats["n_empty_groups"] == 1
    assert out.stats["ess_min"] == 0.0
    assert out.stats["ess_mean"] == approx(1 / (2 * (p**2 + (1 - p) ** 2)))
    for t in (out.weights, out.baseline, out.advantages):
        assert torch.isfinite(t).all()


def test_all_rewards_missing_gives_zero_advantages():
    out = DmpoWeighting(alpha=0.04)(torch.full((4,), NAN), torch.zeros(4), 2)
    assert out.advantages.tolist() == [0.0] * 4
    assert out.weights.tolist() == [0.0] * 4
    assert out.stats["n_empty_groups"] == 2
    assert out.stats["n_invalid"] == 4


def test_bf16_inputs_are_accepted():
    # bf16 rewards [1, 0] are exact; the result equals the float32 one.
    scheme = DmpoWeighting(alpha=0.5)
    a = scheme(torch.tensor([1.0, 0.0], dtype=torch.bfloat16), torch.zeros(2, dtype=torch.bfloat16), 2)
    b = scheme(torch.tensor([1.0, 0.0]), torch.zeros(2), 2)
    assert torch.equal(a.weights, b.weights)
    assert a.weights.dtype == torch.float32


def test_tiny_alpha_overflow_gives_finite_weights():
    # r / alpha overflows float64 for alpha 1e-310: rewards 1e4 and 5e3 both reach +inf, 0 stays 0.
    # The rows at +inf share the weight: [1/3, 0, 1/3, 1/3] (never NaN).
    out = DmpoWeighting(alpha=1e-310, baseline="negative")(torch.tensor([1e4, 0.0, 5e3, 1e4]), torch.zeros(4), 4)
    assert out.weights.tolist() == approx([1 / 3, 0.0, 1 / 3, 1 / 3])
    assert torch.isfinite(out.advantages).all()
    # group_softmax directly: -inf everywhere valid -> uniform over the valid rows.
    w = group_softmax(torch.tensor([-math.inf, -math.inf, 0.0]), 3, torch.tensor([True, True, False]))
    assert w.tolist() == [0.5, 0.5, 0.0]


def test_group_softmax_forms_no_nan_even_in_its_gradient():
    # Group 0 is empty (no valid row), group 1 has a logit at +inf, group 2 is ordinary. The
    # weights are [0, 0], [1, 0] and softmax([0, ln 3]) = [1/4, 3/4]; differentiating through them
    # gives finite gradients (no NaN formed in an unselected torch.where branch).
    logits = torch.tensor([1.0, 2.0, math.inf, 0.0, 0.0, math.log(3)], dtype=torch.float64, requires_grad=True)
    valid = torch.tensor([False, False, True, True, True, True])
    w = group_softmax(logits, 2, valid)
    assert w.tolist() == approx([0.0, 0.0, 1.0, 0.0, 0.25, 0.75])
    (w * torch.arange(6.0, dtype=torch.float64)).sum().backward()
    assert torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------- adaptive coefficient


def test_adaptive_coeff_hits_the_threshold():
    # G 2, alpha 1, rewards [2, 0], log_rnd 0: w1 = sigmoid(2c). ESS = 1/(2(w1^2 + (1-w1)^2)) = 0.7
    # <=> w1^2 - w1 + (1 - 1/1.4)/2 = 0 <=> w1 = (1 + sqrt(1 - 4/7)) / 2 = 0.827327
    # <=> 2c = logit(0.827327) = ln(4.791288) = 1.566799 <=> c = 0.783400.
    w1 = (1 + math.sqrt(1 - 4 / 7)) / 2
    c = math.log(w1 / (1 - w1)) / 2
    out = DmpoWeighting(alpha=1.0, adaptive=True, ess_threshold=0.7)(torch.tensor([2.0, 0.0]), torch.zeros(2), 2)
    assert not out.stats["coeff_fallback"]
    assert out.stats["coeff"] == pytest.approx(c, abs=2e-3)
    assert out.stats["ess_mean"] == pytest.approx(0.7, abs=1e-4)


def test_adaptive_coeff_falls_back_to_the_upper_bound_when_weights_are_spread():
    # Equal rewards: ESS is 1 for every c, above 0.7 -> coeff_max 0.99, fallback reported.
    out = DmpoWeighting(alpha=1.0, adaptive=True)(torch.zeros(4), torch.zeros(4), 2)
    assert out.stats["coeff_fallback"]
    assert out.stats["coeff"] == 0.99


def test_adaptive_coeff_falls_back_to_the_lower_bound_when_weights_collapse():
    # rewards [1000, 0], alpha 1: at c = 0.01 the logits differ by 10, w1 = sigmoid(10) = 0.99995,
    # ESS ~ 0.50005 < 0.7 -> coeff_min 0.01, fallback reported.
    out = DmpoWeighting(alpha=1.0, adaptive=True)(torch.tensor([1000.0, 0.0]), torch.zeros(2), 2)
    assert out.stats["coeff_fallback"]
    assert out.stats["coeff"] == 0.01
    search = adaptive_coeff(torch.tensor([1000.0, 0.0]), 2, torch.tensor([True, True]))
    assert search.fallback and search.coeff == 0.01 and search.ess < 0.7


# --------------------------------------------------------------------------- bad inputs


def test_rewards_of_wrong_rank_raise_shape_error_naming_them():
    with pytest.raises(ShapeError, match=r"rewards=\(2, 2\)") as info:
        DmpoWeighting()(torch.zeros(2, 2), torch.zeros(4), 2)
    assert info.value.name == "rewards"


def test_log_rnd_of_wrong_length_raises_shape_error():
    with pytest.raises(ShapeError, match=r"log_rnd=\(3,\)") as info:
        DmpoWeighting()(torch.zeros(4), torch.zeros(3), 2)
    assert info.value.name == "log_rnd" and info.value.value == (3,)


def test_integer_rewards_raise_shape_error_naming_the_dtype():
    with pytest.raises(ShapeError, match=r"rewards=torch\.int64"):
        DmpoWeighting()(torch.zeros(4, dtype=torch.long), torch.zeros(4), 2)


def test_rewards_not_a_tensor_raise_shape_error():
    with pytest.raises(ShapeError, match=r"rewards='list'"):
        DmpoWeighting()([0.0, 1.0], torch.zeros(2), 2)


@pytest.mark.parametrize("group_size", [3, 0, -2, True, 2.0])
def test_group_size_not_dividing_the_batch_raises(group_size):
    with pytest.raises(InvalidArgumentError, match=rf"group_size={group_size!r}") as info:
        DmpoWeighting()(torch.zeros(4), torch.zeros(4), group_size)
    assert info.value.name == "group_size"


def test_infinite_reward_raises_naming_the_entry():
    with pytest.raises(InvalidArgumentError, match=r"rewards=inf: entry 1 is infinite"):
        DmpoWeighting()(torch.tensor([0.0, math.inf]), torch.zeros(2), 2)


def test_nan_log_rnd_raises():
    with pytest.raises(InvalidArgumentError, match=r"log_rnd=nan: entry 0 is non-finite"):
        DmpoWeighting()(torch.zeros(2), torch.tensor([NAN, 0.0]), 2)


def test_missing_log_rnd_with_positive_alpha_raises():
    with pytest.raises(InvalidArgumentError, match=r"log_rnd=None"):
        DmpoWeighting(alpha=0.04)(torch.zeros(2), None, 2)


def test_unbiased_baseline_without_current_logp_raises():
    with pytest.raises(InvalidArgumentError, match=r"log_p_current=None"):
        DmpoWeighting(baseline="unbiased")(torch.zeros(2), torch.zeros(2), 2)


@pytest.mark.parametrize("alpha", [-1.0, -1e-9, math.nan, math.inf])
def test_bad_alpha_raises_config_error_naming_it(alpha):
    with pytest.raises(ConfigError, match=rf"alpha={alpha!r}"):
        DmpoWeighting(alpha=alpha)


@pytest.mark.parametrize("coeff", [0.0, -0.5, 1.5, math.nan])
def test_coeff_outside_zero_one_raises_config_error_naming_it(coeff):
    with pytest.raises(ConfigError, match=rf"coeff={coeff!r}"):
        DmpoWeighting(coeff=coeff)


def test_config_reports_all_problems_at_once():
    with pytest.raises(ConfigError) as info:
        DmpoWeighting(alpha=-1.0, coeff=2.0, baseline="bogus", ess_threshold=0.0)
    text = str(info.value)
    for needle in ("alpha=-1.0", "coeff=2.0", "baseline='bogus'", "ess_threshold=0.0"):
        assert needle in text
    assert len(info.value.problems) == 4


def test_coeff_bounds_must_be_ordered():
    with pytest.raises(ConfigError, match=r"coeff_min=0\.5"):
        DmpoWeighting(coeff_min=0.5, coeff_max=0.4)
    with pytest.raises(InvalidArgumentError, match=r"coeff_min=0\.5"):
        adaptive_coeff(torch.zeros(2), 2, torch.ones(2, dtype=torch.bool), low=0.5, high=0.4)


@pytest.mark.parametrize("lam", [math.inf, -1.0, math.nan, "1"])
def test_bad_baseline_strength_raises_config_error_naming_it(lam):
    with pytest.raises(ConfigError, match=rf"lam={lam!r}"):
        DmpoWeighting(lam=lam)


@pytest.mark.parametrize("threshold", [0.0, 1.5, "0.7"])
def test_bad_ess_threshold_raises_config_error_naming_it(threshold):
    with pytest.raises(ConfigError, match=rf"ess_threshold={threshold!r}"):
        DmpoWeighting(adaptive=True, ess_threshold=threshold)
