"""The laws of masks and of the WDCE loss, one hypothesis property per law."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from dmpo_core.objective import WdceObjective, sample_masks
from dmpo_core.testing import laws
from dmpo_core.testing import strategies as dst


@given(
    data=st.data(),
    n=st.integers(1, 8),
    length=st.integers(1, 64),
    replicates=st.sampled_from([2, 4, 6, 8]),
    clamp=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_antithetic_masks_cover_each_eligible_token_once_per_pair(data, n, length, replicates, clamp, seed):
    eligible = data.draw(dst.eligibles(n, length))  # [N, L]
    laws.antithetic_masks_cover_each_eligible_token_once_per_pair(eligible, replicates, seed=seed, clamp=clamp)


@given(n_draws=st.integers(1, 8), n_rows=st.integers(1, 64), seed=st.integers(0, 2**32 - 1))
def test_mask_ratios_are_clamped(n_draws, n_rows, seed):
    laws.mask_ratios_are_clamped(n_draws, n_rows, seed=seed)


@given(tokens=dst.token_batches(), data=st.data())
def test_noisy_inputs_leave_prompt_intact(tokens, data):
    batch = tokens.batch
    gen = torch.Generator().manual_seed(tokens.seed)
    antithetic = data.draw(st.booleans())
    masks = sample_masks(batch.eligible, tokens.replicates, antithetic=antithetic, generator=gen)  # [R, N, L]
    laws.noisy_inputs_leave_prompt_intact(batch.prompt_ids, batch.completion_ids, masks, tokens.mask_id)


@given(tokens=dst.token_batches(), clamp=st.booleans())
def test_wdce_masks_each_completion_token_once_per_pair(tokens, clamp):
    objective = WdceObjective(replicates=tokens.replicates, antithetic=True, clamp=clamp)
    laws.wdce_masks_each_completion_token_once_per_pair(objective, tokens)


@given(inputs=dst.loss_inputs())
def test_wdce_with_uniform_weights_equals_sft_loss(inputs):
    laws.wdce_with_uniform_weights_equals_sft_loss(inputs)
