"""Frozen data classes passed between the stages of a training step.

Shapes use the letters of docs/concepts.md: ``B`` prompts, ``G`` completions per prompt,
``R`` masking replicates, ``P`` prompt length, ``L`` completion length, ``V`` vocabulary.
Rows are prompt-major: ``[B*G]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch


def _stats(value: Mapping[str, Any] | None) -> dict[str, float]:
    return {str(k): v for k, v in dict(value or {}).items()}


@attrs.frozen(kw_only=True)
class WeightOutput:
    """What a weighting scheme makes of one rollout batch: the advantages the objective uses.

    DMPO-family schemes also give importance ``weights`` (summing to one over the valid rows
    of each group) and the ``baseline`` subtracted from them, ``advantages = weights - lam *
    baseline``; a group-normalised scheme (GRPO) gives advantages only.
    """

    advantages: torch.Tensor  # [B*G] float32, 0 on invalid rows
    valid: torch.Tensor  # [B*G] bool: rows with a finite reward
    weights: torch.Tensor | None = None  # [B*G] float32 importance weights, when the scheme has them
    baseline: torch.Tensor | None = None  # [B*G] float32, when the scheme subtracts one
    stats: dict[str, float] = attrs.field(factory=dict, converter=_stats)
    """Numbers for the metrics file, e.g. ``ess_mean``, ``n_invalid``."""

    def rows(self, index: slice) -> WeightOutput:
        """The same output for the rows ``index`` (a group-aligned micro-batch)."""

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]

        return attrs.evolve(self, advantages=self.advantages[index], valid=self.valid[index],
                            weights=cut(self.weights), baseline=cut(self.baseline))


@attrs.frozen(kw_only=True)
class SampleOutput:
    """Completions produced by a sampler for a batch of prompts."""

    completion_ids: torch.Tensor  # [N, L] long
    nfe: int
    """Number of model forward passes (function evaluations) used for the whole batch."""
    token_logp: torch.Tensor | None = None  # [N, L] float32: log-prob of each committed token, when exact
    commit_step: torch.Tensor | None = None  # [N, L] long: step that committed each token (-1: prefilled), when known
    records: dict[str, torch.Tensor] = attrs.field(factory=dict, converter=dict)
    """The sampler's own per-row records, each ``[N, ...]`` (rows first), e.g. the decoding
    threshold a policy chose; an objective that needs :data:`~dmpo_core.contracts.TRAJECTORY`
    finds them in ``batch.extras`` as ``sampler/<name>``."""


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
    extras: dict[str, torch.Tensor] = attrs.field(factory=dict, converter=dict)
    """What the objective's ``prepare`` computed at rollout time, each ``[B*G, ...]`` (rows first),
    e.g. per-token old and reference log-probs under fixed masks."""

    def __attrs_post_init__(self) -> None:
        from dmpo_core.checks import check_group_size, check_same_shape
        from dmpo_core.errors import ShapeError

        n, p = self.prompt_ids.shape
        l_ = self.completion_ids.shape[1]
        check_same_shape("prompt_mask", self.prompt_mask, (n, p), "[B*G, P]")
        check_same_shape("completion_ids", self.completion_ids, (n, l_), "[B*G, L]")
        check_same_shape("eligible", self.eligible, (n, l_), "[B*G, L]")
        check_same_shape("rewards", self.rewards, (n,), "[B*G]")
        check_group_size(self.group_size, n)
        for name, value in self.extras.items():
            if not isinstance(value, torch.Tensor) or value.dim() < 1 or value.shape[0] != n:
                seen = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise ShapeError(f"extras[{name!r}]", seen, f"pass a tensor with the {n} rows first [B*G, ...]")

    def rows(self, index: slice) -> RolloutBatch:
        """The same batch restricted to the rows ``index`` (a group-aligned micro-batch)."""

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index]

        return attrs.evolve(
            self, prompt_ids=self.prompt_ids[index], prompt_mask=self.prompt_mask[index],
            completion_ids=self.completion_ids[index], eligible=self.eligible[index], rewards=self.rewards[index],
            log_p_old=cut(self.log_p_old), log_p_ref=cut(self.log_p_ref), items=self.items[index],
            extras={k: v[index] for k, v in self.extras.items()},
        )

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
