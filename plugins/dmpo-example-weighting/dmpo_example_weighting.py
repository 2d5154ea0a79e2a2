"""An example third-party dmpo plugin: the ``example-tempered`` weighting scheme.

DMPO weights a completion ``x_j`` of a group by ``softmax_j(c * (log_rnd_j + r_j / alpha))``
(docs/concepts.md section 2). This scheme feeds the same formula *tempered* rewards

    g(r_j) = r_best - kappa * log(1 + (r_best - r_j) / kappa)

where ``r_best`` is the highest valid reward of the group and ``kappa > 0`` a fixed
temperature (in reward units). What it does and why:

* the gap of a completion to the group's best, ``r_best - r_j``, is compressed
  logarithmically once it exceeds ``kappa``: one completion with a huge penalty (say -1e4
  for a malformed answer) no longer drives all other weights of the group to one sample,
  while small gaps (``<< kappa``) are kept almost as they are;
* ``g`` is increasing in ``r_j`` (ranking preserved: a higher reward never gets a lower
  weight), equivariant to shifting all rewards of a group (so the weights are invariant to
  it), and contracts the reward range (``range(g) <= range(r)``), so the tilt is never
  sharper than DMPO's;
* ``kappa -> infinity`` gives back DMPO exactly, and ``alpha -> infinity`` gives
  ``softmax(c * log_rnd)`` as DMPO does.

The scheme is :class:`dmpo_core.objective.DmpoWeighting` with one more option: it extends
DMPO's frozen attrs options class with ``kappa`` and tempers the rewards before DMPO's
``__call__``, which does everything else (missing rewards, proximal and adaptive coefficient,
baselines, stats). It is therefore a DMPO-family scheme (its options declare ``alpha`` and
``coeff``) and passes every public law of :mod:`dmpo_core.testing.laws`, the universal and the
DMPO-family ones (see ``tests/test_laws.py``).
"""

from __future__ import annotations

import math

import attrs
import torch

from dmpo_core import hookimpl
from dmpo_core.checks import check_group_size, check_vector
from dmpo_core.data import WeightOutput
from dmpo_core.errors import ConfigError
from dmpo_core.objective import DmpoWeighting

__all__ = ["TemperedWeighting", "register_weightings", "tempered_rewards"]


def tempered_rewards(rewards: torch.Tensor, group_size: int, kappa: float) -> torch.Tensor:
    """``g(r) = r_best - kappa * log1p((r_best - r) / kappa)`` within each group, float64.

    Args:
        rewards: ``[B*G]``, NaN where missing (kept NaN).
        group_size: ``G``.
        kappa: temperature of the gaps, > 0.

    Returns:
        ``[B*G]`` float64 tempered rewards, NaN where the reward is missing.
    """
    r = rewards.double().view(-1, group_size)  # [B, G]
    valid = torch.isfinite(r)  # [B, G]
    best = torch.where(valid, r, torch.full_like(r, -math.inf)).amax(dim=1, keepdim=True)  # [B, 1]
    gap = torch.where(valid, best - r, torch.zeros_like(r))  # [B, G], >= 0
    g = best - kappa * torch.log1p(gap / kappa)  # [B, G]
    return torch.where(valid, g, torch.full_like(r, math.nan)).reshape(-1)  # [B*G]


@attrs.frozen(kw_only=True)
class TemperedWeighting(DmpoWeighting):
    """DMPO weights on log-tempered reward gaps (see the module docstring).

    Its options are DMPO's (``alpha``, ``coeff``, ``adaptive``, ``ess_threshold``,
    ``coeff_min``, ``coeff_max``, ``baseline``, ``lam``, validated as there) plus ``kappa``.
    Being a frozen attrs class, it is its own options class: the registry validates users'
    options against it, and dmpo's public laws draw its options from it.
    """

    kappa: float = 1.0
    """Temperature of the reward gaps, > 0 (in reward units; 1 suits 0/1 rewards; large values give plain DMPO)."""

    def __attrs_post_init__(self) -> None:
        problems: list[str] = []
        try:
            super().__attrs_post_init__()
        except ConfigError as err:
            problems += err.problems
        kappa = self.kappa
        if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not (0 < kappa < math.inf):
            problems.append(f"kappa={kappa!r}: pass a finite temperature > 0 (large values give plain DMPO)")
        if problems:
            raise ConfigError(problems, source="example-tempered weighting")

    def __call__(
        self,
        rewards: torch.Tensor,
        log_rnd: torch.Tensor | None,
        group_size: int,
        *,
        log_p_current: torch.Tensor | None = None,
        log_p_old: torch.Tensor | None = None,
    ) -> WeightOutput:
        """Weights, baseline and advantages ``[B*G]`` of DMPO on the tempered rewards."""
        rewards = check_vector("rewards", rewards, allow_nan=True)
        check_group_size(group_size, rewards.shape[0])
        g = tempered_rewards(rewards, group_size, float(self.kappa))  # [B*G]
        return super().__call__(g, log_rnd, group_size, log_p_current=log_p_current, log_p_old=log_p_old)


@hookimpl
def register_weightings(register):
    """Register ``example-tempered``."""
    register(
        "example-tempered",
        TemperedWeighting,
        options=TemperedWeighting,
        help="DMPO weights on log-tempered reward gaps (example third-party plugin)",
    )
