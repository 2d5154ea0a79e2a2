"""DiFFPO: the two-stage surrogate against a per-token loop reference, the loss against a loop
reference of its formula, and a unit test per term (the IS clipping, the threshold action)
that fails when the term is removed. (The ``grpo`` weighting DiFFPO runs with passes the
universal weighting laws in test_grpo.py.)"""

from __future__ import annotations

import math

import attrs
import pytest
import torch

from dmpo_core.data import RolloutBatch
from dmpo_core.errors import ConfigError
from dmpo_core.objective.diffpo import (
    DiffpoObjective,
    diffpo_token_loss,
    draw_splits,
    nfe_aware_advantages,
    step_ranks,
    threshold_action_loss,
    two_stage_token_logp,
)
from dmpo_core.objective.grpo import GroupNormalisedWeighting
from dmpo_core.samplers.threshold_action import (
    ThresholdActionSampler,
    default_action_ids,
    per_row_entropy_bound_rule,
    row_forward_counts,
)
from tests.training.fakes import MASK, FakePolicy


def test_step_ranks_by_hand():
    # row 0 committed at global steps 3, 5, 5, -1 (prefilled): its steps are 3 and 5 -> ranks 0, 1, 1, -1
    # row 1 at steps 0, 2, 4, 6: ranks 0, 1, 2, 3
    rank, count = step_ranks(torch.tensor([[3, 5, 5, -1], [0, 2, 4, 6]]))
    assert rank.tolist() == [[0, 1, 1, -1], [0, 1, 2, 3]] and count.tolist() == [2, 4]


def test_splits_leave_both_stages_non_empty():
    counts = torch.tensor([1, 2, 5, 0])
    s = draw_splits(counts, 200, "uniform", torch.Generator().manual_seed(0))  # [I, N]
    assert (s[:, 0] == 0).all() and (s[:, 3] == 0).all()  # one step or none: no split
    assert (s[:, 1] == 1).all()  # two steps: z holds the first
    assert set(s[:, 2].tolist()) == {1, 2, 3, 4}  # 1..T-1
    assert draw_splits(counts, 1, "middle", torch.Generator()).tolist() == [[0, 1, 2, 0]]


def _loop_surrogate(policy_logits, prompt, pmask, noise, comp, commit, in_z) -> list[list[float]]:
    """Per row and token, one forward of that row alone with the input its stage prescribes."""
    out = []
    for j in range(comp.shape[0]):
        row = []
        for l_ in range(comp.shape[1]):
            p = [MASK if (noise[j, k] and pmask[j, k]) else int(prompt[j, k]) for k in range(prompt.shape[1])]
            if in_z[j, l_]:  # stage 1: only the prefilled tokens visible
                c = [int(comp[j, m]) if commit[j, m] < 0 else MASK for m in range(comp.shape[1])]
            else:  # stage 2: z visible
                c = [int(comp[j, m]) if (commit[j, m] < 0 or in_z[j, m]) else MASK for m in range(comp.shape[1])]
            ids = torch.tensor([p + c])
            attn = torch.cat([pmask[j:j + 1], torch.ones(1, len(c), dtype=torch.bool)], dim=1)
            logits = policy_logits(ids, attn, last=len(c))[0, l_].double().tolist()
            logits[MASK] = -math.inf
            lse = math.log(sum(math.exp(v) for v in logits if v > -math.inf))
            row.append(logits[int(comp[j, l_])] - lse)
        out.append(row)
    return out


def _fixed_trajectory(seed=0):
    g = torch.Generator().manual_seed(seed)
    n, p, length = 4, 3, 5
    prompt = torch.randint(0, 10, (n, p), generator=g)
    pmask = torch.ones(n, p, dtype=torch.bool)
    pmask[0, 0] = False
    comp = torch.randint(0, 10, (n, length), generator=g)
    commit = torch.tensor([[0, 0, 1, 2, -1], [0, 1, 1, 3, 3], [2, 0, 1, 1, 0], [0, 0, 0, 0, 0]])
    return prompt, pmask, comp, commit


def test_two_stage_surrogate_equals_a_per_token_loop_reference():
    policy = FakePolicy(seed=1)
    prompt, pmask, comp, commit = _fixed_trajectory()
    rank, counts = step_ranks(commit)
    splits = torch.tensor([1, 2, 2, 0])  # row 3 took one step: no split, all scored given the prompt only
    in_z = (rank >= 0) & (rank < splits[:, None])
    noise = torch.rand(4, 3, generator=torch.Generator().manual_seed(2)) < 0.5
    got = two_stage_token_logp(policy.logits, prompt, pmask, noise, comp, commit, in_z, MASK)
    want = _loop_surrogate(policy.logits, prompt, pmask, noise, comp, commit, in_z)
    torch.testing.assert_close(got.double(), torch.tensor(want, dtype=torch.float64), atol=1e-6, rtol=0)
    # both stages occur, and the stage matters (a model whose logits depend on the visible tokens)
    assert in_z.any() and (~in_z & (commit >= 0)).any()
    all_first = two_stage_token_logp(policy.logits, prompt, pmask, noise, comp, commit, torch.ones_like(in_z), MASK)
    assert not torch.allclose(all_first[~in_z], got[~in_z])


def reference_token_loss(logp, old, ref, mu, adv, elig, num_rows, eps, beta, c) -> float:
    total = 0.0
    for j in range(len(adv)):
        terms = []
        for l_ in range(len(logp[j])):
            if not elig[j][l_]:
                continue
            w = min(math.exp(old[j][l_] - mu[j][l_]), c)
            rho = math.exp(logp[j][l_] - old[j][l_])
            term = -w * min(rho * adv[j], min(max(rho, 1 - eps), 1 + eps) * adv[j])
            d = ref[j][l_] - logp[j][l_]
            terms.append(term + beta * (math.exp(d) - d - 1))
        total += sum(terms) / max(len(terms), 1)
    return total / num_rows


def reference_action_loss(logp, old, rewards, nfe, length, g, penalty, eps, coef, num_rows, geps) -> float:
    total = 0.0
    for start in range(0, len(rewards), g):
        shaped = [rewards[k] - penalty * nfe[k] / length for k in range(start, start + g)]
        mean = sum(shaped) / g
        std = math.sqrt(sum((s - mean) ** 2 for s in shaped) / (g - 1))
        for k, s in zip(range(start, start + g), shaped):
            a = (s - mean) / (std + geps)
            rho = math.exp(logp[k] - old[k])
            total += -min(rho * a, min(max(rho, 1 - eps), 1 + eps) * a)
    return coef * total / num_rows


def test_losses_equal_the_loop_references():
    g = torch.Generator().manual_seed(3)
    logp = -torch.rand(6, 5, generator=g, dtype=torch.float64) * 3
    old = logp + (torch.rand(6, 5, generator=g, dtype=torch.float64) - 0.5)
    ref = logp + (torch.rand(6, 5, generator=g, dtype=torch.float64) - 0.5)
    mu = old + (torch.rand(6, 5, generator=g, dtype=torch.float64) * 2 - 1.2)  # IS weights e^-0.8 .. e^1.2
    adv = torch.randn(6, generator=g, dtype=torch.float64)
    elig = torch.rand(6, 5, generator=g) > 0.3
    loss, stats = diffpo_token_loss(logp, old, ref, mu, adv, elig, 8, epsilon=0.2, beta=0.04, is_clip=2.0)
    want = reference_token_loss(logp.tolist(), old.tolist(), ref.tolist(), mu.tolist(), adv.tolist(), elig.tolist(),
                                8, 0.2, 0.04, 2.0)
    assert float(loss) == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert 0 < stats["is_clip_fraction"] < 1 and 0 < stats["clip_fraction"] < 1
    a_logp = -torch.rand(6, generator=g, dtype=torch.float64)
    a_old = a_logp + (torch.rand(6, generator=g, dtype=torch.float64) - 0.5)
    rewards, nfe = torch.tensor([1.0, 0.1, 1.0, 0.0, 0.1, 1.0]), torch.tensor([3.0, 9.0, 5.0, 2.0, 4.0, 4.0])
    adv2 = nfe_aware_advantages(rewards, nfe, 16, 3, nfe_penalty=0.2, eps=1e-4)
    act, _ = threshold_action_loss(a_logp, a_old, adv2, 6, epsilon=0.2, coef=0.5)
    want = reference_action_loss(a_logp.tolist(), a_old.tolist(), rewards.tolist(), nfe.tolist(), 16, 3, 0.2, 0.2,
                                 0.5, 6, 1e-4)
    assert float(act) == pytest.approx(want, rel=1e-6)


def test_the_is_weight_is_truncated_at_is_clip():
    # ratio 1, advantage +1, one token per row. Row 0: q_old/mu = e^2 = 7.39 > is_clip 2 -> the gradient
    # of logp is -2 (truncated); row 1: q_old/mu = e^-1 -> gradient -e^-1. Without the truncation row 0's
    # gradient would be -7.39; without the IS weight at all both would be -1.
    logp = torch.zeros(2, 1, requires_grad=True)
    mu = torch.tensor([[-2.0], [1.0]])
    loss, stats = diffpo_token_loss(logp, torch.zeros(2, 1), None, mu, torch.ones(2), torch.ones(2, 1, dtype=torch.bool),
                                    1, epsilon=0.2, beta=0.0, is_clip=2.0)
    loss.backward()
    assert logp.grad[:, 0].tolist() == pytest.approx([-2.0, -math.exp(-1)])
    assert stats["is_clip_fraction"] == 0.5


def test_per_row_entropy_budget_sets_how_many_positions_a_step_commits():
    entropy = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]], dtype=torch.float64)
    cand = torch.ones(2, 4, dtype=torch.bool)
    picked = per_row_entropy_bound_rule(torch.tensor([0.0, 0.35]))(torch.zeros(2, 4), entropy, cand)
    # row 0: budget 0 -> only the lowest; row 1: prefix sums minus max: 0, 0.1, 0.3, 0.6 -> three within 0.35
    assert picked.tolist() == [[True, False, False, False], [True, True, True, False]]
    assert default_action_ids(15, 4, 12) == [10, 11, 13, 14]
    assert row_forward_counts(torch.tensor([[0, 0, 2, -1], [0, 1, 2, 3]]), 4).tolist() == [2, 4]


def _favouring(policy: FakePolicy, token: int):
    """The policy's logits with token ``token`` raised by 5 at the first completion position only."""

    def logits_fn(ids, attn, *, last=None):
        out = policy.logits(ids, attn, last=last).clone()
        out[:, 0, token] += 5.0
        return out

    return logits_fn


def test_the_sampler_takes_the_policys_action_and_a_larger_budget_needs_fewer_forwards():
    sampler = ThresholdActionSampler(gen_length=8, block_length=8, temperature=0.0, gammas=(0.0, 100.0))
    ids = [13, 14]  # action 0 <- token 13, action 1 <- token 14
    prompt = torch.randint(0, 10, (3, 4), generator=torch.Generator().manual_seed(0))
    pmask = torch.ones(3, 4, dtype=torch.bool)
    policy, outs = FakePolicy(seed=0), {}
    for favoured in (0, 1):
        out = sampler(_favouring(policy, ids[favoured]), prompt, pmask, mask_id=MASK)
        assert out.records["threshold_action"].tolist() == [favoured] * 3  # greedy: the most likely action
        assert out.records["action_ids"].tolist() == [ids] * 3
        assert out.token_logp is not None and out.commit_step is not None and sampler.returns_logp
        outs[favoured] = out
    # gamma 100: every position in one step (1 forward + the action's). gamma 0: the lowest-entropy position,
    # plus the most confident one when that differs (adaptive_decode's guard), so at least 8 / 2 + 1 forwards
    assert outs[1].records["row_nfe"].tolist() == [2.0] * 3 and outs[1].nfe == 2
    slow = outs[0].records["row_nfe"]
    assert (slow >= 5).all() and outs[0].nfe == int(slow.max())
    assert slow.tolist() == (row_forward_counts(outs[0].commit_step, outs[0].nfe - 1) + 1).float().tolist()


def _rollout(policy, sampler, n_groups=2, g=3, seed=0):
    prompt = torch.randint(0, 10, (n_groups, 4), generator=torch.Generator().manual_seed(seed))
    prompt = prompt.repeat_interleave(g, dim=0)
    pmask = torch.ones_like(prompt, dtype=torch.bool)
    out = sampler(policy.logits, prompt, pmask, mask_id=MASK, generator=torch.Generator().manual_seed(seed))
    extras = {"sampler/token_logp": out.token_logp, "sampler/commit_step": out.commit_step,
              **{f"sampler/{k}": v for k, v in out.records.items()}}
    rewards = torch.rand(prompt.shape[0], generator=torch.Generator().manual_seed(seed + 1))
    return RolloutBatch(prompt_ids=prompt, prompt_mask=pmask, completion_ids=out.completion_ids,
                        eligible=torch.ones_like(out.completion_ids, dtype=torch.bool), rewards=rewards,
                        group_size=g, extras=extras)


SAMPLER = ThresholdActionSampler(gen_length=6, block_length=6, temperature=1.0, gammas=(0.0, 0.5, 5.0))


def test_before_any_update_every_ratio_is_one_and_slices_add_up():
    policy = FakePolicy(seed=0)
    batch = _rollout(policy, SAMPLER)
    objective = DiffpoObjective()
    extras = objective.prepare(policy, batch, num_iterations=2, generator=torch.Generator().manual_seed(0))
    batch = attrs.evolve(batch, extras={**batch.extras, **extras})
    weights = GroupNormalisedWeighting()(batch.rewards, None, 3)
    for i in range(2):
        loss, stats = objective(policy, batch, weights, num_groups=2, iteration=i)
        assert stats["ratio_mean"] == pytest.approx(1.0, abs=1e-6) and stats["kl_mean"] == pytest.approx(0, abs=1e-6)
        assert stats["action_ratio_mean"] == pytest.approx(1.0, abs=1e-5)
        assert extras["diffpo_in_z"][:, i].any()  # the intermediate state is not empty
        halves = [objective(policy, *(b.rows(slice(k * 3, k * 3 + 3)) for b in (batch,)),
                            weights.rows(slice(k * 3, k * 3 + 3)), num_groups=2, iteration=i)[0] for k in (0, 1)]
        assert float((halves[0] + halves[1]).detach()) == pytest.approx(float(loss.detach()), abs=1e-6)
    assert objective.needs == frozenset({"trajectory"})


def test_the_threshold_action_is_trained_toward_fewer_forwards_at_equal_reward():
    # Equal rewards: the token advantages are 0, so every gradient on the action logits comes from the
    # action term, whose NFE-aware advantage favours the rows that used fewer forwards.
    policy = FakePolicy(seed=0)
    batch = _rollout(policy, SAMPLER, seed=3)  # groups drew actions [2, 1, 2] and [0, 2, 2], NFE [3, 6, 4], [6, 3, 4]
    batch = attrs.evolve(batch, rewards=torch.ones(6))
    extras = DiffpoObjective().prepare(policy, batch, num_iterations=1, generator=torch.Generator().manual_seed(0))
    batch = attrs.evolve(batch, extras={**batch.extras, **extras})
    nfe = batch.extras["sampler/row_nfe"]
    actions = batch.extras["sampler/threshold_action"].view(2, 3)
    assert all(len(set(g.tolist())) > 1 for g in actions), "each group must try several actions for this test"
    weights = GroupNormalisedWeighting()(batch.rewards, None, 3)
    assert (weights.advantages == 0).all()
    grads = {}
    for coef in (1.0, 0.0):
        policy.model.zero_grad()
        loss, stats = DiffpoObjective(action_coef=coef, beta=0.0)(policy, batch, weights, num_groups=2)
        loss.backward()
        grads[coef] = policy.model.head.bias.grad.clone()
    ids = batch.extras["sampler/action_ids"][0]
    assert grads[0.0][ids].abs().max() == 0.0  # without the action term nothing trains the threshold
    # gradient descent step on the action logits: -grad; the action of the fewest-forward row must gain
    step = -grads[1.0][ids]
    best = batch.extras["sampler/threshold_action"][int(nfe.argmin())]
    worst = batch.extras["sampler/threshold_action"][int(nfe.argmax())]
    assert best != worst and step[best] > step[worst]


@pytest.mark.parametrize("options", [{"is_clip": 0}, {"epsilon": 0}, {"nfe_penalty": -1}, {"split": "end"},
                                     {"p_mask_prompt": 1.0}, {"action_coef": math.nan}])
def test_bad_objective_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        DiffpoObjective(**options)


@pytest.mark.parametrize("options", [{"gammas": ()}, {"gammas": (-1.0,)}, {"action_token_ids": (1, 2)},
                                     {"action_position": 128}])
def test_bad_sampler_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        ThresholdActionSampler(**options)
