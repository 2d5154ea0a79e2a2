"""Where a decoding step gets the logits of its block: a full forward, or a block KV cache.

Fast-dLLM's two caches (docs/concepts.md section 5; docs/samplers.md), on a model whose ``logits_fn`` is a
:class:`~dmpo_core.contracts.CachingLogitsFn`:

* ``prefix``: the first step of each block runs the whole sequence and stores every
  position's keys and values; the later steps of the block recompute only the block and
  everything after it (the masked suffix), reading the prompt's and the finished blocks'
  keys and values from the cache.
* ``dual``: the same full forward at the block start; the later steps recompute only the
  block, reading the prefix AND the masked suffix from the cache.
* ``refresh``: every step recomputes the whole sequence through the cache. It gives the
  uncached logits (up to float rounding) and exists to check a backend's cache path, not
  to save time.

In a bidirectional model both block caches are approximations: within a block, the cached
keys and values do not see the tokens committed since the block started. That is why the
default is ``none`` (a full forward per step, the exact model) and a cache is opt-in.

Letters: ``N`` rows, ``P`` prompt length, ``L`` completion length, ``K`` block length,
``V`` vocabulary, ``S = P + L``.
"""

from __future__ import annotations

import torch

from dmpo_core.contracts import CachingLogitsFn, KVCache, LogitsFn
from dmpo_core.errors import InvalidArgumentError, ShapeError

CACHE_MODES: tuple[str, ...] = ("none", "prefix", "dual", "refresh")
"""The values of a sampler's ``cache`` option."""


def cache_problem(cache: object) -> str | None:
    """A problem line unless ``cache`` is one of :data:`CACHE_MODES`."""
    if cache not in CACHE_MODES:
        return f"cache={cache!r}: choose one of {', '.join(CACHE_MODES)} (none is the exact model)"
    return None


def _check_logits(logits: torch.Tensor, rows: int, width: int, mask_id: int, what: str) -> torch.Tensor:
    if logits.dim() != 3 or logits.shape[0] != rows or logits.shape[1] != width:
        raise ShapeError("logits", tuple(logits.shape), f"{what} must return [{rows}, {width}, V]")
    if mask_id >= logits.shape[2]:
        raise InvalidArgumentError("mask_id", mask_id, f"pass a token id below the vocabulary size {logits.shape[2]}")
    return logits


def full_logits(logits_fn: LogitsFn, x: torch.Tensor, attn: torch.Tensor, gen_length: int, mask_id: int) -> torch.Tensor:
    """One full forward of ``x [N, S]``: the completion's logits ``[N, L, V]``."""
    logits = logits_fn(x, attn, last=gen_length)  # [N, L, V]
    return _check_logits(logits, x.shape[0], gen_length, mask_id, f"logits_fn(..., last={gen_length})")


class BlockLogits:
    """The logits of the current block ``[N, K, V]`` for each step of a decoding loop.

    ``x [N, S]`` is the decoding state, read at every call (the loop writes its commits into
    it); ``attn [N, S]`` is 0 on left padding. Call :meth:`begin` at each block, then call the
    object once per step. A call may run only some ``rows`` (finished rows cost nothing):
    ``cache="none"`` runs the full forward of :func:`full_logits` on them; a cached mode
    narrows its cache to them (:meth:`~dmpo_core.contracts.KVCache.select`, a copy of their
    keys and values) and keeps it narrowed while the rows it runs only shrink, as they do
    within a block. Each block's first step recomputes the whole sequence, so :meth:`begin`
    goes back to the cache of the whole batch.
    """

    def __init__(
        self,
        logits_fn: LogitsFn,
        x: torch.Tensor,
        attn: torch.Tensor,
        *,
        prompt_len: int,
        gen_length: int,
        mask_id: int,
        cache: str = "none",
    ) -> None:
        if cache not in CACHE_MODES:
            raise InvalidArgumentError("cache", cache, f"choose one of {', '.join(CACHE_MODES)}")
        self.logits_fn = logits_fn
        self.x = x
        self.attn = attn
        self.prompt_len = prompt_len
        self.gen_length = gen_length
        self.mask_id = mask_id
        self.mode = cache
        self.kv: KVCache | None = None
        if cache != "none":
            if not isinstance(logits_fn, CachingLogitsFn):
                raise InvalidArgumentError(
                    "cache", cache, "this model's logits function keeps no KV cache (no open_cache); use cache=none"
                )
            self.kv = logits_fn.open_cache(attn)
        self.whole = self.kv  # the cache of every row
        self.kv_rows: torch.Tensor | None = None  # [R] rows of self.kv (None: every row)
        self.lo, self.hi, self.fresh = 0, 0, True

    def begin(self, lo: int, hi: int) -> None:
        """Start the block of completion positions ``[lo, hi)``: its first step runs in full."""
        self.lo, self.hi, self.fresh = lo, hi, True
        self.kv, self.kv_rows = self.whole, None

    def _narrow(self, rows: torch.Tensor | None) -> None:
        """Make ``self.kv`` the cache of exactly ``rows`` (a subset of the rows it holds)."""
        if rows is None:
            if self.kv_rows is not None:
                raise InvalidArgumentError("rows", None, "the rows run only shrink within a block; call begin() first")
            return
        if self.kv_rows is not None and torch.equal(rows, self.kv_rows):
            return
        assert self.kv is not None
        local = rows if self.kv_rows is None else torch.searchsorted(self.kv_rows, rows)  # [R] into self.kv
        self.kv, self.kv_rows = self.kv.select(local), rows

    def __call__(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``[N, K, V]`` of the block (``[R, K, V]`` of the sorted ``rows [R]`` when given)."""
        if self.kv is None:
            x, attn = (self.x, self.attn) if rows is None else (self.x[rows], self.attn[rows])
            return full_logits(self.logits_fn, x, attn, self.gen_length, self.mask_id)[:, self.lo : self.hi]
        self._narrow(rows)
        x = self.x if rows is None else self.x[rows]  # [R, S]
        s = self.x.shape[1]
        a, b = self.prompt_len + self.lo, self.prompt_len + self.hi  # sequence coordinates of the block
        if self.fresh or self.mode == "refresh":
            start, stop = 0, s
        elif self.mode == "prefix":
            start, stop = a, s
        else:  # dual
            start, stop = a, b
        self.fresh = False
        logits = self.kv.forward(x, start=start, stop=stop, keep=(a, b))  # [R, K, V]
        return _check_logits(logits, x.shape[0], b - a, self.mask_id, "KVCache.forward")
