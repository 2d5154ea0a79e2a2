"""The weighted denoising cross-entropy (WDCE) loss of DMPO (docs/concepts.md section 2).

For a batch of ``B`` groups:

    loss = 1/(B R) * sum_j sum_r a_j * DCE_theta(x_j; t_r, mask_r)

With uniform advantages ``a_j = 1/G`` this is the mean DCE over completions and
replicates: the masked-diffusion SFT loss (section 4), so SFT runs through the same code.
The loss is a sum over rows, so a group-aligned slice of the batch gives the slice's
share, and slice losses add up to the full loss (gradient accumulation).
"""

from __future__ import annotations

import attrs
import torch

from dmpo_core.checks import check_replicates, check_same_shape
from dmpo_core.contracts import Policy, WeightingScheme
from dmpo_core.contracts import CURRENT_LOGP
from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.errors import InvalidArgumentError
from dmpo_core.objective.estimators import dce_per_row, elbo_from_logp, masked_token_logp
from dmpo_core.objective.masks import sample_masks


def wdce_loss(
    token_logp: torch.Tensor,
    masks: torch.Tensor,
    advantages: torch.Tensor,
    num_groups: int,
    *,
    negative_cap: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """WDCE loss from per-token log-probs.

    Args:
        token_logp: ``[R, N, L]`` log-probs of the true tokens (0 where not masked).
        masks: ``[R, N, L]`` bool.
        advantages: ``[N]`` weights after baseline subtraction (no gradient).
        num_groups: ``B`` of the full batch (normaliser; slices pass the full batch's B).
        negative_cap: NOT in the paper (off by default). For rows with a negative advantage,
            use ``min(DCE, cap)``: once a badly rewarded completion's denoising cross-entropy
            exceeds ``cap`` nats per token it is not pushed further. The negative part of
            WDCE is otherwise unbounded and can dominate (docs/results.md, prototype findings).

    Returns:
        Scalar loss and its stats: ``loss``; ``dce_mean``, the mean denoising cross-entropy
        per completion and replicate (an SFT-style loss); ``masked_fraction``, the mean
        fraction of eligible completion positions that were masked.
    """
    r, n, length = masks.shape
    check_same_shape("token_logp", token_logp, (r, n, length), "[R, N, L]")
    check_same_shape("advantages", advantages, (n,), "[N]")
    if num_groups < 1:
        raise InvalidArgumentError("num_groups", num_groups, "pass the number of prompts B >= 1")
    dce = dce_per_row(token_logp, masks)  # [R, N]
    adv = advantages.detach().to(dce.dtype)  # [N]
    scored = dce  # [R, N]
    if negative_cap is not None:
        capped = torch.clamp(dce, max=negative_cap)  # [R, N]; no gradient past the cap
        scored = torch.where(adv[None, :] < 0, capped, dce)  # [R, N]
    loss = (adv[None, :] * scored).sum() / (r * num_groups)  # scalar
    stats = {
        "loss": float(loss.detach()),
        "dce_mean": float(dce.detach().mean()),
        "masked_fraction": float(masks.float().mean()),
    }
    return loss, stats


@attrs.frozen(kw_only=True)
class WdceObjective:
    """DMPO's loss: WDCE with ``R`` replicates, clamped ratios and antithetic masks."""

    replicates: int = 4
    """``R``: masks per completion (even when antithetic)."""
    antithetic: bool = True
    """Draw masks in complementary pairs."""
    clamp: bool = True
    """Use mask ratios ``0.1 + 0.9 t``."""
    negative_cap: float | None = None
    """Not in the paper: cap (nats per token) on the DCE of negatively weighted completions."""
    loss_scale: float = 1.0
    """Multiplies the loss, so the gradient before clipping (the ``paper`` preset's 0.25: the
    official code's loss is a per-GPU sum without our 1/B, 0.25x ours in its released layout;
    AdamW is invariant to the scale, the gradient-norm clip is not)."""

    def __attrs_post_init__(self) -> None:
        check_replicates(self.replicates, self.antithetic)
        if isinstance(self.loss_scale, bool) or not isinstance(self.loss_scale, (int, float)) or not (
                0 < self.loss_scale < float("inf")):
            raise InvalidArgumentError("loss_scale", self.loss_scale, "pass a finite number > 0 (1 is ours, 0.25 the paper's)")
        if self.negative_cap is not None and not (isinstance(self.negative_cap, (int, float)) and self.negative_cap > 0):
            raise InvalidArgumentError("negative_cap", self.negative_cap, "pass a positive number of nats, or None")

    @property
    def needs(self) -> frozenset[str]:
        """Nothing beyond the advantages: WDCE scores completions in its own forward."""
        return frozenset()

    def prepare(self, policy: Policy, batch: RolloutBatch, *, num_iterations: int,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
        """No rollout-time data (and no random draw)."""
        return {}

    def __call__(
        self,
        policy: Policy,
        batch: RolloutBatch,
        weights: WeightOutput,
        *,
        num_groups: int,
        iteration: int = 0,
        weighting: WeightingScheme | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss on ``batch`` (a group-aligned slice of a batch of ``num_groups`` groups).

        When ``weighting`` needs the current policy's likelihood (the unbiased
        baseline), the ELBO is read off this loss's own forward (same masks, detached),
        so it costs no extra model call.
        """
        masks = sample_masks(
            batch.eligible, self.replicates, antithetic=self.antithetic, clamp=self.clamp, generator=generator
        )  # [R, N, L]
        token_logp = masked_token_logp(
            policy.logits, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, masks, policy.mask_id
        )  # [R, N, L]
        advantages = weights.advantages.to(token_logp.device)  # [N]
        if weighting is not None and CURRENT_LOGP in weighting.needs:
            log_p_current = elbo_from_logp(token_logp.detach(), masks, batch.eligible)  # [N]
            advantages = weighting(
                batch.rewards,
                batch.log_rnd,
                batch.group_size,
                log_p_current=log_p_current.cpu(),
                log_p_old=batch.log_p_old,
            ).advantages.to(token_logp.device)  # [N]
        loss, stats = wdce_loss(token_logp, masks, advantages, num_groups, negative_cap=self.negative_cap)
        if self.loss_scale != 1.0:  # the default leaves the loss untouched, bit for bit
            loss = loss * self.loss_scale
            stats = {**stats, "loss": float(loss.detach())}
        return loss, stats
