"""The block KV caches of the Hugging Face backends (LLaDA and Dream on stock transformers).

* a cache refreshed at every step gives the uncached logits (1e-5, float32) and the uncached
  tokens, on a left-padded batch;
* the prefix and dual caches give the tokens of a plain implementation of the same rule
  written here with transformers' DynamicCache: a full forward at each block start, then
  every step runs only the window (prefix: block + suffix, dual: the block; Dream one position
  earlier for its logit shift) on top of keys and values frozen at the block start;
* every row of a left-padded batch decodes as it does alone.
"""

from __future__ import annotations

import math

import pytest
import torch
from dmpo.backends.dream import load_dream_policy
from dmpo.backends.llada import load_llada_policy

from dmpo_core.samplers import FastDllmSampler, LowConfidenceSampler

GEN, BLOCK = 8, 4


@pytest.fixture(params=["llada", "dream"])
def policy(request, tiny_llada, tiny_dream):
    if request.param == "llada":
        return load_llada_policy(str(tiny_llada), reference=False)
    return load_dream_policy(str(tiny_dream), reference=False)


def _prompts(policy, n: int = 3, p: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (n, p), generator=g)  # [N, P]
    mask = torch.ones(n, p, dtype=torch.long)  # [N, P]
    for i in range(n):  # row i has i padded positions
        mask[i, :i] = 0
        ids[i, :i] = policy.pad_id
    return ids, mask


def test_refreshed_cache_gives_the_uncached_logits(policy):
    ids, mask = _prompts(policy)
    n, p = ids.shape
    x = torch.cat([ids, torch.full((n, GEN), policy.mask_id)], dim=1)  # [N, S]
    attn = torch.cat([mask, torch.ones(n, GEN, dtype=torch.long)], dim=1)  # [N, S]
    kv = policy.logits.open_cache(attn)
    g = torch.Generator().manual_seed(2)
    for step in range(4):  # the cache is reused across changing states
        with torch.no_grad():
            want = policy.logits(x, attn, last=GEN)  # [N, L, V]
        lo = BLOCK * (step // 2)
        got = kv.forward(x, start=0, stop=x.shape[1], keep=(p + lo, p + lo + BLOCK))  # [N, K, V]
        assert got.dtype == torch.float32
        assert (got - want[:, lo : lo + BLOCK]).abs().max().item() < 1e-5
        x[:, p + step] = torch.randint(5, 60, (n,), generator=g)


@pytest.mark.parametrize("sampler", [
    FastDllmSampler(gen_length=GEN, block_length=BLOCK, threshold=0.05),
    LowConfidenceSampler(gen_length=GEN, block_length=BLOCK, steps=4),
], ids=["fast-dllm", "low-confidence"])
def test_refreshed_cache_gives_the_uncached_tokens(policy, sampler):
    import attrs

    ids, mask = _prompts(policy)
    with torch.no_grad():
        plain = sampler(policy.logits, ids, mask, mask_id=policy.mask_id)
        refreshed = attrs.evolve(sampler, cache="refresh")(policy.logits, ids, mask, mask_id=policy.mask_id)
    assert torch.equal(plain.completion_ids, refreshed.completion_ids)
    assert plain.nfe == refreshed.nfe


# ---- a plain implementation of the block-cache rule, on DynamicCache ---------------------------


def _window_logits(policy, x, attn, frozen, start, stop, a, b):
    """Logits [N, b-a, V] of positions [a, b): the window [start, stop) runs on the keys and values
    ``frozen`` (per layer, [N, H, S, E]) of every position outside it."""
    from transformers import DynamicCache

    shift = policy.family.shift_logits
    if shift:
        start = min(start, a - 1)
    s = x.shape[1]
    outside = torch.cat([torch.arange(0, start), torch.arange(stop, s)])  # [S - W]
    cache = DynamicCache()
    for i, (k, v) in enumerate(frozen):
        cache.update(k[:, :, outside], v[:, :, outside], i)
    positions = (attn.cumsum(-1) - 1).clamp(min=0)  # [N, S]
    key_mask = torch.cat([attn[:, outside], attn[:, start:stop]], dim=1)  # keys: cached, then the window
    out = policy.model(input_ids=x[:, start:stop], attention_mask=key_mask, position_ids=positions[:, start:stop],
                       cache=cache, use_cache=True)
    raw = out.logits  # [N, W, V]
    if shift:  # position i is predicted by the hidden state at i - 1 (a - 1 >= 1 here: the prompt is not empty)
        return raw[:, a - 1 - start : b - 1 - start]
    return raw[:, a - start : b - start]


def _full_forward_kv(policy, x, attn):
    positions = (attn.cumsum(-1) - 1).clamp(min=0)
    out = policy.model(input_ids=x, attention_mask=attn, position_ids=positions, use_cache=True)
    raw = out.logits  # [N, S, V]
    frozen = [(layer.keys.clone(), layer.values.clone()) for layer in out.cache.layers]
    if policy.family.shift_logits:
        raw = torch.cat([raw[:, :1], raw[:, :-1]], dim=1)  # no row is all padding before the completion
    return raw, frozen


@torch.no_grad()
def _reference_threshold_decode(policy, ids, mask, mode, threshold):
    """Greedy threshold decoding (at least the most confident per step), block caches as described above."""
    n, p = ids.shape
    x = torch.cat([ids, torch.full((n, GEN), policy.mask_id)], dim=1)  # [N, S]
    attn = torch.cat([mask, torch.ones(n, GEN, dtype=torch.long)], dim=1)  # [N, S]
    s = x.shape[1]
    nfe = 0
    for lo in range(0, GEN, BLOCK):
        a, b = p + lo, p + lo + BLOCK
        first = True
        while bool((x[:, a:b] == policy.mask_id).any()):
            if first:
                raw, frozen = _full_forward_kv(policy, x, attn)
                logits = raw[:, a:b]
                first = False
            else:
                stop = s if mode == "prefix" else b
                logits = _window_logits(policy, x, attn, frozen, a, stop, a, b)
            nfe += 1
            scores = logits.float().clone()  # [N, K, V]
            scores[..., policy.mask_id] = -math.inf
            logp = scores.log_softmax(-1)
            conf, tok = logp.max(-1)  # [N, K]
            cand = x[:, a:b] == policy.mask_id
            conf = conf.masked_fill(~cand, -math.inf)
            pick = cand & (conf > math.log(threshold))
            best = conf.argmax(-1)
            pick[torch.arange(n), best] |= cand.any(-1)
            x[:, a:b] = torch.where(pick, tok, x[:, a:b])
    return x[:, p:], nfe


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_block_caches_give_the_tokens_of_the_plain_rule(policy, mode):
    ids, mask = _prompts(policy)
    threshold = 0.05
    want, want_nfe = _reference_threshold_decode(policy, ids, mask, mode, threshold)
    sampler = FastDllmSampler(gen_length=GEN, block_length=BLOCK, threshold=threshold, cache=mode)
    with torch.no_grad():
        got = sampler(policy.logits, ids, mask, mask_id=policy.mask_id)
        uncached = FastDllmSampler(gen_length=GEN, block_length=BLOCK, threshold=threshold)(
            policy.logits, ids, mask, mask_id=policy.mask_id)
    assert torch.equal(got.completion_ids, want)
    assert got.nfe == want_nfe
    assert not torch.equal(got.completion_ids, uncached.completion_ids) or mode == "prefix", (
        "the dual cache is an approximation: on this random model it changes some token (if this fails, the "
        "cache may be recomputing everything)")


@pytest.mark.parametrize("mode", ["prefix", "dual"])
def test_block_cached_rows_equal_their_unbatched_decodes(policy, mode):
    ids, mask = _prompts(policy)
    sampler = FastDllmSampler(gen_length=GEN, block_length=BLOCK, threshold=0.05, cache=mode)
    with torch.no_grad():
        batch = sampler(policy.logits, ids, mask, mask_id=policy.mask_id)
        for i in range(ids.shape[0]):
            real = mask[i].bool()
            alone = sampler(policy.logits, ids[i : i + 1, real], mask[i : i + 1, real], mask_id=policy.mask_id)
            assert torch.equal(batch.completion_ids[i : i + 1], alone.completion_ids), i


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_cached_row_exit_keeps_every_token(policy, cache):
    """Rows that finish a block early leave the cache (HFKVCache.select); nobody's tokens change."""
    from dmpo_core.samplers.adaptive import threshold_rule
    from dmpo_core.samplers.common import adaptive_decode

    ids, mask = _prompts(policy)
    prefill = torch.full((ids.shape[0], GEN), policy.mask_id)  # [N, L]
    prefill[0, :BLOCK] = 7  # row 0: its first block is given
    prefill[1, 1:BLOCK] = 9  # row 1: one position to decode in the first block
    runs = {}
    for row_exit in (False, True):
        with torch.no_grad():
            runs[row_exit] = adaptive_decode(
                policy.logits, ids, mask, mask_id=policy.mask_id, gen_length=GEN, block_length=BLOCK,
                temperature=0.0, rule=threshold_rule(0.5), prefill=prefill, cache=cache, row_exit=row_exit)
    assert torch.equal(runs[True].completion_ids, runs[False].completion_ids)
    assert runs[True].nfe == runs[False].nfe
    assert runs[True].row_forwards < runs[False].row_forwards == ids.shape[0] * runs[False].nfe
