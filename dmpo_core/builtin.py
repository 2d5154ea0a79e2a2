"""dmpo_core's own plugin: the weighting schemes and objectives of ALGORITHM.md.

Registered through the same hooks as any third party's plugin (entry point ``core``).
"""

from __future__ import annotations

import functools

from dmpo_core.hookspecs import hookimpl
from dmpo_core.objective.ddo import DdoObjective
from dmpo_core.objective.schemes import DmpoWeighting
from dmpo_core.objective.wdce import WdceObjective


@hookimpl
def register_weightings(register):
    register("dmpo", functools.partial(DmpoWeighting, baseline="negative"),
             help="DMPO weights with the negative baseline (the paper's default)")
    register("dmpo-mean", functools.partial(DmpoWeighting, baseline="mean"),
             help="DMPO weights minus the uniform 1/G baseline")
    register("dmpo-none", functools.partial(DmpoWeighting, baseline="none"),
             help="DMPO weights without baseline subtraction")
    register("dmpo-unbiased", functools.partial(DmpoWeighting, baseline="unbiased"),
             help="DMPO weights minus softmax(ELBO_theta - log p_old) at loss time")


@hookimpl
def register_objectives(register):
    register("wdce", WdceObjective, help="weighted denoising cross-entropy (DMPO's loss)")
    register("ddo", DdoObjective, help="DDO loss on DMPO's importance weights")
