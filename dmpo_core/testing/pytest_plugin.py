"""dmpo's pytest plugin (entry point ``pytest11``, installed with dmpo): a plugin's tests
get the contract suites without importing anything.

* fixture ``dmpo_kit``: the module :mod:`dmpo_core.testing.plugin_kit` (one suite per kind:
  ``dmpo_kit.check_sampler(my_plugin, "my-sampler")`` ...);
* a test with a ``weighting_law`` argument runs once per law of
  :data:`dmpo_core.testing.laws.WEIGHTING_LAWS` (``dmpo_kit.check_weighting_law(weighting_law, ...)``);
* a test with a ``backend_check`` argument runs once per check of
  :data:`dmpo_core.testing.backend_contract.CHECK_NAMES`;
* the hypothesis profile named by ``$HYPOTHESIS_PROFILE`` (default, ci, long) is loaded
  when a test uses one of these.

Importing this module imports nothing heavy: torch and hypothesis load only when a test
uses one of them, so the plugin costs nothing in other projects' test sessions.
"""

from __future__ import annotations

from typing import Any

import pytest


def _load_profile() -> None:
    try:
        from dmpo_core.testing.strategies import load_profile
    except ImportError:  # hypothesis is a test extra; without it the laws are not available
        return
    load_profile()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "weighting_law" in metafunc.fixturenames:
        from dmpo_core.testing.laws import WEIGHTING_LAWS

        _load_profile()

        metafunc.parametrize("weighting_law", list(WEIGHTING_LAWS))
    if "backend_check" in metafunc.fixturenames:
        from dmpo_core.testing.backend_contract import CHECK_NAMES

        metafunc.parametrize("backend_check", list(CHECK_NAMES))


@pytest.fixture
def dmpo_kit() -> Any:
    """The contract suites, :mod:`dmpo_core.testing.plugin_kit`."""
    from dmpo_core.testing import plugin_kit

    _load_profile()
    return plugin_kit
