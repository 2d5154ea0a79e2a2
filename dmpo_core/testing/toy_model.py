"""A small random bidirectional masked-diffusion LM in plain torch, with a KV cache.

The model the sampler contract suite decodes with when the caller brings none: it needs
nothing but torch, honours left padding (position ids ``cumsum(mask) - 1``, padded keys never
attended), runs in float64 (so a row's logits do not change with the batch it is in, up to
rounding far below any decision of a sampler) and implements
:class:`~dmpo_core.contracts.CachingLogitsFn`, so a sampler's ``cache`` option can be checked
without transformers.

Letters: ``N`` rows, ``S`` sequence length, ``W`` window length, ``V`` vocabulary, ``D`` width,
``H`` heads, ``E`` head width.
"""

from __future__ import annotations

import math

import torch

from dmpo_core.errors import InvalidArgumentError


class ToyDiffusionLM:
    """``ToyDiffusionLM(vocab, mask_id)(ids [N, S], mask [N, S], last=L) -> logits [N, L, V]``.

    One pre-norm attention + MLP block per layer, learned absolute positions, random weights
    from ``seed`` (scaled so that predictions are neither uniform nor one-hot). ``calls``
    counts full forwards and cache forwards together (the NFE a sampler must report).
    """

    def __init__(self, vocab: int = 24, mask_id: int = 23, *, width: int = 32, heads: int = 4, layers: int = 2,
                 max_len: int = 64, seed: int = 0) -> None:
        if not 0 <= mask_id < vocab:
            raise InvalidArgumentError("mask_id", mask_id, f"pass an id below vocab={vocab}")
        g = torch.Generator().manual_seed(seed)
        d = width

        def rand(*shape: int, scale: float) -> torch.Tensor:
            return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

        self.vocab, self.mask_id, self.heads, self.max_len = vocab, mask_id, heads, max_len
        self.embed = rand(vocab, d, scale=1.0)  # [V, D]
        self.pos = rand(max_len, d, scale=0.5)  # [max_len, D]
        self.blocks = [
            {"qkv": rand(d, 3 * d, scale=1 / math.sqrt(d)), "out": rand(d, d, scale=1 / math.sqrt(d)),
             "up": rand(d, 2 * d, scale=1 / math.sqrt(d)), "down": rand(2 * d, d, scale=1 / math.sqrt(2 * d))}
            for _ in range(layers)
        ]
        self.head = rand(d, vocab, scale=3.0 / math.sqrt(d))  # [D, V]
        self.calls = 0

    # -- the model -------------------------------------------------------------------------

    @staticmethod
    def _norm(h: torch.Tensor) -> torch.Tensor:
        return h / h.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()

    def _run(self, ids: torch.Tensor, positions: torch.Tensor, key_mask: torch.Tensor,
             kv: list[list[torch.Tensor]] | None, start: int) -> torch.Tensor:
        """Hidden states ``[N, W, D]`` of a window; with ``kv`` its keys and values are written at ``start``."""
        if int(ids.max()) >= self.vocab or int(positions.max()) >= self.max_len:
            raise InvalidArgumentError("input_ids", tuple(ids.shape), f"ids < {self.vocab}, length <= {self.max_len}")
        h = self.embed[ids] + self.pos[positions]  # [N, W, D]
        n, w, d = h.shape
        e = d // self.heads
        bias = torch.zeros(key_mask.shape, dtype=h.dtype).masked_fill(key_mask == 0, float("-inf"))  # [N, S'] or [N, W, S']
        bias = bias[:, None, None, :] if bias.dim() == 2 else bias[:, None]  # [N, 1, 1 or W, S']
        for i, blk in enumerate(self.blocks):
            q, k, v = (self._norm(h) @ blk["qkv"]).split(d, dim=-1)  # [N, W, D] each
            q, k, v = (t.view(n, w, self.heads, e).transpose(1, 2) for t in (q, k, v))  # [N, H, W, E]
            if kv is not None:
                kv[i][0][:, :, start : start + w] = k
                kv[i][1][:, :, start : start + w] = v
                k, v = kv[i]  # [N, H, S, E]
            att = (q @ k.transpose(-1, -2)) / math.sqrt(e) + bias  # [N, H, W, S']
            a = att.softmax(-1) @ v  # [N, H, W, E]
            h = h + a.transpose(1, 2).reshape(n, w, d) @ blk["out"]  # [N, W, D]
            h = h + torch.nn.functional.silu(self._norm(h) @ blk["up"]) @ blk["down"]  # [N, W, D]
        return self._norm(h)  # [N, W, D]

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None) -> torch.Tensor:
        """Logits ``[N, S or last, V]`` of ``input_ids [N, S]``; 0 in ``attention_mask`` marks left padding."""
        self.calls += 1
        mask = attention_mask.long().cpu()  # [N, S]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # [N, S]
        h = self._run(input_ids.long().cpu(), positions, mask, None, 0)  # [N, S, D]
        if last is not None:
            h = h[:, -last:]
        return (h @ self.head).to(input_ids.device)  # [N, S or last, V]

    def masked_logits(self, input_ids: torch.Tensor, attention: torch.Tensor, position_ids: torch.Tensor,
                      keep: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, K', V]`` at ``keep [K']`` under the attention pattern ``attention [N, T, T]``
        (a :class:`~dmpo_core.contracts.MaskedLogitsFn`)."""
        self.calls += 1
        h = self._run(input_ids.long().cpu(), position_ids.long().cpu(), attention.long().cpu(), None, 0)  # [N, T, D]
        return (h[:, keep.long().cpu()] @ self.head).to(input_ids.device)  # [N, K', V]

    def open_cache(self, attention_mask: torch.Tensor) -> ToyKVCache:
        """An empty KV cache for sequences with ``attention_mask [N, S]``."""
        return ToyKVCache(self, attention_mask)


class ToyKVCache:
    """Per-layer keys and values ``[N, H, S, E]`` of :class:`ToyDiffusionLM` (a :class:`~dmpo_core.contracts.KVCache`)."""

    def __init__(self, model: ToyDiffusionLM, attention_mask: torch.Tensor) -> None:
        self.model = model
        self.mask = attention_mask.long().cpu()  # [N, S]
        self.positions = (self.mask.cumsum(-1) - 1).clamp(min=0)  # [N, S]
        n, s = self.mask.shape
        d = model.embed.shape[1]
        e = d // model.heads
        self.kv = [[torch.zeros(n, model.heads, s, e, dtype=torch.float64) for _ in range(2)] for _ in model.blocks]
        self.filled = False

    def forward(self, input_ids: torch.Tensor, *, start: int, stop: int, keep: tuple[int, int]) -> torch.Tensor:
        """Recompute ``[start, stop)`` of ``input_ids [N, S]``; logits ``[N, b - a, V]`` of ``keep = (a, b)``."""
        a, b = keep
        s = self.mask.shape[1]
        if not (0 <= start <= a < b <= stop <= s) or (not self.filled and (start, stop) != (0, s)):
            raise InvalidArgumentError("keep", keep, f"need 0 <= start <= a < b <= stop <= {s}, first call [0, {s})")
        self.model.calls += 1
        ids = input_ids.long().cpu()[:, start:stop]  # [N, W]
        h = self.model._run(ids, self.positions[:, start:stop], self.mask, self.kv, start)  # [N, W, D]
        self.filled = True
        return (h[:, a - start : b - start] @ self.model.head).to(input_ids.device)  # [N, b - a, V]

    def select(self, rows: torch.Tensor) -> ToyKVCache:
        """A cache of ``rows [R]`` only (copies of their keys and values)."""
        idx = rows.long().cpu()  # [R]
        out = ToyKVCache.__new__(ToyKVCache)
        out.model, out.mask, out.positions = self.model, self.mask[idx], self.positions[idx]  # [R, S] each
        out.kv = [[t[idx] for t in layer] for layer in self.kv]  # [R, H, S, E] each (indexing copies)
        out.filled = self.filled
        return out


__all__ = ["ToyDiffusionLM", "ToyKVCache"]
