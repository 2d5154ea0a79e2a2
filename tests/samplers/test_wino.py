"""WINO: the shadow block verifies each draft with its own position masked (leave-one-out),
drafts that fail are re-masked, NFE counts every forward, a block costs at most K forwards."""

from __future__ import annotations

import pytest
import torch

from dmpo_core.errors import ConfigError, InvalidArgumentError
from dmpo_core.samplers import WinoSampler
from dmpo_core.samplers.wino import shadow_inputs
from dmpo_core.testing.toy_model import ToyDiffusionLM


def _state(model: ToyDiffusionLM, n: int = 3, p: int = 5, gen: int = 8):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, model.mask_id, (n, p + gen), generator=g)  # [N, S]
    x[:, p + 2 :: 2] = model.mask_id  # some masked completion positions
    attn = torch.ones_like(x)
    attn[1, :2] = 0  # left padding in row 1
    return x, attn, p


def test_shadow_position_sees_everything_but_its_counterpart():
    # one layer: the shadow's logits at j are exactly those of the sequence with j masked. In a
    # deeper model the other positions' later-layer states have seen token j (so has WINO's shadow)
    model = ToyDiffusionLM(max_len=32, layers=1)
    x, attn, p = _state(model)
    a, b = p, p + 4
    k, s = b - a, x.shape[1]
    ids, attention, pos = shadow_inputs(x, attn, a, b, model.mask_id)
    out = model.masked_logits(ids, attention, pos, torch.arange(k + s))  # [N, T, V]
    plain = model(x, attn)  # [N, S, V]
    real = attn.bool()
    assert torch.allclose(out[:, k:][real], plain[real], atol=1e-10)  # the sequence ignores the shadow
    for j in range(k):
        hidden = x.clone()
        hidden[:, a + j] = model.mask_id  # leave position j out
        assert torch.allclose(out[:, j], model(hidden, attn)[:, a + j], atol=1e-10)


class Recording:
    """The toy model's custom-attention forward, keeping every state it is shown."""

    def __init__(self, model):
        self.model, self.states = model, []

    def __call__(self, ids, attn, *, last=None):
        return self.model(ids, attn, last=last)

    def masked_logits(self, ids, attention, pos, keep):
        self.states.append(ids.clone())
        return self.model.masked_logits(ids, attention, pos, keep)


def test_wino_remasks_drafts_and_counts_every_forward():
    model = ToyDiffusionLM(max_len=48, seed=1)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.mask_id, (6, 6), generator=g)  # [N, P]
    mask = torch.ones_like(ids)
    rec = Recording(model)
    sampler = WinoSampler(gen_length=16, block_length=8, threshold=0.3, verify_threshold=0.95)
    out = sampler.decode(rec, ids, mask, mask_id=model.mask_id)
    assert out.nfe == len(rec.states)
    assert out.nfe <= 16  # the guard: at most block_length forwards per block
    assert not (out.completion_ids == model.mask_id).any()
    completions = [st[:, -16:] for st in rec.states]  # [N, L] each (the shadow comes first)
    remasked = sum(int(((a != model.mask_id) & (b == model.mask_id)).sum())
                   for a, b in zip(completions, completions[1:]) if a.shape == b.shape)
    assert remasked > 0  # narrow out happened on this model at these thresholds
    assert out.row_forwards < 6 * out.nfe  # rows that finished a block early were not run


def test_wino_config_and_model_errors():
    with pytest.raises(ConfigError) as err:
        WinoSampler(threshold=0.0, verify_threshold=1.5)
    assert "threshold=0.0" in str(err.value) and "verify_threshold=1.5" in str(err.value)
    model = ToyDiffusionLM(max_len=32)
    with pytest.raises(InvalidArgumentError, match="masked_logits"):
        WinoSampler(gen_length=8, block_length=4)(lambda i, a, *, last=None: model(i, a, last=last),
                                                  torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3),
                                                  mask_id=model.mask_id)
