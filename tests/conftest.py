"""Shared pytest configuration of dmpo's test suite.

Hypothesis profiles (selected by ``$HYPOTHESIS_PROFILE``): ``default`` and ``ci`` run 200
examples per property (CI must run at least that many), ``long`` runs 2000 (``make
test-long``). None has a deadline: a first torch call can be slow.
"""

from dmpo_core.testing.strategies import load_profile

load_profile()
