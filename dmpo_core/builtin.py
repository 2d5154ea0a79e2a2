"""dmpo_core's own plugin: the weighting schemes and objectives of docs/concepts.md, and DiFFPO's sampler.

Registered through the same hooks as any third party's plugin (entry point ``core``).
"""

from __future__ import annotations

from dmpo_core.hookspecs import hookimpl
from dmpo_core.objective.ddo import DdoObjective
from dmpo_core.objective.diffpo import DiffpoObjective
from dmpo_core.objective.grpo import DiffuGrpoObjective, GroupNormalisedWeighting
from dmpo_core.objective.schemes import DmpoWeighting
from dmpo_core.objective.wdce import WdceObjective
from dmpo_core.samplers.threshold_action import ThresholdActionSampler


@hookimpl
def register_weightings(register):
    """The four DMPO schemes; each name fixes its baseline (``dmpo`` cannot become mean-baseline)."""
    for name, baseline, text in (
        ("dmpo", "negative", "DMPO weights with the negative baseline (the paper's default)"),
        ("dmpo-mean", "mean", "DMPO weights minus the uniform 1/G baseline"),
        ("dmpo-none", "none", "DMPO weights without baseline subtraction"),
        ("dmpo-unbiased", "unbiased", "DMPO weights minus softmax(ELBO_theta - log p_old) at loss time"),
    ):
        register(name, DmpoWeighting, options=DmpoWeighting, fixed={"baseline": baseline}, help=text)
    register("grpo", GroupNormalisedWeighting, options=GroupNormalisedWeighting,
             help="GRPO advantages (r - group mean) / (group std + eps); rewards only (use with diffu-grpo)")


@hookimpl
def register_objectives(register):
    register("wdce", WdceObjective, options=WdceObjective, help="weighted denoising cross-entropy (DMPO's loss)")
    register("ddo", DdoObjective, options=DdoObjective, help="DDO loss on DMPO's importance weights")
    register("diffu-grpo", DiffuGrpoObjective, options=DiffuGrpoObjective,
             help="d1's diffu-GRPO: mean-field per-token ratios (prompt masked p=0.15), PPO clip, k3 KL")
    register("diffpo", DiffpoObjective, options=DiffpoObjective,
             help="DiFFPO: two-stage surrogate, clipped IS weights to the sampler, trained threshold action")


@hookimpl
def register_samplers(register):
    """DiFFPO's sampler, whose entropy budget the policy chooses (the others are in dmpo_core.samplers)."""
    register("diffpo-eb", ThresholdActionSampler, options=ThresholdActionSampler,
             help="entropy-bounded decoding with a per-prompt budget chosen by the policy (DiFFPO; gammas)")
