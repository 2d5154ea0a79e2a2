"""Test helpers for dmpo and its plugins: hypothesis strategies and the public laws.

``dmpo_core.testing`` imports hypothesis (a test extra); ``import dmpo_core`` does not
import this package. A plugin author checks a new weighting scheme with::

    from dmpo_core.testing import laws
    laws.check_all(MyScheme)   # or one law: laws.check("weights_sum_to_one_per_group", MyScheme)
"""

from dmpo_core.testing import laws, strategies
from dmpo_core.testing.laws import WEIGHTING_LAWS, LawError, check, check_all
from dmpo_core.testing.strategies import GroupBatch, group_batches, load_profile

__all__ = [
    "WEIGHTING_LAWS",
    "GroupBatch",
    "LawError",
    "check",
    "check_all",
    "group_batches",
    "laws",
    "load_profile",
    "strategies",
]
