"""Unit tests of masks, estimators and losses: hand-computed values and the bad-input contract."""

from __future__ import annotations

import math

import pytest
import torch

from dmpo_core.data import RolloutBatch
from dmpo_core.errors import InvalidArgumentError, ShapeError
from dmpo_core.objective import (
    DdoObjective,
    DmpoWeighting,
    WdceObjective,
    dce_per_row,
    ddo_loss,
    elbo_from_logp,
    mask_ratios,
    masked_token_logp,
    noisy_inputs,
    paired_elbo,
    sample_masks,
    wdce_loss,
)

MASK = 9  # mask id of the fake model (vocabulary 10)


class UniformLogits:
    """Logits that are all equal: every token has log-prob -ln V at every position."""

    def __init__(self, vocab: int = 10) -> None:
        self.vocab = vocab
        self.weight = torch.zeros((), requires_grad=True)  # a parameter, so losses have a gradient
        self.mask_id = MASK

    def logits(self, input_ids, attention_mask, *, last=None):
        out = torch.zeros(*input_ids.shape, self.vocab) + self.weight  # [N, S, V]
        return out if last is None else out[:, -last:]  # [N, S', V]

    __call__ = logits


def make_batch(n: int = 4, group_size: int = 2, p: int = 3, length: int = 5, seed: int = 0) -> RolloutBatch:
    gen = torch.Generator().manual_seed(seed)
    return RolloutBatch(
        prompt_ids=torch.randint(0, MASK, (n, p), generator=gen),
        prompt_mask=torch.ones(n, p, dtype=torch.bool),
        completion_ids=torch.randint(0, MASK, (n, length), generator=gen),
        eligible=torch.ones(n, length, dtype=torch.bool),
        rewards=torch.rand(n, generator=gen),
        group_size=group_size,
        log_p_old=-torch.rand(n, generator=gen) * 5,
        log_p_ref=-torch.rand(n, generator=gen) * 5,
    )


# --------------------------------------------------------------------------- masks


def test_clamped_ratios_lie_in_point_one_to_one():
    t = mask_ratios(50, 40, clamp=True, generator=torch.Generator().manual_seed(0))  # [D, N]
    assert t.shape == (50, 40)
    assert float(t.min()) >= 0.1 and float(t.max()) < 1.0
    u = mask_ratios(50, 40, clamp=False, generator=torch.Generator().manual_seed(0))
    # clamp maps t to 0.1 + 0.9 t with the same draws
    torch.testing.assert_close(t, 0.1 + 0.9 * u)


def test_antithetic_pairs_are_complementary_over_eligible():
    # Row 0: positions 0..2 eligible (tail after an EOS is not); row 1: nothing eligible.
    eligible = torch.tensor([[True, True, True, False], [False, False, False, False]])
    masks = sample_masks(eligible, 4, antithetic=True, generator=torch.Generator().manual_seed(1))  # [4, 2, 4]
    assert masks.shape == (4, 2, 4) and masks.dtype == torch.bool
    for k in (0, 2):
        assert torch.equal(masks[k] ^ masks[k + 1], eligible)  # each eligible token masked exactly once
        assert not (masks[k] & masks[k + 1]).any()
    assert not masks[:, 1].any()


def test_independent_masks_stay_within_eligible_and_are_reproducible():
    eligible = torch.rand(6, 20, generator=torch.Generator().manual_seed(2)) < 0.5
    a = sample_masks(eligible, 3, antithetic=False, generator=torch.Generator().manual_seed(3))
    b = sample_masks(eligible, 3, antithetic=False, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not (a & ~eligible).any()


def test_noisy_inputs_keep_the_prompt_and_mask_completion_positions():
    # Prompt [1, 2], completion [3, 4, 5], masks r0 = [T, F, T], r1 = [F, T, F]:
    # rows [1, 2, M, 4, M] and [1, 2, 3, M, 5].
    masks = torch.tensor([[[True, False, True]], [[False, True, False]]])  # [2, 1, 3]
    out = noisy_inputs(torch.tensor([[1, 2]]), torch.tensor([[3, 4, 5]]), masks, MASK)
    assert out.tolist() == [[1, 2, MASK, 4, MASK], [1, 2, 3, MASK, 5]]


@pytest.mark.parametrize("replicates", [3, 1, 7])
def test_odd_replicates_with_antithetic_masks_raise(replicates):
    with pytest.raises(InvalidArgumentError, match=rf"replicates={replicates}") as info:
        sample_masks(torch.ones(2, 3, dtype=torch.bool), replicates, antithetic=True)
    assert info.value.name == "replicates"
    with pytest.raises(InvalidArgumentError, match=rf"replicates={replicates}"):
        WdceObjective(replicates=replicates)
    with pytest.raises(InvalidArgumentError, match=rf"replicates={replicates}"):
        DdoObjective(replicates=replicates)


def test_zero_replicates_raise():
    with pytest.raises(InvalidArgumentError, match=r"replicates=0"):
        sample_masks(torch.ones(2, 3, dtype=torch.bool), 0, antithetic=False)


# --------------------------------------------------------------------------- estimators


def test_dce_is_the_mean_negative_logp_over_masked_tokens():
    # Row 0 masks tokens with log-probs -1 and -2: DCE = (1 + 2) / 2 = 1.5.
    # Row 1 masks nothing: m is clamped to 1 and the DCE is 0.
    logp = torch.tensor([[[-1.0, -2.0, 0.0], [0.0, 0.0, 0.0]]])  # [1, 2, 3]
    masks = torch.tensor([[[True, True, False], [False, False, False]]])
    assert dce_per_row(logp, masks).tolist() == [[1.5, 0.0]]


def test_elbo_averages_rescaled_replicates():
    # L = 4 eligible. Replicate 0 masks 2 tokens with log-probs -1, -1: (4/2) * (-2) = -4.
    # Replicate 1 masks the other 2 with -0.5, -0.5: (4/2) * (-1) = -2. ELBO = (-4 - 2) / 2 = -3.
    logp = torch.tensor([[[-1.0, -1.0, 0.0, 0.0]], [[0.0, 0.0, -0.5, -0.5]]])  # [2, 1, 4]
    masks = torch.tensor([[[True, True, False, False]], [[False, False, True, True]]])
    assert elbo_from_logp(logp, masks, torch.ones(1, 4, dtype=torch.bool)).tolist() == [-3.0]


def test_masked_token_logp_of_uniform_logits_is_minus_log_v():
    # Uniform logits over V = 10: log p = -ln 10 at masked positions, 0 elsewhere.
    batch = make_batch()
    masks = sample_masks(batch.eligible, 2, generator=torch.Generator().manual_seed(0))  # [2, 4, 5]
    logp = masked_token_logp(UniformLogits(), batch.prompt_ids, batch.prompt_mask, batch.completion_ids, masks, MASK)
    expected = torch.where(masks, torch.tensor(-math.log(10.0)), torch.tensor(0.0))
    torch.testing.assert_close(logp, expected)


def test_paired_elbo_of_identical_models_gives_zero_log_rnd():
    # Shared masks (common random numbers): the same model twice gives exactly equal ELBOs.
    batch = make_batch()
    model = UniformLogits()
    cur, ref = paired_elbo(
        model, model, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, batch.eligible, MASK,
        generator=torch.Generator().manual_seed(0),
    )
    assert torch.equal(cur, ref)
    # Each replicate with m_r > 0 masked tokens adds (L/m_r) * m_r * (-ln 10) = -5 ln 10; an empty
    # replicate (the antithetic complement of a full mask) adds 0. ELBO = mean over the R = 4.
    masks = sample_masks(batch.eligible, 4, generator=torch.Generator().manual_seed(0))  # [R, N, L], same draws
    nonempty = masks.any(dim=-1).float()  # [R, N]
    torch.testing.assert_close(cur, -5 * math.log(10.0) * nonempty.mean(dim=0))


# --------------------------------------------------------------------------- losses


def test_wdce_loss_by_hand():
    # B 1, G 2, R 2. Token log-probs make DCE[r, j] = [[1, 2], [3, 4]] (one masked token each).
    # Advantages [0.75, -0.25]: loss = (0.75*1 - 0.25*2 + 0.75*3 - 0.25*4) / (R*B) = 1.5 / 2 = 0.75.
    masks = torch.tensor([[[True], [True]], [[True], [True]]])  # [2, 2, 1]
    logp = -torch.tensor([[[1.0], [2.0]], [[3.0], [4.0]]])
    loss, stats = wdce_loss(logp, masks, torch.tensor([0.75, -0.25]), num_groups=1)
    assert float(loss) == pytest.approx(0.75)
    assert stats["dce_mean"] == pytest.approx(2.5)  # (1 + 2 + 3 + 4) / 4
    assert stats["masked_fraction"] == 1.0


def test_wdce_loss_bad_shapes_and_groups_raise():
    masks = torch.ones(2, 3, 4, dtype=torch.bool)
    with pytest.raises(ShapeError, match=r"advantages=\(2,\)"):
        wdce_loss(torch.zeros(2, 3, 4), masks, torch.zeros(2), 1)
    with pytest.raises(ShapeError, match=r"token_logp=\(2, 3, 5\)"):
        wdce_loss(torch.zeros(2, 3, 5), masks, torch.zeros(3), 1)
    with pytest.raises(InvalidArgumentError, match=r"num_groups=0"):
        wdce_loss(torch.zeros(2, 3, 4), masks, torch.zeros(3), 0)


def test_ddo_loss_by_hand():
    # g = g' = 0, w = 1, beta 1, alpha_ddo 1, one row: -log sigmoid(0) - log sigmoid(0) = 2 ln 2.
    loss, extra = ddo_loss(torch.zeros(1), torch.zeros(1), torch.ones(1), beta=1.0, alpha_ddo=1.0, num_rows=1)
    assert float(loss) == pytest.approx(2 * math.log(2))
    assert extra == {"ddo_pos": pytest.approx(math.log(2)), "ddo_neg": pytest.approx(math.log(2))}


def test_ddo_loss_bad_shapes_raise():
    with pytest.raises(ShapeError, match=r"weights=\(3,\)"):
        ddo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(3), beta=1.0, alpha_ddo=1.0, num_rows=2)
    with pytest.raises(InvalidArgumentError, match=r"num_rows=0"):
        ddo_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), beta=1.0, alpha_ddo=1.0, num_rows=0)


def test_wdce_loss_of_group_aligned_slices_adds_up():
    # The loss is a sum over rows divided by R * B of the FULL batch, so the two one-group
    # slices (passing the full B = 2) add up to the loss of the whole batch.
    gen = torch.Generator().manual_seed(4)
    masks = torch.rand(2, 4, 6, generator=gen) < 0.5  # [R, N, L]
    logp = -torch.rand(2, 4, 6, generator=gen) * masks  # [R, N, L]
    adv = torch.tensor([0.7, -0.2, 0.1, -0.6])  # [N]
    full = wdce_loss(logp, masks, adv, num_groups=2)[0]
    halves = (slice(0, 2), slice(2, 4))
    parts = sum(wdce_loss(logp[:, rows], masks[:, rows], adv[rows], num_groups=2)[0] for rows in halves)
    assert float(parts) == pytest.approx(float(full), rel=1e-6)


def test_wdce_objective_matches_the_formula_and_has_a_gradient():
    # Uniform logits: DCE = ln 10 for a replicate with a masked token, 0 for an empty one.
    # loss = sum_r sum_j a_j DCE_rj / (R B), with the masks the objective draws from the seed.
    batch = make_batch(n=4, group_size=2)
    weights = DmpoWeighting(alpha=0.5, baseline="negative")(batch.rewards, batch.log_rnd, 2)
    policy = UniformLogits()
    gen = torch.Generator().manual_seed(5)
    loss, _ = WdceObjective(replicates=4)(policy, batch, weights, num_groups=2, generator=gen)
    masks = sample_masks(batch.eligible, 4, generator=torch.Generator().manual_seed(5))  # [R, N, L], same draws
    dce = math.log(10.0) * masks.any(dim=-1).double()  # [R, N]
    expected = float((weights.advantages.double()[None] * dce).sum() / (4 * 2))
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6, abs=1e-7)
    loss.backward()
    assert policy.weight.grad is not None


def test_wdce_objective_uses_the_unbiased_baseline_at_loss_time():
    # The unbiased baseline reads ELBO_theta from the loss's own forward. With uniform logits and
    # no empty mask (checked below for this seed), every row has the same ELBO, so the baseline
    # is uniform like the weights (equal rewards): advantages and loss are zero. The advantages
    # stored in `weights` (computed with a skewed log_p_current) are NOT used.
    batch = make_batch(n=2, group_size=2, length=16)
    batch = RolloutBatch(
        prompt_ids=batch.prompt_ids, prompt_mask=batch.prompt_mask, completion_ids=batch.completion_ids,
        eligible=batch.eligible, rewards=torch.zeros(2), group_size=2,
        log_p_old=torch.zeros(2), log_p_ref=torch.zeros(2),
    )
    # An antithetic complement is empty when its partner masks everything (ratio 0.1 + 0.9 t near 1),
    # so pick the first seed whose masks are all non-empty.
    seed = next(
        s for s in range(100)
        if sample_masks(batch.eligible, 4, generator=torch.Generator().manual_seed(s)).any(dim=-1).all()
    )
    scheme = DmpoWeighting(alpha=1.0, baseline="unbiased")
    stale = scheme(batch.rewards, batch.log_rnd, 2, log_p_current=torch.tensor([3.0, 0.0]), log_p_old=torch.zeros(2))
    assert stale.advantages.abs().sum() > 0.1
    loss, _ = WdceObjective()(UniformLogits(), batch, stale, num_groups=1, weighting=scheme,
                              generator=torch.Generator().manual_seed(seed))
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)


def test_ddo_objective_needs_log_p_old():
    batch = make_batch()
    batch = RolloutBatch(
        prompt_ids=batch.prompt_ids, prompt_mask=batch.prompt_mask, completion_ids=batch.completion_ids,
        eligible=batch.eligible, rewards=batch.rewards, group_size=2,
    )
    weights = DmpoWeighting(alpha=0.0)(batch.rewards, None, 2)
    with pytest.raises(InvalidArgumentError, match=r"batch\.log_p_old=None"):
        DdoObjective()(UniformLogits(), batch, weights, num_groups=2)


def test_rollout_batch_checks_shapes_and_group_size():
    batch = make_batch()
    with pytest.raises(ShapeError, match=r"rewards=\(3,\)"):
        RolloutBatch(
            prompt_ids=batch.prompt_ids, prompt_mask=batch.prompt_mask, completion_ids=batch.completion_ids,
            eligible=batch.eligible, rewards=torch.zeros(3), group_size=2,
        )
    with pytest.raises(InvalidArgumentError, match=r"group_size=3"):
        RolloutBatch(
            prompt_ids=batch.prompt_ids, prompt_mask=batch.prompt_mask, completion_ids=batch.completion_ids,
            eligible=batch.eligible, rewards=batch.rewards, group_size=3,
        )


def test_negative_cap_stops_pushing_badly_rewarded_completions_past_the_cap():
    import torch

    from dmpo_core.objective.wdce import WdceObjective, wdce_loss

    # two rows, one replicate; row 0 advantage +0.5 with DCE 1, row 1 advantage -0.5 with DCE 3
    logp = torch.tensor([[[-1.0, -1.0], [-3.0, -3.0]]], requires_grad=True)  # [R=1, N=2, L=2]
    masks = torch.ones(1, 2, 2, dtype=torch.bool)
    adv = torch.tensor([0.5, -0.5])
    plain, _ = wdce_loss(logp, masks, adv, num_groups=1)
    assert float(plain.detach()) == pytest.approx(0.5 * 1 - 0.5 * 3)  # -1.0
    capped, _ = wdce_loss(logp, masks, adv, num_groups=1, negative_cap=2.0)
    assert float(capped.detach()) == pytest.approx(0.5 * 1 - 0.5 * 2)  # the bad row counts as DCE 2
    capped.backward()
    assert torch.all(logp.grad[0, 1] == 0)  # past the cap: no further push
    assert torch.all(logp.grad[0, 0] != 0)  # the good row still learns
    same, _ = wdce_loss(logp, masks, adv, num_groups=1, negative_cap=10.0)
    assert float(same.detach()) == pytest.approx(float(plain.detach()))  # a cap above every DCE changes nothing
    with pytest.raises(InvalidArgumentError, match="negative_cap"):
        WdceObjective(negative_cap=-1.0)
