"""Random masks for denoising losses and ELBO estimates (docs/concepts.md section 1).

A mask marks the completion positions replaced by the mask token. Positions outside
``eligible`` (the prompt is never part of it; optionally the tail after the first EOS,
or the cells a reward does not read) are never masked.

Two variance reductions:

* clamped ratio: ``t ~ U(0, 1)`` is used as ``0.1 + 0.9 t``, so no mask is nearly empty;
* antithetic pairs: replicate ``2k+1`` masks exactly the eligible positions that
  replicate ``2k`` left visible, so every eligible token is masked once per pair.
"""

from __future__ import annotations

import torch

from dmpo_core.checks import check_replicates

CLAMP_LOW = 0.1


def mask_ratios(
    n_draws: int, n_rows: int, *, clamp: bool = True, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """Mask ratios ``t`` of shape ``[n_draws, n_rows]``, clamped to ``[0.1, 1)`` when asked."""
    t = torch.rand(n_draws, n_rows, generator=generator, device=device)  # [D, N]
    return CLAMP_LOW + (1.0 - CLAMP_LOW) * t if clamp else t  # [D, N]


def sample_masks(
    eligible: torch.Tensor,
    replicates: int,
    *,
    antithetic: bool = True,
    clamp: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``R`` masks over the eligible completion positions.

    Args:
        eligible: ``[N, L]`` bool, the positions that may be masked.
        replicates: ``R`` (even when ``antithetic``).
        antithetic: draw pairs ``(mask, eligible & ~mask)``.
        clamp: use ratios ``0.1 + 0.9 t``.
        generator: CPU generator for reproducible draws (masks are moved to ``eligible``'s device).

    Returns:
        ``[R, N, L]`` bool masks, False outside ``eligible``.
    """
    check_replicates(replicates, antithetic)
    elig = eligible.bool()  # [N, L]
    n, length = elig.shape
    draws = replicates // 2 if antithetic else replicates
    t = mask_ratios(draws, n, clamp=clamp, generator=generator)  # [D, N]
    u = torch.rand(draws, n, length, generator=generator)  # [D, N, L]
    first = (u < t[:, :, None]).to(elig.device) & elig  # [D, N, L]
    if not antithetic:
        return first  # [R, N, L]
    second = ~first & elig  # [D, N, L]
    return torch.stack([first, second], dim=1).reshape(replicates, n, length)  # [R, N, L]
