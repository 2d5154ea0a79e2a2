"""Frozen data classes passed between the stages of a training step.

Shapes use the letters of ALGORITHM.md: ``B`` prompts, ``G`` completions per prompt,
``R`` masking replicates, ``P`` prompt length, ``L`` completion length, ``V`` vocabulary.
Rows are prompt-major: ``[B*G]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch


def _frozen_dict(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


@attrs.frozen(kw_only=True)
class WeightStats:
    """What a weighting scheme reports about one rollout batch (plain floats, for logging)."""

    ess_mean: float
    """Mean normalised effective sample size over groups with a valid reward, in [1/G, 1]."""
    ess_min: float
    """Smallest group ESS (0 when some group had no valid reward)."""
    coeff: float
    """Proximal coefficient used (fixed, or found by the adaptive search)."""
    coeff_fallback: bool
    """True when the adaptive search missed the ESS threshold and used a bound."""
    n_invalid: int
    """Rows whose reward was missing or NaN; they get zero weight and zero advantage."""
    n_empty_groups: int
    """Groups with no valid reward; they get zero advantages."""
    weight_max: float
    """Mean over groups of the largest weight in the group (1/G = uniform, 1 = one sample)."""
    adv_pos_sum: float
    """Mean over groups of the sum of positive advantages (how much mass moves)."""

    def as_dict(self) -> dict[str, float]:
        """Flat ``name -> float`` view for metrics files."""
        return {k: float(v) for k, v in attrs.asdict(self).items()}


@attrs.frozen(kw_only=True)
class WeightOutput:
    """Weights, baseline and advantages of one rollout batch.

    ``advantages = weights - lam * baseline`` on valid rows and 0 on invalid rows; the
    WDCE loss multiplies each completion's denoising cross-entropy by its advantage.
    """

    weights: torch.Tensor  # [B*G] float32, sum to 1 over the valid rows of each group
    baseline: torch.Tensor  # [B*G] float32
    advantages: torch.Tensor  # [B*G] float32
    valid: torch.Tensor  # [B*G] bool
    stats: WeightStats


@attrs.frozen(kw_only=True)
class LossStats:
    """What an objective reports about one loss evaluation (plain floats)."""

    loss: float
    """The loss value (the quantity whose gradient is taken)."""
    dce_mean: float
    """Mean denoising cross-entropy per completion and replicate (an SFT-style loss)."""
    masked_fraction: float
    """Mean fraction of eligible completion positions that were masked."""
    extra: dict[str, float] = attrs.field(factory=dict, converter=_frozen_dict)
    """Objective-specific numbers (for example DDO's sigmoid terms)."""

    def as_dict(self) -> dict[str, float]:
        """Flat ``name -> float`` view for metrics files."""
        out = {"loss": self.loss, "dce_mean": self.dce_mean, "masked_fraction": self.masked_fraction}
        out.update(self.extra)
        return out


@attrs.frozen(kw_only=True)
class SampleOutput:
    """Completions produced by a sampler for a batch of prompts."""

    completion_ids: torch.Tensor  # [N, L] long
    nfe: int
    """Number of model forward passes (function evaluations) used for the whole batch."""
    token_logp: torch.Tensor | None = None  # [N, L] float32: log-prob of each committed token, when exact
    commit_step: torch.Tensor | None = None  # [N, L] long: step that committed each token (-1: prefilled), when known


@attrs.frozen(kw_only=True)
class RolloutBatch:
    """One rollout batch: G completions for each of B prompts, with their rewards.

    The prompt is left padded; the completion occupies the last ``L`` positions of the
    model input ``cat([prompt_ids, completion_ids], dim=1)``.
    """

    prompt_ids: torch.Tensor  # [B*G, P] long, left padded
    prompt_mask: torch.Tensor  # [B*G, P] bool, False on padding
    completion_ids: torch.Tensor  # [B*G, L] long
    eligible: torch.Tensor  # [B*G, L] bool: positions that losses and ELBOs may mask
    rewards: torch.Tensor  # [B*G] float32, NaN where the reward is missing
    group_size: int
    """``G``: completions per prompt."""
    log_p_old: torch.Tensor | None = None  # [B*G] float32: log p_old(x) of each completion
    log_p_ref: torch.Tensor | None = None  # [B*G] float32: log p_ref(x) of each completion
    nfe: int = 0
    """Model forwards the sampler used to produce this batch."""
    items: tuple[Mapping[str, Any], ...] = ()
    """Task fields of each row (length B*G), for rewards and logging."""

    def __attrs_post_init__(self) -> None:
        from dmpo_core.checks import check_group_size, check_same_shape

        n, p = self.prompt_ids.shape
        l_ = self.completion_ids.shape[1]
        check_same_shape("prompt_mask", self.prompt_mask, (n, p), "[B*G, P]")
        check_same_shape("completion_ids", self.completion_ids, (n, l_), "[B*G, L]")
        check_same_shape("eligible", self.eligible, (n, l_), "[B*G, L]")
        check_same_shape("rewards", self.rewards, (n,), "[B*G]")
        check_group_size(self.group_size, n)

    @property
    def num_rows(self) -> int:
        """``B*G``."""
        return int(self.completion_ids.shape[0])

    @property
    def num_groups(self) -> int:
        """``B``."""
        return self.num_rows // self.group_size

    @property
    def input_ids(self) -> torch.Tensor:
        """Model input ``[B*G, P+L]``: the prompt followed by the completion."""
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)  # [B*G, P+L]

    @property
    def attention_mask(self) -> torch.Tensor:
        """Attention mask ``[B*G, P+L]``: prompt padding off, every completion position on."""
        ones = torch.ones_like(self.completion_ids, dtype=torch.bool)  # [B*G, L]
        return torch.cat([self.prompt_mask.bool(), ones], dim=1)  # [B*G, P+L]

    @property
    def log_rnd(self) -> torch.Tensor | None:
        """``log p_ref(x) - log p_old(x)`` ``[B*G]`` when both are known."""
        if self.log_p_old is None or self.log_p_ref is None:
            return None
        return self.log_p_ref - self.log_p_old  # [B*G]
