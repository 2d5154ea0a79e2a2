"""LLaDA's low-confidence remasking sampler, and its random-remasking variant.

Registered as ``low-confidence`` and ``random-remask`` (docs/concepts.md section 5).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import attrs

from dmpo_core.errors import ConfigError
from dmpo_core.samplers.cache import cache_problem
from dmpo_core.samplers.common import DecodeResult, DecodingSampler, scheduled_decode
from dmpo_core.samplers.config import raise_problems, steps_problems

REMASKING: tuple[str, ...] = ("low_confidence", "random")


@attrs.frozen(kw_only=True)
class LowConfidenceSampler(DecodingSampler):
    """Semi-autoregressive blocks, ``k`` commits per step chosen by confidence (or at random).

    The completion (all mask tokens, or a ``prefill``) is split into
    ``gen_length // block_length`` blocks decoded left to right; each block gets
    ``steps // num_blocks`` steps. A step is one forward of prompt + completion; every
    masked position of the current block is predicted (Gumbel-max in float64 at
    ``temperature``, argmax at 0; never the mask token) and the ``k`` with the highest
    model probability of their prediction are committed (``k`` from an even per-row
    schedule). ``remasking="random"`` commits ``k`` random masked positions instead.
    NFE is the number of forwards: ``steps`` without a prefill, fewer with one when
    some steps would commit nothing in every row.

    Calling it follows the :class:`~dmpo_core.contracts.Sampler` contract, with one
    extra keyword ``prefill [N, L]`` (token ids, ``mask_id`` at the positions to
    decode; the other positions are kept as given).
    """

    gen_length: int = 128
    """Completion length ``L`` in tokens."""
    block_length: int = 32
    """Semi-autoregressive block length; must divide ``gen_length`` (``gen_length`` = one block)."""
    steps: int | None = None
    """Decoding steps (forwards) in all; a multiple of the number of blocks, at most
    ``gen_length``. None: ``gen_length`` (one token per step, DMPO's evaluation setting)."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy (argmax)."""
    remasking: Literal["low_confidence", "random"] = "low_confidence"
    """Which masked positions a step commits: the most confident, or random ones."""
    record_logp: bool = False
    """Return each committed token's log-probability (``token_logp``); its sum is the exact
    trajectory log-probability only with ``remasking="random"``."""
    cache: str = "none"
    """Where a step's logits come from: ``none`` (a full forward per step, the exact model),
    ``prefix`` (Fast-dLLM's prefix KV cache: the prompt and finished blocks encoded once per
    block), ``dual`` (also caches the masked suffix) or ``refresh`` (the cache path recomputed
    at every step; equals ``none``, a check). The block caches are an approximation in a
    bidirectional model; they need a backend whose logits keep a KV cache."""

    def __attrs_post_init__(self) -> None:
        problems = [
            *self.common_problems(),
            *([] if self.steps is None else steps_problems(self.steps, self.gen_length, self.block_length)),
        ]
        if self.remasking not in REMASKING:
            problems.append(f"remasking={self.remasking!r}: choose one of {', '.join(REMASKING)}")
        if not isinstance(self.record_logp, bool):
            problems.append(f"record_logp={self.record_logp!r}: pass true or false")
        problems.append(cache_problem(self.cache))
        if self.record_logp is True and self.cache in ("prefix", "dual"):
            problems.append(f"cache={self.cache!r} with record_logp=true: cached logits are an approximation of "
                            "the model, so the recorded log-probs would not be its; use cache=none")
        raise_problems(problems, "low-confidence")

    @property
    def num_steps(self) -> int:
        """The steps actually used (``steps``, or ``gen_length`` when it is None)."""
        return self.gen_length if self.steps is None else self.steps

    def decoder(self) -> tuple[Callable[..., DecodeResult], dict[str, Any]]:
        """The fixed schedule of ``num_steps`` steps, most confident (or random) positions first."""
        return scheduled_decode, {"steps": self.num_steps, "remasking": self.remasking, "cache": self.cache}

    @property
    def returns_logp(self) -> bool:
        """Whether a call returns per-token log-probs and the decoding order."""
        return self.record_logp


def random_remask_sampler(**options: object) -> LowConfidenceSampler:
    """Factory of ``random-remask``: :class:`LowConfidenceSampler` with ``remasking="random"``.

    A ``remasking`` option other than ``"random"`` contradicts the name and is an error
    (silently overriding either choice would hide a misconfiguration).
    """
    remasking = options.pop("remasking", "random")
    if remasking != "random":
        raise ConfigError(
            [
                (
                    f"remasking={remasking!r}: sampler 'random-remask' always remasks at random; "
                    "drop the option or use sampler 'low-confidence'"
                )
            ],
            source="sampler 'random-remask' config",
        )
    return LowConfidenceSampler(remasking="random", **options)  # type: ignore[arg-type]
