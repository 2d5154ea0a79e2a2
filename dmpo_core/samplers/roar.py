"""Random-order autoregressive (ROAR) sampling with exact trajectory log-probabilities.

Registered as ``roar`` (ALGORITHM.md section 5). Within each block the masked positions
are decoded one per step in a uniformly random order; the order does not depend on the
drawn tokens, so the sum of the recorded per-token log-probabilities is the exact
``log p_old(x)`` of the trajectory. :func:`~dmpo_core.samplers.common.trajectory_logp`
replays the same order under the reference to give the exact ``log p_ref(x)``.
"""

from __future__ import annotations

import attrs
import torch

from dmpo_core.contracts import LogitsFn
from dmpo_core.samplers.common import DecodeResult, DecodingSampler, scheduled_decode
from dmpo_core.samplers.config import (
    block_problems,
    raise_problems,
    temperature_problem,
)


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
        problems: list[str | None] = [
            *block_problems(self.gen_length, self.block_length),
            temperature_problem(self.temperature),
        ]
        if not isinstance(self.tempered_logp, bool):
            problems.append(f"tempered_logp={self.tempered_logp!r}: pass true or false")
        raise_problems(problems, "roar")

    def decode(
        self,
        logits_fn: LogitsFn,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        *,
        mask_id: int,
        generator: torch.Generator | None = None,
        prefill: torch.Tensor | None = None,
    ) -> DecodeResult:
        """Decode and return the whole trajectory record (completions, NFE, log-probs, commit steps)."""
        return scheduled_decode(
            logits_fn,
            prompt_ids,
            prompt_mask,
            mask_id=mask_id,
            gen_length=self.gen_length,
            block_length=self.block_length,
            steps=self.gen_length,
            temperature=float(self.temperature),
            remasking="random",
            generator=generator,
            prefill=prefill,
            tempered_logp=self.tempered_logp,
        )

    @property
    def returns_logp(self) -> bool:
        """Whether a call returns per-token log-probs and the decoding order."""
        return True
