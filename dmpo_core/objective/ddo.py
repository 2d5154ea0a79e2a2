"""The DDO loss on DMPO's importance weights (docs/concepts.md section 4).

With ``g_j = ELBO_theta(x_j) - log p_old(x_j)`` (with gradient) and importance weights
``w_j`` (no baseline):

    loss = -mean_j(w_j * log sigmoid(beta g_j)) - alpha_ddo * mean_j(log sigmoid(-beta g'_j))

``g'`` is ``g`` itself, or an estimate from an independent set of replicates when
``indep_set`` is on. Means run over all ``B*G`` rows of the full batch.
"""

from __future__ import annotations

import attrs
import torch
import torch.nn.functional as F

from dmpo_core.checks import check_replicates, check_same_shape
from dmpo_core.contracts import Policy, WeightingScheme
from dmpo_core.contracts import LOG_P_OLD
from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.errors import InvalidArgumentError
from dmpo_core.objective.estimators import elbo_from_logp, masked_token_logp
from dmpo_core.objective.masks import sample_masks


def ddo_loss(
    g: torch.Tensor, g_prime: torch.Tensor, weights: torch.Tensor, *, beta: float, alpha_ddo: float, num_rows: int
) -> tuple[torch.Tensor, dict[str, float]]:
    """DDO loss from log-ratios.

    Args:
        g: ``[N]`` ``ELBO_theta(x) - log p_old(x)`` with gradient.
        g_prime: ``[N]`` the same from independent replicates (or ``g``).
        weights: ``[N]`` importance weights (no gradient, no baseline).
        beta: sigmoid scale; alpha_ddo: strength of the second term.
        num_rows: ``B*G`` of the full batch (the means' denominator).

    Returns:
        Scalar loss and its two terms.
    """
    check_same_shape("g_prime", g_prime, tuple(g.shape), "[N]")
    check_same_shape("weights", weights, tuple(g.shape), "[N]")
    if num_rows < 1:
        raise InvalidArgumentError("num_rows", num_rows, "pass B*G >= 1")
    pos = -(weights.detach().to(g.dtype) * F.logsigmoid(beta * g)).sum() / num_rows  # scalar
    neg = -F.logsigmoid(-beta * g_prime).sum() / num_rows  # scalar
    return pos + alpha_ddo * neg, {"ddo_pos": float(pos.detach()), "ddo_neg": float(neg.detach())}


@attrs.frozen(kw_only=True)
class DdoObjective:
    """DDO on DMPO's weights, with ELBO estimates of ``R`` (antithetic, clamped) replicates."""

    replicates: int = 4
    antithetic: bool = True
    clamp: bool = True
    beta: float = 1.0
    """Scale inside the sigmoids."""
    alpha_ddo: float = 1.0
    """Strength of the second (negative) term."""
    indep_set: bool = False
    """Estimate ``g'`` from an independent set of replicates (one more forward)."""

    def __attrs_post_init__(self) -> None:
        check_replicates(self.replicates, self.antithetic)

    @property
    def needs(self) -> frozenset[str]:
        """DDO's log-ratio needs ``log p_old(x)`` of every completion."""
        return frozenset({LOG_P_OLD})

    def prepare(self, policy: Policy, batch: RolloutBatch, *, num_iterations: int,
                generator: torch.Generator) -> dict[str, torch.Tensor]:
        """No rollout-time data (and no random draw)."""
        return {}

    def _elbo(self, policy: Policy, batch: RolloutBatch, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        masks = sample_masks(batch.eligible, self.replicates, antithetic=self.antithetic, clamp=self.clamp, generator=generator)  # [R, N, L]
        logp = masked_token_logp(policy.logits, batch.prompt_ids, batch.prompt_mask, batch.completion_ids, masks, policy.mask_id)  # [R, N, L]
        return elbo_from_logp(logp, masks, batch.eligible.to(logp.device)), masks  # [N]

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
        """Loss on ``batch`` (a group-aligned slice of a batch of ``num_groups`` groups)."""
        if batch.log_p_old is None:  # the loop computes it: LOG_P_OLD is in needs
            raise InvalidArgumentError("batch.log_p_old", None, "DDO needs log p_old(x); score the batch first")
        if weights.weights is None:
            raise InvalidArgumentError("weights.weights", None, "DDO needs importance weights; use a DMPO-family "
                                       "weighting scheme (dmpo, dmpo-mean, dmpo-none, dmpo-unbiased)")
        elbo, masks = self._elbo(policy, batch, generator)  # [N]
        log_old = batch.log_p_old.to(elbo.device)  # [N]
        g = elbo - log_old  # [N]
        g_prime = self._elbo(policy, batch, generator)[0] - log_old if self.indep_set else g  # [N]
        loss, extra = ddo_loss(
            g, g_prime, weights.weights.to(g.device), beta=self.beta, alpha_ddo=self.alpha_ddo,
            num_rows=num_groups * batch.group_size,
        )
        stats = {
            "loss": float(loss.detach()),
            "dce_mean": float((-elbo.detach() / batch.eligible.sum(-1).clamp_min(1).to(elbo.device)).mean()),
            "masked_fraction": float(masks.float().mean()),
            **extra,
        }
        return loss, stats
