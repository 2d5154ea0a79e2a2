"""Per-row early exit of the adaptive samplers: rows that finished their block stop costing
forwards, and no row's tokens change (greedy and sampled, with a prefill that finishes some
rows early), without a cache and with each cache mode (the cache narrowed to the rows run)."""

from __future__ import annotations

import pytest
import torch

from dmpo_core.samplers.adaptive import entropy_bound_rule, threshold_rule
from dmpo_core.samplers.common import adaptive_decode
from dmpo_core.testing.toy_model import ToyDiffusionLM


def _inputs(model: ToyDiffusionLM, n: int = 4, p: int = 4, gen: int = 8):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, model.mask_id, (n, p), generator=g)  # [N, P]
    mask = torch.ones(n, p, dtype=torch.long)
    mask[1, :2] = 0
    prefill = torch.full((n, gen), model.mask_id)  # [N, L]
    prefill[0] = torch.randint(0, model.mask_id, (gen,), generator=g)  # row 0: nothing to decode
    prefill[2, :3] = 5  # row 2: fewer positions in its first block
    return ids, mask, prefill


@pytest.mark.parametrize("cache", ["none", "prefix", "dual", "refresh"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("rule, entropy", [(threshold_rule(0.3), False), (entropy_bound_rule(0.2), True)],
                         ids=["threshold", "entropy"])
def test_row_exit_changes_no_token_and_saves_rows(rule, entropy, temperature, cache):
    model = ToyDiffusionLM(max_len=32)
    ids, mask, prefill = _inputs(model)
    runs = {}
    for row_exit in (False, True):
        runs[row_exit] = adaptive_decode(
            model, ids, mask, mask_id=model.mask_id, gen_length=8, block_length=4, temperature=temperature,
            rule=rule, need_entropy=entropy, generator=torch.Generator().manual_seed(5), prefill=prefill,
            row_exit=row_exit, cache=cache)
    assert torch.equal(runs[True].completion_ids, runs[False].completion_ids)
    assert torch.equal(runs[True].commit_step, runs[False].commit_step)
    assert runs[True].nfe == runs[False].nfe
    assert runs[False].row_forwards == 4 * runs[False].nfe
    assert runs[True].row_forwards < runs[False].row_forwards  # row 0 never runs, row 2 stops early


def test_row_exit_runs_only_unfinished_rows():
    calls: list[int] = []
    model = ToyDiffusionLM(max_len=32)

    def counting(x, attn, *, last=None):
        calls.append(x.shape[0])
        return model(x, attn, last=last)

    ids, mask, prefill = _inputs(model)
    adaptive_decode(counting, ids, mask, mask_id=model.mask_id, gen_length=8, block_length=4, temperature=0.0,
                    rule=threshold_rule(0.99), prefill=prefill)
    assert max(calls) <= 3  # row 0 is finished from the start
    assert min(calls) >= 1


def test_cached_row_exit_runs_only_unfinished_rows_through_a_narrowed_cache():
    """Every cache forward after a block's first sees only the rows still decoding, and the
    narrowed cache gives them the logits the whole batch's cache gives (float64 toy model)."""
    model = ToyDiffusionLM(max_len=32)
    ids, mask, prefill = _inputs(model)
    shapes: list[int] = []

    class Counting:
        def __call__(self, x, attn, *, last=None):
            return model(x, attn, last=last)

        def open_cache(self, attn):
            return CountingCache(model.open_cache(attn))

    class CountingCache:
        def __init__(self, inner):
            self.inner = inner

        def forward(self, x, *, start, stop, keep):
            shapes.append(x.shape[0])
            return self.inner.forward(x, start=start, stop=stop, keep=keep)

        def select(self, rows):
            return CountingCache(self.inner.select(rows))

    out = adaptive_decode(Counting(), ids, mask, mask_id=model.mask_id, gen_length=8, block_length=4,
                          temperature=0.0, rule=threshold_rule(0.99), prefill=prefill, cache="dual")
    assert max(shapes) <= 3 and min(shapes) >= 1  # row 0 (nothing to decode) never runs
    assert out.row_forwards == sum(shapes) < 4 * out.nfe
