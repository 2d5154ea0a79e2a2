"""Hypothesis profiles shared with dmpo's suite (``$HYPOTHESIS_PROFILE``: default, ci, long)."""

from dmpo_core.testing import load_profile

load_profile()
