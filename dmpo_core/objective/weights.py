"""Importance weights toward the reward-tilted target (docs/concepts.md section 2).

Rows are laid out prompt-major: a batch of ``B`` prompts with ``G`` completions each is a
vector ``[B*G]`` whose rows ``g*G .. g*G+G-1`` form group ``g``. A row may be *invalid*
(its reward is missing); invalid rows get weight 0 and do not take part in the softmax of
their group, and a group with no valid row gets all-zero weights.

All arithmetic runs in float64: the tensors are tiny (``[B*G]``), and rewards divided by a
small ``alpha`` reach 1e6 in magnitude, where float32 would lose the differences that
matter and bf16 would lose everything.
"""

from __future__ import annotations

import attrs
import torch

from dmpo_core.checks import check_coeff

NEG_INF = float("-inf")


def tilted_logits(
    rewards: torch.Tensor, log_rnd: torch.Tensor | None, alpha: float, sign: float = 1.0
) -> torch.Tensor:
    """Log of the (anti-)tilted target's density ratio, before the proximal coefficient.

    ``sign=+1`` gives ``log_rnd + r/alpha`` (the target ``p_ref * exp(r/alpha)``);
    ``sign=-1`` gives ``log_rnd - r/alpha`` (the anti-tilted target of the negative
    baseline). With ``alpha = 0`` the reference term is dropped and the result is
    ``sign * r``. Invalid (NaN) rewards stay NaN; the softmax masks them.
    """
    r = rewards.double()  # [B*G]
    if alpha == 0.0:
        return sign * r  # [B*G]
    assert log_rnd is not None
    return log_rnd.double() + sign * r / alpha  # [B*G]


def group_softmax(logits: torch.Tensor, group_size: int, valid: torch.Tensor) -> torch.Tensor:
    """Softmax of ``logits`` within each group over the valid rows only.

    Infinite logits are handled as the limit they stand for, never as NaN: a tilted logit
    ``log_rnd + r / alpha`` overflows to ``+-inf`` when ``|r| / alpha`` exceeds the float64
    range (a valid but tiny ``alpha``, or huge rewards). The rows at the group's maximum
    share the weight equally (if that maximum is ``+inf``, every other row gets 0; if it is
    ``-inf``, all valid rows are at it and get ``1/n``).

    Args:
        logits: ``[B*G]`` any float dtype; entries of invalid rows are ignored.
        group_size: ``G``.
        valid: ``[B*G]`` bool.

    Returns:
        ``[B*G]`` float64 weights: non-negative, summing to 1 over the valid rows of each
        group that has any, 0 on invalid rows and on groups with no valid row.
    """
    z = logits.double().view(-1, group_size)  # [B, G]
    ok = valid.view(-1, group_size)  # [B, G]
    z = torch.where(ok, z, torch.full_like(z, NEG_INF))  # [B, G]
    top = z.amax(dim=1, keepdim=True)  # [B, 1]; -inf for a group with no valid row, +inf on overflow
    # Bug fix: ``exp(z - top)`` was NaN where ``z = top = +-inf``. The rows at the maximum now get
    # exp(0) = 1 and, when the maximum is infinite, every other row exp(-inf) = 0; no NaN is formed.
    at_top = ok & (z == top)  # [B, G]
    below = torch.where(torch.isfinite(top), z - top, torch.full_like(z, NEG_INF))  # [B, G]; <= 0
    expd = torch.exp(torch.where(at_top, torch.zeros_like(z), below))  # [B, G]; exactly 0 on invalid rows
    total = expd.sum(dim=1, keepdim=True)  # [B, 1]; >= 1 when the group has a valid row
    w = torch.where(total > 0, expd / total.clamp_min(1.0), torch.zeros_like(expd))  # [B, G]
    return w.reshape(-1)  # [B*G]


def group_ess(weights: torch.Tensor, group_size: int, valid: torch.Tensor) -> torch.Tensor:
    """Normalised effective sample size ``1 / (n * sum_j w_j^2)`` of each group.

    ``n`` is the number of valid rows of the group, so the ESS lies in ``[1/n, 1]``
    (``[1/G, 1]`` when every reward is valid). A group with no valid row has ESS 0.

    Returns:
        ``[B]`` float64.
    """
    w = weights.double().view(-1, group_size)  # [B, G]
    n = valid.view(-1, group_size).sum(dim=1).double()  # [B]
    sq = (w * w).sum(dim=1)  # [B]
    ess = 1.0 / (n * sq).clamp_min(torch.finfo(torch.float64).tiny)  # [B]
    return torch.where(n > 0, ess.clamp(max=1.0), torch.zeros_like(ess))  # [B]


def mean_ess(weights: torch.Tensor, group_size: int, valid: torch.Tensor) -> float:
    """Mean group ESS over the groups that have at least one valid row (1.0 if none has)."""
    ess = group_ess(weights, group_size, valid)  # [B]
    has = valid.view(-1, group_size).any(dim=1)  # [B]
    if not bool(has.any()):
        return 1.0
    return float(ess[has].mean())


@attrs.frozen(kw_only=True)
class CoeffSearch:
    """Result of the adaptive proximal-coefficient search."""

    coeff: float
    """The coefficient chosen, in ``[low, high]``."""
    ess: float
    """Mean group ESS of the weights at ``coeff``."""
    fallback: bool
    """True when no coefficient in ``[low, high]`` reaches the threshold and a bound was used."""


def adaptive_coeff(
    logits: torch.Tensor,
    group_size: int,
    valid: torch.Tensor,
    *,
    threshold: float = 0.7,
    low: float = 0.01,
    high: float = 0.99,
    tol: float = 1e-4,
    max_iter: int = 64,
) -> CoeffSearch:
    """Choose ``c`` in ``[low, high]`` so that the mean group ESS of ``softmax(c * logits)`` is ``threshold``.

    The ESS of ``softmax(c z)`` does not increase with ``c`` (``d/dc log sum w^2`` is
    ``2 (E_{w(2c)}[z] - E_{w(c)}[z]) >= 0``), so the mean over groups is monotone too and
    bisection finds the root when ``[low, high]`` brackets it.

    Design choice (the paper leaves it open): ONE coefficient per batch, matched on the
    mean ESS over groups with a valid row. When the bracket holds no root, the search falls
    back to the nearer bound and reports ``fallback=True``: ``high`` when the ESS stays
    above the threshold (the weights are already spread; take the largest allowed step),
    ``low`` when it stays below (the most tempered step allowed).
    """
    check_coeff(low, "coeff_min")
    check_coeff(high, "coeff_max")
    if not low < high:
        from dmpo_core.errors import InvalidArgumentError

        raise InvalidArgumentError("coeff_min", low, f"it must be below coeff_max={high}")
    z = logits.double()  # [B*G]

    def ess_at(c: float) -> float:
        return mean_ess(group_softmax(c * z, group_size, valid), group_size, valid)

    ess_high = ess_at(high)
    if ess_high >= threshold - tol:
        return CoeffSearch(coeff=high, ess=ess_high, fallback=ess_high > threshold + tol)
    ess_low = ess_at(low)
    if ess_low <= threshold + tol:
        return CoeffSearch(coeff=low, ess=ess_low, fallback=ess_low < threshold - tol)
    lo, hi = low, high  # invariant: ess(lo) > threshold > ess(hi)
    mid, ess_mid = lo, ess_low
    for _ in range(max_iter):
        mid = 0.5 * (lo + hi)
        ess_mid = ess_at(mid)
        if abs(ess_mid - threshold) <= tol:
            break
        if ess_mid > threshold:
            lo = mid
        else:
            hi = mid
    return CoeffSearch(coeff=mid, ess=ess_mid, fallback=abs(ess_mid - threshold) > tol)
