"""Test helpers for dmpo and its plugins: hypothesis strategies, the public laws and the
backend contract suite.

The laws and strategies need hypothesis (a test extra); they are imported lazily, so
``dmpo_core.testing.backend_contract`` works without it. A plugin author checks a new
weighting scheme with::

    from dmpo_core.testing import laws
    laws.check_all(MyScheme)   # or one law: laws.check("weights_sum_to_one_per_group", MyScheme)

and a new dLLM backend with ``dmpo_core.testing.backend_contract.run_backend_contract``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "laws": ("dmpo_core.testing.laws", None),
    "strategies": ("dmpo_core.testing.strategies", None),
    "backend_contract": ("dmpo_core.testing.backend_contract", None),
    "WEIGHTING_LAWS": ("dmpo_core.testing.laws", "WEIGHTING_LAWS"),
    "LawError": ("dmpo_core.testing.laws", "LawError"),
    "check": ("dmpo_core.testing.laws", "check"),
    "check_all": ("dmpo_core.testing.laws", "check_all"),
    "GroupBatch": ("dmpo_core.testing.strategies", "GroupBatch"),
    "group_batches": ("dmpo_core.testing.strategies", "group_batches"),
    "load_profile": ("dmpo_core.testing.strategies", "load_profile"),
    "run_backend_contract": ("dmpo_core.testing.backend_contract", "run_backend_contract"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'dmpo_core.testing' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)
