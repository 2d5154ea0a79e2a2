"""ROAR (exact per-token log-probs), Fast-dLLM thresholds and the entropy-bounded sampler."""

from __future__ import annotations

import math

import torch
from sampler_fakes import (
    ContextLogits,
    TableLogits,
    answer_table,
    commits_per_step,
    prompt,
)

from dmpo_core.samplers import (
    EntropyBoundedSampler,
    FastDllmSampler,
    RoarSampler,
    trajectory_logp,
)

V = 10
MASK = 9


def _masked_log_softmax(logits: torch.Tensor) -> torch.Tensor:
    logits = logits.double().clone()
    logits[..., MASK] = -math.inf
    return torch.log_softmax(logits, -1)


def test_roar_commits_one_token_per_step_and_nfe_is_the_length():
    fake = TableLogits(answer_table([1, 2, 3, 4, 5, 6], V))
    ids, mask = prompt(5)
    out = RoarSampler(gen_length=6, block_length=3, temperature=0.0)(
        fake, ids, mask, mask_id=MASK, generator=torch.Generator().manual_seed(0)
    )
    assert out.nfe == 6
    assert out.completion_ids.tolist() == [[1, 2, 3, 4, 5, 6]] * 5
    steps = commits_per_step(fake, out.completion_ids, MASK)
    assert all(c.sum(1).tolist() == [1] * 5 for c in steps)
    assert all(not c[:, 3:].any() for c in steps[:3])  # block 0 first


def test_roar_token_logp_is_the_log_prob_of_the_chosen_token_under_the_fake_model():
    # the fake's logits depend on how many tokens are committed, so each token's log-prob is
    # that of the state it was drawn in: recompute it by hand from the commit order
    fake = ContextLogits(6, V, MASK, seed=4)
    ids, mask = prompt(8)
    sampler = RoarSampler(gen_length=6, block_length=3, temperature=1.0)
    res = sampler.decode(fake, ids, mask, mask_id=MASK, generator=torch.Generator().manual_seed(5))
    for n in range(8):
        for i in range(6):
            t = int(res.commit_step[n, i])  # t tokens were committed before this one (one per step)
            logits = fake.w[i] + t * fake.u  # [V]
            want = _masked_log_softmax(logits)[res.completion_ids[n, i]]
            assert abs(float(res.token_logp[n, i]) - float(want)) < 1e-5
    out = sampler(fake, ids, mask, mask_id=MASK, generator=torch.Generator().manual_seed(5))
    assert torch.equal(out.token_logp, res.token_logp)


def test_trajectory_logp_replays_the_roar_order_exactly():
    fake = ContextLogits(8, V, MASK, seed=1)
    ids, mask = prompt(6)
    res = RoarSampler(gen_length=8, block_length=4, temperature=1.0).decode(
        fake, ids, mask, mask_id=MASK, generator=torch.Generator().manual_seed(2)
    )
    replay = trajectory_logp(fake, ids, mask, res.completion_ids, res.commit_step, mask_id=MASK)
    assert torch.allclose(replay, res.token_logp, atol=1e-5)


def test_roar_tempered_logp_is_the_log_prob_of_the_sampling_distribution():
    table = torch.randn(3, V, generator=torch.Generator().manual_seed(0))  # [L, V]
    ids, mask = prompt(2)
    out = RoarSampler(gen_length=3, block_length=3, temperature=0.5, tempered_logp=True)(
        TableLogits(table), ids, mask, mask_id=MASK, generator=torch.Generator().manual_seed(0)
    )
    want = _masked_log_softmax(table / 0.5).gather(1, out.completion_ids[0][:, None]).squeeze(1)  # [L]
    assert torch.allclose(out.token_logp[0].double(), want, atol=1e-5)


def test_roar_with_prefill_decodes_only_free_positions_and_logs_zero_elsewhere():
    fake = TableLogits(answer_table([1, 2, 3, 4], V))
    prefill = torch.tensor([[7, MASK, 7, MASK], [MASK, MASK, MASK, MASK]])  # [N, L]
    ids, mask = prompt(2)
    out = RoarSampler(gen_length=4, block_length=4, temperature=0.0)(
        fake, ids, mask, mask_id=MASK, prefill=prefill, generator=torch.Generator().manual_seed(0)
    )
    assert out.completion_ids.tolist() == [[7, 2, 7, 4], [1, 2, 3, 4]]
    assert out.token_logp[0, 0] == 0 and out.token_logp[0, 2] == 0
    assert out.nfe == 4  # the all-free row needs 4 steps


def test_fast_dllm_commits_every_position_above_the_threshold_at_once():
    # probabilities of the argmax: margins 6 -> ~0.94 (above 0.9), 1 -> ~0.23 (below)
    table = answer_table([1, 2, 3, 4], V, margin=1.0, confidence=[6.0, 6.0, 1.0, 1.0])
    fake = TableLogits(table)
    ids, mask = prompt(3)
    out = FastDllmSampler(gen_length=4, block_length=4, threshold=0.9)(fake, ids, mask, mask_id=MASK)
    assert out.completion_ids.tolist() == [[1, 2, 3, 4]] * 3
    counts = [c.sum(1).tolist() for c in commits_per_step(fake, out.completion_ids, MASK)]
    assert counts == [[2] * 3, [1] * 3, [1] * 3]  # both confident ones, then one at a time (ties: leftmost)
    assert out.nfe == 3


def test_fast_dllm_needs_at_most_one_forward_per_position_and_finishes_every_block():
    table = torch.zeros(8, V)  # uniform: nothing passes the threshold, one commit per step
    ids, mask = prompt(2)
    fake = TableLogits(table)
    out = FastDllmSampler(gen_length=8, block_length=4, threshold=0.99)(fake, ids, mask, mask_id=MASK)
    assert out.nfe == 8
    assert not (out.completion_ids == MASK).any()


def test_entropy_bounded_gamma_controls_parallelism():
    table = answer_table([1, 2, 3, 4, 5, 6], V, margin=1.0, confidence=[8, 7, 6, 5, 4, 3])
    ids, mask = prompt(2)
    tight = EntropyBoundedSampler(gen_length=6, block_length=6, gamma=0.0)(TableLogits(table), ids, mask, mask_id=MASK)
    loose = EntropyBoundedSampler(gen_length=6, block_length=6, gamma=100.0)(TableLogits(table), ids, mask, mask_id=MASK)
    assert tight.nfe == 6 and loose.nfe == 1  # one per step vs. all at once
    assert tight.completion_ids.tolist() == loose.completion_ids.tolist() == [[1, 2, 3, 4, 5, 6]] * 2


def test_trajectory_logp_replays_a_prefilled_random_remask_trajectory():
    # random remasking with k > 1 per step is also order-independent of the draws: exact too
    from dmpo_core.samplers import LowConfidenceSampler

    fake = ContextLogits(8, V, MASK, seed=3)
    ids, mask = prompt(4)
    prefill = torch.full((4, 8), MASK)  # [N, L]
    prefill[0, :3] = 2
    prefill[2, 5] = 1
    res = LowConfidenceSampler(gen_length=8, block_length=4, steps=4, temperature=1.0, remasking="random").decode(
        fake, ids, mask, mask_id=MASK, generator=torch.Generator().manual_seed(9), prefill=prefill
    )
    assert torch.equal(res.commit_step < 0, prefill != MASK)
    replay = trajectory_logp(fake, ids, mask, res.completion_ids, res.commit_step, mask_id=MASK)
    assert torch.allclose(replay, res.token_logp, atol=1e-5)
    assert (res.token_logp[prefill != MASK] == 0).all()
