"""The universal laws (any weighting scheme) for the built-in DMPO schemes, one hypothesis
property per law that no DMPO-family property already implies: purity and ``needs``.

The other universal laws have their property in ``test_weighting_laws.py`` (weights finite,
non-negative and summing to one, permutation equivariance, zero sum, equal inputs), are
checked inside every law there (shapes, dtypes and finiteness), or are implied by
``missing_rewards_are_excluded_and_counted`` (invalid rows and empty groups get zero
advantages); the stats law runs on fixed inputs in ``tests/core/test_testing_laws.py`` and
every universal law runs at the default profile for the example plugin's DMPO subclass. A scheme that is not DMPO-like
(no ``coeff``, no weights) is checked in ``tests/core/test_testing_laws.py``.
"""

from __future__ import annotations

from hypothesis import given

from dmpo_core.testing import laws
from dmpo_core.testing import strategies as dst


@given(scheme=dst.dmpo_schemes(), batch=dst.group_batches())
def test_calls_are_pure(scheme, batch):
    laws.calls_are_pure(scheme, batch)


@given(scheme=dst.dmpo_schemes(), batch=dst.group_batches())
def test_uses_only_the_inputs_its_needs_declare(scheme, batch):
    laws.uses_only_the_inputs_its_needs_declare(scheme, batch)
