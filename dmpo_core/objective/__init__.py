"""The DMPO objective: weights, baselines, masks, estimators and losses (pure torch)."""

from dmpo_core.objective.ddo import DdoObjective, ddo_loss
from dmpo_core.objective.estimators import (
    dce_per_row,
    elbo_from_logp,
    masked_token_logp,
    noisy_inputs,
    paired_elbo,
)
from dmpo_core.objective.masks import mask_ratios, sample_masks
from dmpo_core.objective.schemes import BASELINES, DmpoWeighting
from dmpo_core.objective.wdce import WdceObjective, wdce_loss
from dmpo_core.objective.weights import (
    CoeffSearch,
    adaptive_coeff,
    group_ess,
    group_softmax,
    mean_ess,
    tilted_logits,
)

__all__ = [
    "BASELINES",
    "CoeffSearch",
    "DdoObjective",
    "DmpoWeighting",
    "WdceObjective",
    "adaptive_coeff",
    "dce_per_row",
    "ddo_loss",
    "elbo_from_logp",
    "group_ess",
    "group_softmax",
    "mask_ratios",
    "masked_token_logp",
    "mean_ess",
    "noisy_inputs",
    "paired_elbo",
    "sample_masks",
    "tilted_logits",
    "wdce_loss",
]
