"""Test helpers for dmpo and its plugins: hypothesis strategies, the public laws and the
backend contract suite.

The laws and strategies need hypothesis (a test extra); they are imported lazily, so
``dmpo_core.testing.backend_contract`` works without it. A plugin author checks a new
weighting scheme with::

    from dmpo_core.testing import laws
    laws.check_all(MyScheme)   # or one law: laws.check("weights_sum_to_one_per_group", MyScheme)

``laws.UNIVERSAL_WEIGHTING_LAWS`` hold for any scheme, ``laws.DMPO_WEIGHTING_LAWS`` for
DMPO-like ones; ``laws.WEIGHTING_LAWS`` is both. A law that does not apply to a scheme raises
``laws.LawNotApplicable`` (a ``unittest.SkipTest``: pytest shows a skip with the reason).
Options are drawn from the scheme's options class (``strategies.scheme_options``).

a new dLLM backend with ``dmpo_core.testing.backend_contract.run_backend_contract``, and a
new sampler with ``dmpo_core.testing.sampler_contract.run_sampler_contract``.
:mod:`dmpo_core.testing.plugin_kit` holds a contract suite for every kind of plugin, on the
toy backend and task of :mod:`dmpo_core.testing.toys`; dmpo's pytest plugin
(:mod:`dmpo_core.testing.pytest_plugin`, entry point ``pytest11``) gives it to any test as the
fixture ``dmpo_kit``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "laws": ("dmpo_core.testing.laws", None),
    "strategies": ("dmpo_core.testing.strategies", None),
    "backend_contract": ("dmpo_core.testing.backend_contract", None),
    "plugin_kit": ("dmpo_core.testing.plugin_kit", None),
    "toys": ("dmpo_core.testing.toys", None),
    "WEIGHTING_LAWS": ("dmpo_core.testing.laws", "WEIGHTING_LAWS"),
    "UNIVERSAL_WEIGHTING_LAWS": ("dmpo_core.testing.laws", "UNIVERSAL_WEIGHTING_LAWS"),
    "DMPO_WEIGHTING_LAWS": ("dmpo_core.testing.laws", "DMPO_WEIGHTING_LAWS"),
    "LawError": ("dmpo_core.testing.laws", "LawError"),
    "LawNotApplicable": ("dmpo_core.testing.laws", "LawNotApplicable"),
    "check": ("dmpo_core.testing.laws", "check"),
    "check_all": ("dmpo_core.testing.laws", "check_all"),
    "GroupBatch": ("dmpo_core.testing.strategies", "GroupBatch"),
    "group_batches": ("dmpo_core.testing.strategies", "group_batches"),
    "load_profile": ("dmpo_core.testing.strategies", "load_profile"),
    "scheme_options": ("dmpo_core.testing.strategies", "scheme_options"),
    "run_backend_contract": ("dmpo_core.testing.backend_contract", "run_backend_contract"),
    "sampler_contract": ("dmpo_core.testing.sampler_contract", None),
    "run_sampler_contract": ("dmpo_core.testing.sampler_contract", "run_sampler_contract"),
    "toy_model": ("dmpo_core.testing.toy_model", None),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dmpo_core.testing' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
