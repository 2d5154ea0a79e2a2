"""The low-confidence (LLaDA) sampler and its random-remasking variant, against fake models."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sampler_fakes import TableLogits, answer_table, commits_per_step, prompt

from dmpo_core.samplers import LowConfidenceSampler, num_transfer_schedule
from dmpo_core.samplers.common import scheduled_decode

V = 10
MASK = 9
ANSWER = [1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4]  # L = 12


def _run(sampler, fake, n=4, **kw):
    ids, mask = prompt(n)
    return sampler(fake, ids, mask, mask_id=MASK, **kw)


def test_greedy_returns_the_known_answer():
    fake = TableLogits(answer_table(ANSWER, V))
    out = _run(LowConfidenceSampler(gen_length=12, block_length=4, steps=6), fake)
    assert out.completion_ids.tolist() == [ANSWER] * 4
    assert out.completion_ids.dtype == torch.long
    assert out.token_logp is None


def test_nfe_equals_steps_and_logits_fn_gets_last_and_attention_mask():
    fake = TableLogits(answer_table(ANSWER, V))
    out = _run(LowConfidenceSampler(gen_length=12, block_length=6, steps=8), fake)
    assert out.nfe == 8 == len(fake.inputs)
    assert fake.lasts == [12] * 8
    ids, mask = prompt(4)
    want = torch.cat([mask, torch.ones(4, 12, dtype=torch.bool)], dim=1)  # [N, P+L]
    assert all(torch.equal(m, want) for m in fake.masks)
    assert all(torch.equal(x[:, :3], ids) for x in fake.inputs)  # the prompt is never touched


def test_every_position_committed_exactly_once_and_never_changed():
    fake = TableLogits(answer_table(ANSWER, V))
    out = _run(LowConfidenceSampler(gen_length=12, block_length=4, steps=12, temperature=1.0), fake,
               generator=torch.Generator().manual_seed(3))
    commits = torch.stack(commits_per_step(fake, out.completion_ids, MASK))  # [S, N, L]
    assert torch.equal(commits.sum(0), torch.ones(4, 12, dtype=torch.long))  # exactly once
    assert not (out.completion_ids == MASK).any()
    states = [x[:, 3:] for x in fake.inputs] + [out.completion_ids]
    for before, after in itertools.pairwise(states):
        kept = before != MASK  # [N, L]
        assert torch.equal(after[kept], before[kept])  # committed tokens never change


def test_k_per_step_follows_the_even_schedule():
    # block 6 over 4 steps: 6 = 2 + 2 + 1 + 1 (the first steps take the remainder), per block
    fake = TableLogits(answer_table(ANSWER, V))
    out = _run(LowConfidenceSampler(gen_length=12, block_length=6, steps=8), fake)
    counts = [c.sum(1).tolist() for c in commits_per_step(fake, out.completion_ids, MASK)]
    assert counts == [[2] * 4, [2] * 4, [1] * 4, [1] * 4] * 2


def test_schedule_helper_matches_hand_computed_counts():
    got = num_transfer_schedule(torch.tensor([6, 4, 0, 3]), 4)
    assert got.tolist() == [[2, 2, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0]]


def test_blocks_are_decoded_left_to_right():
    fake = TableLogits(answer_table(ANSWER, V))
    out = _run(LowConfidenceSampler(gen_length=12, block_length=4, steps=6, temperature=0.7), fake,
               generator=torch.Generator().manual_seed(0))
    commits = commits_per_step(fake, out.completion_ids, MASK)
    # steps 0-1 only touch block 0 (positions 0-3), steps 2-3 block 1, steps 4-5 block 2
    for s, c in enumerate(commits):
        block = s // 2
        inside = torch.zeros(12, dtype=torch.bool)
        inside[4 * block : 4 * block + 4] = True
        assert not c[:, ~inside].any(), f"step {s} committed outside block {block}"
        if s % 2 == 1:  # a block is finished at its last step
            assert not (out.completion_ids[:, : 4 * block + 4] == MASK).any()
            assert not (fake.inputs[s][:, 3 + 4 * block + 4 :] != MASK).any()  # nothing decoded to the right


def test_low_confidence_commits_the_most_confident_positions_first():
    # one block of 4, 4 steps: confidences ordered 0.2 < 1.0 < 0.5 < 0.8 -> commit order 1, 3, 2, 0
    table = answer_table([1, 2, 3, 4], V, margin=4.0, confidence=[0.2, 1.0, 0.5, 0.8])
    fake = TableLogits(table)
    out = _run(LowConfidenceSampler(gen_length=4, block_length=4, steps=4), fake, n=2)
    order = [c[0].nonzero().flatten().tolist() for c in commits_per_step(fake, out.completion_ids, MASK)]
    assert order == [[1], [3], [2], [0]]


def test_random_remasking_orders_differ_across_rows_and_are_seeded():
    fake = TableLogits(answer_table([1, 2, 3, 4, 5, 6, 7, 8], V))
    sampler = LowConfidenceSampler(gen_length=8, block_length=8, steps=8, remasking="random")
    out = _run(sampler, fake, n=16, generator=torch.Generator().manual_seed(0))
    first = commits_per_step(fake, out.completion_ids, MASK)[0].float().argmax(1)  # [N] first committed position
    assert len(set(first.tolist())) > 2
    assert out.completion_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]] * 16  # greedy tokens still


def test_prefill_positions_are_kept_and_free_positions_decoded_with_per_row_schedule():
    fake = TableLogits(answer_table(ANSWER[:8], V))
    prefill = torch.full((3, 8), MASK)  # [N, L]
    prefill[0, [0, 1, 5]] = torch.tensor([7, 7, 7])  # row 0: 2 free in block 0, 3 in block 1
    prefill[1] = torch.tensor([0, 0, 0, 0, 0, 0, 0, 0])  # row 1: nothing free
    # row 2: all free
    sampler = LowConfidenceSampler(gen_length=8, block_length=4, steps=4)
    ids, mask = prompt(3)
    out = sampler(fake, ids, mask, mask_id=MASK, prefill=prefill)
    given_pos = prefill != MASK
    assert torch.equal(out.completion_ids[given_pos], prefill[given_pos])  # pre-filled never changed
    want = torch.tensor(ANSWER[:8]).expand(3, 8)
    assert torch.equal(out.completion_ids[~given_pos], want[~given_pos])  # free ones decoded
    counts = [c.sum(1).tolist() for c in commits_per_step(fake, out.completion_ids, MASK)]
    # per block 2 steps; row 0: 2 free -> 1,1 then 3 free -> 2,1; row 1: 0; row 2: 4 -> 2,2
    assert counts == [[1, 0, 2], [1, 0, 2], [2, 0, 2], [1, 0, 2]]
    assert out.nfe == 4


def test_prefill_steps_that_commit_nothing_cost_no_forward():
    fake = TableLogits(answer_table(ANSWER[:8], V))
    prefill = torch.tensor([[1, 2, MASK, 4, 5, 6, 7, MASK]] * 2)  # 1 free per block: 1 step of 4 per block
    ids, mask = prompt(2)
    out = LowConfidenceSampler(gen_length=8, block_length=4, steps=8)(fake, ids, mask, mask_id=MASK, prefill=prefill)
    assert out.nfe == 2 == len(fake.inputs)
    assert out.completion_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]] * 2


def test_mask_token_is_never_produced_even_when_it_has_the_largest_logit():
    table = torch.zeros(6, V)  # [L, V]
    table[:, MASK] = 50.0
    table[:, 3] = 1.0
    for temperature in (0.0, 1.0, 5.0):
        out = _run(LowConfidenceSampler(gen_length=6, block_length=3, steps=6, temperature=temperature),
                   TableLogits(table), n=64, generator=torch.Generator().manual_seed(1))
        assert not (out.completion_ids == MASK).any()


def test_seeded_sampling_is_reproducible():
    table = torch.randn(8, V, generator=torch.Generator().manual_seed(0))  # [L, V]
    sampler = LowConfidenceSampler(gen_length=8, block_length=4, steps=4, temperature=1.0)
    a = _run(sampler, TableLogits(table), n=16, generator=torch.Generator().manual_seed(7))
    b = _run(sampler, TableLogits(table), n=16, generator=torch.Generator().manual_seed(7))
    c = _run(sampler, TableLogits(table), n=16, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a.completion_ids, b.completion_ids)
    assert not torch.equal(a.completion_ids, c.completion_ids)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_sampling_matches_the_tempered_distribution_on_two_tokens(temperature):
    # single position, tokens 0 and 1 with p = 0.3 / 0.7; at T the law is p^(1/T) normalised.
    # 4000 draws: standard error <= 0.008, the tolerance 0.03 is > 3.5 standard errors.
    table = torch.full((1, 3), -math.inf)  # [L=1, V=3], mask id 2
    table[0, 0], table[0, 1] = math.log(0.3), math.log(0.7)
    table[0, 2] = 5.0  # the mask token: never drawn
    ids, mask = prompt(4000, p=1)
    out = LowConfidenceSampler(gen_length=1, block_length=1, steps=1, temperature=temperature)(
        TableLogits(table), ids, mask, mask_id=2, generator=torch.Generator().manual_seed(11)
    )
    want = 0.7 ** (1 / temperature) / (0.3 ** (1 / temperature) + 0.7 ** (1 / temperature))
    assert not (out.completion_ids == 2).any()
    assert abs(out.completion_ids.float().mean().item() - want) < 0.03


def test_record_logp_returns_the_model_log_prob_of_each_committed_token():
    table = torch.randn(4, V, generator=torch.Generator().manual_seed(2))  # [L, V]
    out = _run(LowConfidenceSampler(gen_length=4, block_length=2, steps=4, record_logp=True), TableLogits(table), n=2)
    masked = table.clone()
    masked[:, MASK] = -math.inf
    logq = torch.log_softmax(masked, -1)  # [L, V]
    want = logq.gather(1, out.completion_ids[0][:, None]).squeeze(1)  # [L]
    assert torch.allclose(out.token_logp[0], want, atol=1e-5)


def test_prefill_of_the_wrong_shape_is_a_shape_error():
    from dmpo_core.errors import ShapeError

    ids, mask = prompt(2)
    with pytest.raises(ShapeError, match="prefill"):
        LowConfidenceSampler(gen_length=4, block_length=4, steps=4)(
            TableLogits(torch.zeros(4, V)), ids, mask, mask_id=MASK, prefill=torch.full((2, 5), MASK)
        )


@settings(deadline=None)
@given(
    blocks=st.integers(1, 3),
    block_length=st.integers(1, 5),
    steps_per_block=st.integers(1, 5),
    free=st.lists(st.lists(st.booleans(), min_size=15, max_size=15), min_size=1, max_size=3),
    random_remask=st.booleans(),
)
def test_each_free_position_committed_once_and_schedule_respected(blocks, block_length, steps_per_block, free,
                                                                  random_remask):
    """Law: with any prefill, each free position is committed once, never in a later block's
    turn, and each step commits the row's even-schedule count."""
    steps_per_block = min(steps_per_block, block_length)
    length = blocks * block_length
    n = len(free)
    table = torch.randn(length, V, generator=torch.Generator().manual_seed(length))  # [L, V]
    fake = TableLogits(table)
    prefill = torch.where(torch.tensor([f[:length] for f in free]), MASK, 0)  # [N, L]
    result = scheduled_decode(
        fake, torch.zeros(n, 2, dtype=torch.long), torch.ones(n, 2, dtype=torch.bool), mask_id=MASK,
        gen_length=length, block_length=block_length, steps=blocks * steps_per_block, temperature=1.0,
        remasking="random" if random_remask else "low_confidence", generator=torch.Generator().manual_seed(0),
        prefill=prefill,
    )
    out = result.completion_ids
    free_pos = prefill == MASK  # [N, L]
    assert not (out == MASK).any()
    assert torch.equal(out[~free_pos], prefill[~free_pos])
    assert torch.equal(result.commit_step >= 0, free_pos)
    # replay: per block, the commits of its steps follow the schedule of its free count
    step_block = []
    for b in range(blocks):
        count = free_pos[:, b * block_length : (b + 1) * block_length].sum(1)  # [N]
        sched = num_transfer_schedule(count, steps_per_block)  # [N, S_b]
        for s in range(steps_per_block):
            if sched[:, s].any():
                step_block.append((b, sched[:, s]))
    assert result.nfe == len(step_block) == len(fake.inputs)
    for t, (b, k) in enumerate(step_block):
        committed = result.commit_step == t  # [N, L]
        assert torch.equal(committed.sum(1), k)
        assert not committed[:, : b * block_length].any() and not committed[:, (b + 1) * block_length :].any()


def _direct_llada_greedy(fn, ids, mask, *, gen_length, block_length, steps):
    """A direct, row-by-row transcription of the algorithm of docs/concepts.md section 5 at T=0
    (whole-sequence confidences, -inf outside the current block, top-k per row)."""
    n, p = ids.shape
    x = torch.cat([ids, torch.full((n, gen_length), MASK)], dim=1)  # [N, P+L]
    attn = torch.cat([mask, torch.ones(n, gen_length, dtype=torch.bool)], dim=1)  # [N, P+L]
    per_block = steps // (gen_length // block_length)
    for b in range(gen_length // block_length):
        lo, hi = p + b * block_length, p + (b + 1) * block_length
        counts = (x[:, lo:hi] == MASK).sum(1)  # [N]
        for s in range(per_block):
            logits = fn(x, attn, last=gen_length).double()  # [N, L, V]
            logits[..., MASK] = -math.inf
            x0 = logits.argmax(-1)  # [N, L]
            conf = torch.softmax(logits, -1).gather(-1, x0[..., None]).squeeze(-1)  # [N, L]
            for row in range(n):
                k = int(counts[row] // per_block + (s < counts[row] % per_block))
                c = torch.full((gen_length,), -math.inf, dtype=torch.float64)
                for j in range(lo - p, hi - p):
                    if x[row, p + j] == MASK:
                        c[j] = conf[row, j]
                for j in torch.topk(c, k).indices.tolist() if k else []:
                    x[row, p + j] = x0[row, j]
    return x[:, p:]


def test_greedy_matches_a_direct_transcription_of_the_algorithm():
    from sampler_fakes import ContextLogits

    fake = ContextLogits(12, V, MASK, seed=5)
    ids, mask = prompt(5)
    for block_length, steps in [(4, 6), (6, 8), (12, 12), (3, 4)]:
        got = LowConfidenceSampler(gen_length=12, block_length=block_length, steps=steps)(fake, ids, mask, mask_id=MASK)
        want = _direct_llada_greedy(fake, ids, mask, gen_length=12, block_length=block_length, steps=steps)
        assert torch.equal(got.completion_ids, want), (block_length, steps)
