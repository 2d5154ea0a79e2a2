"""DMPO weighting schemes: importance weights, baseline subtraction, advantages.

docs/concepts.md sections 2 and 3. One parameterised class, :class:`DmpoWeighting`, covers
the four registered schemes, which differ only in the baseline:

========================  ==========================================================
registered name           baseline ``b_j``
========================  ==========================================================
``dmpo`` (default)        negative: ``softmax_j(c * (log_rnd_j - r_j / alpha))``
``dmpo-mean``             ``1 / n`` (``n`` valid rows of the group)
``dmpo-none``             ``0``
``dmpo-unbiased``         ``softmax_j(ELBO_theta(x_j) - log p_old(x_j))`` at loss time
========================  ==========================================================

``advantages = weights - lam * baseline`` on valid rows, 0 on invalid rows.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch

from dmpo_core.checks import check_alpha, check_coeff, check_group_size, check_vector
from dmpo_core.contracts import CURRENT_LOGP, LOG_P_OLD, LOG_RND
from dmpo_core.data import WeightOutput
from dmpo_core.errors import ConfigError, InvalidArgumentError
from dmpo_core.objective.weights import adaptive_coeff, group_ess, group_softmax, tilted_logits

Baseline = Literal["none", "mean", "negative", "unbiased"]
BASELINES: tuple[str, ...] = ("none", "mean", "negative", "unbiased")


@attrs.frozen(kw_only=True)
class DmpoWeighting:
    """Self-normalised importance weights toward ``p_ref * exp(r / alpha)``, with a baseline.

    Call it with the rewards ``[B*G]`` (NaN = missing), the log-RNDs
    ``log p_ref - log p_old`` ``[B*G]`` and the group size ``G``.
    """

    alpha: float = 0.04
    """KL temperature; 0 drops the reference term (weights ``softmax(c * r)``)."""
    coeff: float = 1.0
    """Proximal coefficient ``c`` in (0, 1]; 1 is the full step toward the target."""
    adaptive: bool = False
    """Choose ``c`` per batch so that the mean group ESS equals ``ess_threshold``."""
    ess_threshold: float = 0.7
    """Target normalised ESS of the adaptive search, in (0, 1]."""
    coeff_min: float = 0.01
    """Lower end of the adaptive search."""
    coeff_max: float = 0.99
    """Upper end of the adaptive search."""
    baseline: Baseline = "negative"
    """Which baseline to subtract: none, mean, negative or unbiased."""
    lam: float = 1.0
    """Baseline strength lambda (1 makes mean/negative advantages sum to zero per group)."""

    def __attrs_post_init__(self) -> None:
        problems: list[str] = []
        for check in (
            lambda: check_alpha(self.alpha),
            lambda: check_coeff(self.coeff),
            lambda: check_coeff(self.coeff_min, "coeff_min"),
            lambda: check_coeff(self.coeff_max, "coeff_max"),
        ):
            try:
                check()
            except InvalidArgumentError as err:
                problems.append(str(err))
        # Bug fix: a non-numeric threshold raised a bare TypeError instead of a ConfigError.
        if not _is_real(self.ess_threshold) or not (0.0 < self.ess_threshold <= 1.0):
            problems.append(f"ess_threshold={self.ess_threshold!r}: pass a value in (0, 1]")
        if _is_real(self.coeff_min) and _is_real(self.coeff_max) and self.coeff_min >= self.coeff_max:
            problems.append(f"coeff_min={self.coeff_min!r}: must be below coeff_max={self.coeff_max!r}")
        if self.baseline not in BASELINES:
            problems.append(f"baseline={self.baseline!r}: choose one of {', '.join(BASELINES)}")
        # Bug fix: lam = inf passed (advantages became -inf/NaN); the strength must be finite.
        if not _is_real(self.lam) or not (0.0 <= self.lam < math.inf):
            problems.append(f"lam={self.lam!r}: pass a finite baseline strength >= 0 (1 is the paper's)")
        if problems:
            raise ConfigError(problems, source="weighting scheme")

    @property
    def needs(self) -> frozenset[str]:
        """The log-RND when ``alpha > 0``; ``log p_old`` and the current policy's ELBO at loss
        time for the unbiased baseline; nothing for ``alpha = 0`` with another baseline."""
        out = {LOG_RND} if self.alpha > 0 else set()
        if self.baseline == "unbiased":
            out |= {LOG_P_OLD, CURRENT_LOGP}
        return frozenset(out)

    @property
    def zero_sum(self) -> bool:
        """True when advantages sum to zero within each group (mean/negative at lambda 1)."""
        return self.baseline in ("mean", "negative", "unbiased") and self.lam == 1.0

    def __call__(
        self,
        rewards: torch.Tensor,
        log_rnd: torch.Tensor | None,
        group_size: int,
        *,
        log_p_current: torch.Tensor | None = None,
        log_p_old: torch.Tensor | None = None,
    ) -> WeightOutput:
        """Weights, baseline and advantages of a rollout batch.

        Args:
            rewards: ``[B*G]`` floats; NaN marks a missing reward (excluded, counted).
            log_rnd: ``[B*G]`` ``log p_ref(x) - log p_old(x)``; may be None when alpha is 0.
            group_size: ``G``, dividing ``B*G``.
            log_p_current: ``[B*G]`` ``ELBO_theta(x)`` at loss time (unbiased baseline only).
            log_p_old: ``[B*G]`` ``log p_old(x)`` (unbiased baseline only).
        """
        rewards = check_vector("rewards", rewards, allow_nan=True)
        n_rows = rewards.shape[0]
        check_group_size(group_size, n_rows)
        if self.alpha > 0:
            if log_rnd is None:
                raise InvalidArgumentError("log_rnd", None, "alpha > 0 needs log p_ref - log p_old; pass it or set alpha=0")
            check_vector("log_rnd", log_rnd, n_rows)
        valid = torch.isfinite(rewards)  # [B*G] bool
        z = tilted_logits(rewards, log_rnd, self.alpha)  # [B*G] float64

        if self.adaptive:
            search = adaptive_coeff(
                z, group_size, valid, threshold=self.ess_threshold, low=self.coeff_min, high=self.coeff_max
            )
            coeff, fallback = search.coeff, search.fallback
        else:
            coeff, fallback = self.coeff, False

        weights = group_softmax(coeff * z, group_size, valid)  # [B*G] float64
        baseline = self._baseline(rewards, log_rnd, group_size, valid, coeff, log_p_current, log_p_old)  # [B*G]
        adv = torch.where(valid, weights - self.lam * baseline, torch.zeros_like(weights))  # [B*G] float64

        stats = _stats(weights, adv, valid, group_size, coeff, fallback)
        return WeightOutput(
            weights=weights.float(),
            baseline=baseline.float(),
            advantages=adv.float(),
            valid=valid,
            stats=stats,
        )

    def _baseline(
        self,
        rewards: torch.Tensor,
        log_rnd: torch.Tensor | None,
        group_size: int,
        valid: torch.Tensor,
        coeff: float,
        log_p_current: torch.Tensor | None,
        log_p_old: torch.Tensor | None,
    ) -> torch.Tensor:
        n_rows = rewards.shape[0]
        if self.baseline == "none":
            return torch.zeros(n_rows, dtype=torch.float64)  # [B*G]
        if self.baseline == "mean":
            return group_softmax(torch.zeros(n_rows, dtype=torch.float64), group_size, valid)  # [B*G] = 1/n
        if self.baseline == "negative":
            anti = tilted_logits(rewards, log_rnd, self.alpha, sign=-1.0)  # [B*G]
            return group_softmax(coeff * anti, group_size, valid)  # [B*G]
        if log_p_current is None or log_p_old is None:
            raise InvalidArgumentError(
                "log_p_current",
                log_p_current,
                "the unbiased baseline needs ELBO_theta(x) of the current policy and log p_old(x) at loss time",
            )
        check_vector("log_p_current", log_p_current, n_rows)
        check_vector("log_p_old", log_p_old, n_rows)
        ratio = log_p_current.double() - log_p_old.double()  # [B*G]
        return group_softmax(ratio, group_size, valid)  # [B*G]


def _is_real(value: object) -> bool:
    """A plain int or float (not bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _stats(
    weights: torch.Tensor, adv: torch.Tensor, valid: torch.Tensor, group_size: int, coeff: float, fallback: bool
) -> dict[str, float]:
    """What DMPO reports about a batch, every value a float:

    ``ess_mean`` mean normalised ESS over groups with a valid reward, in [1/G, 1];
    ``ess_min`` smallest group ESS (0 when some group had no valid reward); ``coeff`` the
    proximal coefficient used; ``coeff_fallback`` 1 when the adaptive search missed its ESS
    threshold and used a bound; ``n_invalid`` rows whose reward was missing (zero weight and
    advantage); ``n_empty_groups`` groups with no valid reward; ``weight_max`` mean over groups
    of the largest weight (1/G uniform, 1 one sample); ``adv_pos_sum`` mean over groups of the
    sum of positive advantages (how much mass moves).
    """
    ess = group_ess(weights, group_size, valid)  # [B]
    has = valid.view(-1, group_size).any(dim=1)  # [B]
    n_groups_valid = int(has.sum())
    w = weights.view(-1, group_size)  # [B, G]
    a = adv.view(-1, group_size)  # [B, G]
    if n_groups_valid:
        ess_mean = float(ess[has].mean())
        weight_max = float(w.amax(dim=1)[has].mean())
        adv_pos = float(a.clamp_min(0).sum(dim=1)[has].mean())
    else:
        ess_mean, weight_max, adv_pos = 1.0, 0.0, 0.0
    return {
        "ess_mean": float(ess_mean),
        "ess_min": float(ess.min()) if ess.numel() else 0.0,
        "coeff": float(coeff),
        "coeff_fallback": float(bool(fallback)),
        "n_invalid": float(int((~valid).sum())),
        "n_empty_groups": float(int((~has).sum())),
        "weight_max": float(weight_max),
        "adv_pos_sum": float(adv_pos),
    }
