"""Random-order autoregressive (ROAR) sampling with exact trajectory log-probabilities.

Registered as ``roar`` (docs/concepts.md section 5). Within each block the masked positions
are decoded one per step in a uniformly random order; the order does not depend on the
drawn tokens, so the sum of the recorded per-token log-probabilities is the exact
``log p_old(x)`` of the trajectory. :func:`~dmpo_core.samplers.common.trajectory_logp`
replays the same order under the reference to give the exact ``log p_ref(x)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from dmpo_core.samplers.common import DecodeResult, DecodingSampler, scheduled_decode
from dmpo_core.samplers.config import raise_problems


@attrs.frozen(kw_only=True)
class RoarSampler(DecodingSampler):
    """One token per step in a random order per block; ``token_logp`` always returned.

    NFE equals ``gen_length`` without a prefill (the number of free positions' steps
    with one: a step where no row has a position left is skipped). ``token_logp`` is the
    log-probability of each token under the model at temperature 1 with the mask token
    excluded (how a reference is evaluated), or under the tempered distribution actually
    sampled from when ``tempered_logp`` is set; 0 at prefilled positions.
    """

    gen_length: int = 128
    """Completion length ``L`` in tokens."""
    block_length: int = 32
    """Block length; must divide ``gen_length``."""
    temperature: float = 1.0
    """Sampling temperature; 0 is greedy in a random order."""
    tempered_logp: bool = False
    """Record log-probs of ``softmax(logits / temperature)`` (the proposal) instead of the model's."""

    def __attrs_post_init__(self) -> None:
        problems = self.common_problems()
        if not isinstance(self.tempered_logp, bool):
            problems.append(f"tempered_logp={self.tempered_logp!r}: pass true or false")
        raise_problems(problems, "roar")

    def decoder(self) -> tuple[Callable[..., DecodeResult], dict[str, Any]]:
        """One random position per step, recording the log-probs (tempered ones when asked)."""
        return scheduled_decode, {"steps": self.gen_length, "remasking": "random", "tempered_logp": self.tempered_logp}

    @property
    def returns_logp(self) -> bool:
        """Whether a call returns per-token log-probs and the decoding order."""
        return True
