"""Denoising cross-entropy and ELBO estimates of sequence log-likelihood (docs/concepts.md section 1).

The pure functions take per-token log-probs ``[R, N, L]`` and masks ``[R, N, L]``; the
:func:`masked_token_logp` helper produces the log-probs from any logits function (a
policy's ``logits`` or ``reference_logits``), so the estimators are testable without a
model.
"""

from __future__ import annotations

import torch

from dmpo_core.contracts import LogitsFn


def noisy_inputs(
    prompt_ids: torch.Tensor, completion_ids: torch.Tensor, masks: torch.Tensor, mask_id: int
) -> torch.Tensor:
    """Model inputs ``[R*N, P+L]``: the prompt, then the completion with masked positions set to ``mask_id``."""
    r, n, length = masks.shape
    noisy = torch.where(masks, torch.full_like(masks, mask_id, dtype=completion_ids.dtype), completion_ids[None])  # [R, N, L]
    prompts = prompt_ids[None].expand(r, -1, -1)  # [R, N, P]
    return torch.cat([prompts, noisy], dim=2).reshape(r * n, -1)  # [R*N, P+L]


def masked_token_logp(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    masks: torch.Tensor,
    mask_id: int,
) -> torch.Tensor:
    """Log-probs of the true completion tokens at the masked positions of each replicate.

    All ``R`` replicates go through the model in one call of ``R*N`` rows. Only the last
    ``L`` positions' logits are requested, and the log-softmax is evaluated only at masked
    positions (``[K, V]`` instead of ``[R*N, L, V]``).

    Args:
        logits_fn: maps ``(input_ids, attention_mask, last=L)`` to logits ``[R*N, L, V]``.
        prompt_ids: ``[N, P]``; prompt_mask: ``[N, P]``; completion_ids: ``[N, L]``.
        masks: ``[R, N, L]`` bool.

    Returns:
        ``[R, N, L]`` float32, 0 where not masked.
    """
    r, n, length = masks.shape
    inputs = noisy_inputs(prompt_ids, completion_ids, masks, mask_id)  # [R*N, P+L]
    attn = torch.cat([prompt_mask.bool(), torch.ones_like(completion_ids, dtype=torch.bool)], dim=1)  # [N, P+L]
    attn = attn[None].expand(r, -1, -1).reshape(r * n, -1)  # [R*N, P+L]
    logits = logits_fn(inputs, attn, last=length)  # [R*N, L, V]
    flat_mask = masks.reshape(r * n, length)  # [R*N, L]
    picked = logits[flat_mask].float()  # [K, V]
    targets = completion_ids[None].expand(r, -1, -1).reshape(r * n, length)[flat_mask]  # [K]
    logp = picked.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(picked, dim=1)  # [K]
    out = torch.zeros(r * n, length, dtype=torch.float32, device=logits.device)  # [R*N, L]
    out = out.masked_scatter(flat_mask, logp)  # [R*N, L]; differentiable in logp
    return out.view(r, n, length)  # [R, N, L]


def dce_per_row(token_logp: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Denoising cross-entropy ``(1/m) * sum_{i masked} -log p(x^i | x_t)`` of each replicate and row.

    ``m`` is clamped to >= 1, so an empty mask gives 0.

    Args:
        token_logp: ``[R, N, L]``; masks: ``[R, N, L]`` bool.

    Returns:
        ``[R, N]``.
    """
    m = masks.sum(dim=-1).clamp_min(1).to(token_logp.dtype)  # [R, N]
    return -(token_logp * masks).sum(dim=-1) / m  # [R, N]


def elbo_from_logp(token_logp: torch.Tensor, masks: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """ELBO estimate ``(1/R) sum_r (L/m_r) sum_{i masked in r} log p(x^i | x_t(r))`` of each row.

    ``L`` is the number of eligible positions of the row (the completion length when all
    are eligible); ``m_r`` is clamped to >= 1.

    Args:
        token_logp: ``[R, N, L]``; masks: ``[R, N, L]`` bool; eligible: ``[N, L]`` bool.

    Returns:
        ``[N]`` log-likelihood lower-bound estimates.
    """
    n_elig = eligible.sum(dim=-1).to(token_logp.dtype)  # [N]
    return -(dce_per_row(token_logp, masks) * n_elig[None]).mean(dim=0)  # [N]


@torch.no_grad()
def paired_elbo(
    current: LogitsFn,
    reference: LogitsFn,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    eligible: torch.Tensor,
    mask_id: int,
    *,
    replicates: int = 4,
    antithetic: bool = True,
    clamp: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO estimates of the same completions under two models with SHARED masks.

    Common random numbers make the difference ``log_ref - log_cur`` (the log-RND) far less
    noisy than two independent estimates.

    Returns:
        ``(log_p_current [N], log_p_reference [N])`` float32, no gradient.
    """
    from dmpo_core.objective.masks import sample_masks

    masks = sample_masks(eligible, replicates, antithetic=antithetic, clamp=clamp, generator=generator)  # [R, N, L]
    cur = masked_token_logp(current, prompt_ids, prompt_mask, completion_ids, masks, mask_id)  # [R, N, L]
    ref = masked_token_logp(reference, prompt_ids, prompt_mask, completion_ids, masks, mask_id)  # [R, N, L]
    return elbo_from_logp(cur, masks, eligible), elbo_from_logp(ref, masks, eligible)  # [N], [N]
