"""The KV cache of the Hugging Face backends, for the samplers' block caches (Fast-dLLM).

:class:`PolicyLogits` is what ``HFPolicy.logits`` returns: the policy's logits function
(:class:`~dmpo_core.contracts.LogitsFn`), which can also open a :class:`HFKVCache`
(:class:`~dmpo_core.contracts.CachingLogitsFn`) and run one forward under a custom attention
pattern (:class:`~dmpo_core.contracts.MaskedLogitsFn`, for WINO's shadow block). The cache is
transformers' own ``StaticCache`` on the stock model, sized to the whole sequence ``S``: each forward rewinds
every layer's write position to the start of its window, so the window's keys and values
overwrite their own slots while attention reads all ``S`` slots (the window's fresh ones and
the cached rest) under the 2-D padding mask. A prefix-cache step is the window ``[block
start, S)``, a dual-cache step ``[block start, block end)``, and a full forward ``[0, S)``
refreshes every slot. Position ids are ``cumsum(attention_mask) - 1`` of the whole sequence,
sliced to the window, so left-padded rows see the positions they see uncached.

Dream (``family.shift_logits``): the logits of position ``a`` come from the hidden state at
``a - 1``, so a window whose logits start at ``a`` also recomputes position ``a - 1`` (one
committed token before the block; its keys and values are rewritten with the current
context). Fast-dLLM's Dream code instead gives the block's first position its own hidden
state's logits inside a cached window; we keep the model's shift, so a cache refreshed every
step gives exactly the uncached logits.

Letters: ``N`` rows, ``S`` sequence length, ``W`` window length, ``K`` kept positions, ``V``
vocabulary.
"""

from __future__ import annotations

from typing import Any

import torch

from dmpo_core.errors import InvalidArgumentError


class HFKVCache:
    """Keys and values of every layer for one batch ``[N, S]`` (a :class:`~dmpo_core.contracts.KVCache`)."""

    def __init__(self, model: torch.nn.Module, attention_mask: torch.Tensor, *, device: torch.device,
                 shift: bool) -> None:
        from transformers import StaticCache

        if attention_mask.dim() != 2:
            raise InvalidArgumentError("attention_mask", tuple(attention_mask.shape), "pass a 2-D mask [N, S]")
        self.model = model
        self.mask = attention_mask.to(device=device, dtype=torch.long)  # [N, S]
        self.position_ids = (self.mask.cumsum(-1) - 1).clamp(min=0)  # [N, S]
        self.shift = shift
        self.length = int(self.mask.shape[1])
        self.cache = StaticCache(config=model.config, max_cache_len=self.length)
        self.filled = False

    def _rewind(self, start: int) -> None:
        """Make every layer write its next keys and values from slot ``start`` on."""
        for layer in self.cache.layers:
            if getattr(layer, "is_initialized", False):  # transformers allocates a layer on its first write
                layer.cumulative_length.fill_(start)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, *, start: int, stop: int, keep: tuple[int, int]) -> torch.Tensor:
        """Recompute positions ``[start, stop)`` of ``input_ids [N, S]``; logits ``[N, b - a, V]`` of ``keep = (a, b)``."""
        a, b = keep
        s = self.length
        if tuple(input_ids.shape) != tuple(self.mask.shape):
            raise InvalidArgumentError("input_ids", tuple(input_ids.shape), f"pass the cached batch's shape {(tuple(self.mask.shape))}")
        if not (0 <= start <= a < b <= stop <= s):
            raise InvalidArgumentError("keep", keep, f"need 0 <= start <= a < b <= stop <= {s} (got start {start}, stop {stop})")
        if not self.filled and (start, stop) != (0, s):
            raise InvalidArgumentError("start", start, f"the first forward of a cache must cover the sequence [0, {s})")
        if self.shift and a > 0:
            start = min(start, a - 1)  # position a - 1 predicts token a
        first = a - 1 if self.shift and a > 0 else a  # first position whose raw logits are needed
        ids = input_ids[:, start:stop].to(device=self.mask.device, dtype=torch.long)  # [N, W]
        keep_idx = torch.arange(first - start, b - start, device=self.mask.device)  # [K or K+1]
        self._rewind(start)
        out = self.model(input_ids=ids, attention_mask=self.mask, position_ids=self.position_ids[:, start:stop],
                         cache=self.cache, use_cache=True, logits_to_keep=keep_idx)
        self.filled = True
        logits = out.logits  # [N, K (+1 with the shift), V]
        if self.shift:
            from dmpo.backends.hf_policy import shift_logits

            if a > 0:
                logits = shift_logits(logits, self.mask[:, first:b])[:, 1:]  # [N, K, V]
            else:  # position 0 keeps its own logits, as uncached
                logits = shift_logits(logits, self.mask[:, :b])  # [N, K, V]
        return logits

    @torch.no_grad()
    def select(self, rows: torch.Tensor) -> HFKVCache:
        """A cache of ``rows [R]`` only: a new ``StaticCache`` holding copies of their keys and values."""
        from transformers import StaticCache

        idx = rows.to(device=self.mask.device, dtype=torch.long)  # [R]
        out = HFKVCache.__new__(HFKVCache)
        out.model, out.shift, out.length, out.filled = self.model, self.shift, self.length, self.filled
        out.mask, out.position_ids = self.mask[idx], self.position_ids[idx]  # [R, S] each
        out.cache = StaticCache(config=self.model.config, max_cache_len=self.length)
        for old, new in zip(self.cache.layers, out.cache.layers, strict=True):
            if getattr(old, "is_initialized", False):
                keys, values = old.keys[idx], old.values[idx]  # [R, H, S, E] each
                new.lazy_initialization(keys, values)  # allocates [R, H, S, E] buffers
                new.keys.copy_(keys)
                new.values.copy_(values)
        return out


class PolicyLogits:
    """A policy's logits function (``policy.logits``) that can also open a :class:`HFKVCache`.

    Calling it is the policy's plain forward (with gradient in training mode);
    :meth:`open_cache` is for the samplers' block caches (always without gradient).
    """

    __slots__ = ("_policy",)

    def __init__(self, policy: Any) -> None:
        self._policy = policy

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None) -> torch.Tensor:
        """Logits ``[N, S or last, V]`` of ``input_ids [N, S]``; logits at i predict token i."""
        return self._policy.current_logits(input_ids, attention_mask, last=last)

    def masked_logits(self, input_ids: torch.Tensor, attention: torch.Tensor, position_ids: torch.Tensor,
                      keep: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, K', V]`` at ``keep [K']`` of ``input_ids [N, T]`` under the attention pattern
        ``attention [N, T, T]`` (bool, query x key) with ``position_ids [N, T]``; transformers takes
        a 4-D mask ``[N, 1, T, T]`` as given (a :class:`~dmpo_core.contracts.MaskedLogitsFn`).

        Raises:
            InvalidArgumentError: the family's logits are shifted (Dream): a custom pattern has no
                left neighbour to take a position's logits from.
        """
        policy = self._policy
        if policy.family.shift_logits:
            raise InvalidArgumentError("logits_fn", policy.family.name, "its logits are shifted (position i from the "
                                       "hidden state left of it), which a custom attention pattern cannot express; "
                                       "use a sampler without a shadow block (fast-dllm, eb)")
        device = policy.device
        out = policy.model(input_ids=input_ids.to(device=device, dtype=torch.long),
                           attention_mask=attention.to(device=device, dtype=torch.bool)[:, None],
                           position_ids=position_ids.to(device=device, dtype=torch.long), use_cache=False,
                           logits_to_keep=keep.to(device=device, dtype=torch.long))
        return out.logits  # [N, K', V]

    def open_cache(self, attention_mask: torch.Tensor) -> HFKVCache:
        """An empty KV cache for sequences with ``attention_mask [N, S]`` (0 on left padding)."""
        policy = self._policy
        return HFKVCache(policy.model, attention_mask, device=policy.device, shift=policy.family.shift_logits)


__all__ = ["HFKVCache", "PolicyLogits"]
