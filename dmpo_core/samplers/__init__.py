"""Rollout samplers of masked diffusion LMs (docs/concepts.md section 5).

Registered through the ``register_samplers`` hook like any plugin's (entry point
``samplers``):

==================  =====================================================================
name                what a step commits
==================  =====================================================================
``low-confidence``  the ``k`` most confident masked positions of the block (LLaDA)
``random-remask``   ``k`` random masked positions (``low-confidence`` with remasking=random)
``roar``            one random position; exact per-token log-probs (``token_logp``)
``fast-dllm``       every position above a confidence threshold (at least one)
``eb``              the lowest-entropy positions within an entropy budget (at least one)
``wino``            drafts above a low threshold, re-masks drafts a shadow block doubts (WINO)
==================  =====================================================================

Every sampler is a frozen attrs config, callable as
:class:`~dmpo_core.contracts.Sampler` with the extra keyword ``prefill [N, L]``
(``mask_id`` where to decode, fixed tokens elsewhere), and has ``decode(...)`` returning
the full :class:`~dmpo_core.samplers.common.DecodeResult` (with each token's commit step,
which :func:`~dmpo_core.samplers.common.trajectory_logp` replays under another model).
"""

from __future__ import annotations

from dmpo_core.hookspecs import hookimpl
from dmpo_core.samplers.adaptive import EntropyBoundedSampler, FastDllmSampler
from dmpo_core.samplers.common import (
    DecodeResult,
    num_transfer_schedule,
    trajectory_logp,
)
from dmpo_core.samplers.low_confidence import (
    LowConfidenceSampler,
    random_remask_sampler,
)
from dmpo_core.samplers.roar import RoarSampler
from dmpo_core.samplers.wino import WinoSampler

__all__ = [
    "DecodeResult",
    "EntropyBoundedSampler",
    "FastDllmSampler",
    "LowConfidenceSampler",
    "RoarSampler",
    "WinoSampler",
    "num_transfer_schedule",
    "random_remask_sampler",
    "register_samplers",
    "trajectory_logp",
]


@hookimpl
def register_samplers(register):
    """Register the built-in samplers."""
    register(
        "low-confidence",
        LowConfidenceSampler,
        options=LowConfidenceSampler,
        help="LLaDA blocks, k most confident positions per step (gen_length, block_length, steps, temperature, remasking)",
    )
    register(
        "random-remask",
        LowConfidenceSampler,
        options=LowConfidenceSampler,
        fixed={"remasking": "random"},
        help="LLaDA blocks, k random positions per step (exact token_logp with record_logp=true)",
    )
    register(
        "roar",
        RoarSampler,
        options=RoarSampler,
        help="random-order autoregressive, one token per step, exact per-token log-probs",
    )
    register(
        "fast-dllm",
        FastDllmSampler,
        options=FastDllmSampler,
        help="confidence-threshold parallel decoding per block (threshold; cache none|prefix|dual)",
    )
    register(
        "eb",
        EntropyBoundedSampler,
        options=EntropyBoundedSampler,
        aliases=("entropy-bounded",),
        help="entropy-bounded parallel decoding per block (gamma)",
    )
    register(
        "wino",
        WinoSampler,
        options=WinoSampler,
        help="wide-in narrow-out revokable decoding with a shadow block (threshold, verify_threshold; LLaDA family)",
    )
