"""Samplers that decide per step how many positions to commit.

* ``fast-dllm``: confidence-threshold parallel decoding (Fast-dLLM), with an optional block KV cache:
  commit every masked position of the block whose predicted token has model probability
  above ``threshold``, and at least the most confident one.
* ``eb``: the entropy-bounded sampler: sort the block's masked positions by the entropy
  ``H_i`` of their predictive distribution and commit the largest prefix ``S`` with
  ``sum_{i in S} H_i - max_{i in S} H_i <= gamma`` (at least one).

Both finish a block when it has no masked position left, so NFE depends on the model;
it is at most ``gen_length``. docs/concepts.md section 5.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import torch

from dmpo_core.samplers.cache import cache_problem
from dmpo_core.samplers.common import DecodeResult, DecodingSampler, adaptive_decode
from dmpo_core.samplers.config import raise_problems


def threshold_rule(threshold: float):
    """Rule of ``fast-dllm``: candidates whose predicted token has probability > ``threshold``."""
    log_threshold = math.log(threshold)

    def rule(logp: torch.Tensor, entropy: torch.Tensor | None, candidates: torch.Tensor) -> torch.Tensor:
        return candidates & (logp > log_threshold)  # [N, K]

    return rule


def entropy_bound_rule(gamma: float):
    """Rule of ``eb``: the low-entropy prefix whose entropy sum minus its maximum is <= ``gamma``."""

    def rule(logp: torch.Tensor, entropy: torch.Tensor | None, candidates: torch.Tensor) -> torch.Tensor:
        assert entropy is not None
        ent = entropy.masked_fill(~candidates, float("inf"))  # [N, K]
        sorted_ent, order = ent.sort(dim=1, stable=True)  # [N, K]
        # sorted ascending, so the prefix maximum is the current element; inf - inf = nan -> False
        keep = (sorted_ent.cumsum(dim=1) - sorted_ent) <= gamma  # [N, K]
        return torch.zeros_like(candidates).scatter(1, order, keep) & candidates  # [N, K]

    return rule


@attrs.frozen(kw_only=True)
class FastDllmSampler(DecodingSampler):
    """Confidence-threshold parallel decoding in semi-autoregressive blocks (optionally KV-cached).

    Callable as the :class:`~dmpo_core.contracts.Sampler` contract says, with the extra
    keyword ``prefill`` of :class:`~dmpo_core.samplers.LowConfidenceSampler`.
    """

    gen_length: int = 128
    """Completion length ``L`` in tokens."""
    block_length: int = 32
    """Block length; must divide ``gen_length``."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy."""
    threshold: float = 0.9
    """Commit every masked position whose predicted token's probability exceeds this, in (0, 1]."""
    cache: str = "none"
    """Where a step's logits come from: ``none`` (a full forward per step, the exact model),
    ``prefix`` (Fast-dLLM's prefix KV cache), ``dual`` (also caches the masked suffix) or
    ``refresh`` (the cache path recomputed every step; equals ``none``, a check). The block
    caches are an approximation in a bidirectional model; they need a backend whose logits
    keep a KV cache (:class:`~dmpo_core.contracts.CachingLogitsFn`)."""

    def __attrs_post_init__(self) -> None:
        problems = [*self.common_problems(), cache_problem(self.cache)]
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) or not (
            0.0 < self.threshold <= 1.0
        ):
            problems.append(f"threshold={self.threshold!r}: pass a probability in (0, 1] (0.9 is Fast-dLLM's)")
        raise_problems(problems, "fast-dllm")

    def decoder(self) -> tuple[Callable[..., DecodeResult], dict[str, Any]]:
        """Adaptive decoding, committing every position above the threshold (at least one)."""
        return adaptive_decode, {"rule": threshold_rule(float(self.threshold)), "cache": self.cache}


@attrs.frozen(kw_only=True)
class EntropyBoundedSampler(DecodingSampler):
    """Entropy-bounded parallel decoding in semi-autoregressive blocks.

    Callable as the :class:`~dmpo_core.contracts.Sampler` contract says, with the extra
    keyword ``prefill``.
    """

    gen_length: int = 128
    """Completion length ``L`` in tokens."""
    block_length: int = 32
    """Block length; must divide ``gen_length``."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy."""
    gamma: float = 0.1
    """Entropy budget in nats: larger commits more positions per step (0: one per step unless ties)."""
    cache: str = "none"
    """Where a step's logits come from: ``none`` (a full forward per step, the exact model),
    ``prefix`` (Fast-dLLM's prefix KV cache), ``dual`` (also caches the masked suffix) or
    ``refresh`` (the cache path recomputed every step; equals ``none``, a check). The block
    caches are an approximation in a bidirectional model; they need a backend whose logits
    keep a KV cache (:class:`~dmpo_core.contracts.CachingLogitsFn`)."""

    def __attrs_post_init__(self) -> None:
        problems = [*self.common_problems(), cache_problem(self.cache)]
        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not (
            math.isfinite(self.gamma) and self.gamma >= 0
        ):
            problems.append(f"gamma={self.gamma!r}: pass a finite entropy budget >= 0 (in nats)")
        raise_problems(problems, "eb")

    def decoder(self) -> tuple[Callable[..., DecodeResult], dict[str, Any]]:
        """Adaptive decoding, committing the lowest-entropy positions within the budget."""
        return adaptive_decode, {"rule": entropy_bound_rule(float(self.gamma)), "need_entropy": True,
                                 "cache": self.cache}
