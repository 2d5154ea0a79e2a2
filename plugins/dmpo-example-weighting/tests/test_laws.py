"""The example scheme against dmpo's public laws, and its registration."""

from __future__ import annotations

import math

import pytest
import torch
from dmpo_example_weighting import TemperedWeighting, tempered_rewards

from dmpo_core.errors import ConfigError
from dmpo_core.objective import DmpoWeighting
from dmpo_core.registry import build_registry
from dmpo_core.testing import laws


# The three lines a plugin author copies: every public law, for this scheme's factory.
@pytest.mark.parametrize("law", laws.WEIGHTING_LAWS)
def test_law(law: str) -> None:
    laws.check(law, TemperedWeighting)


def test_registered_through_the_entry_point() -> None:
    registry = build_registry()  # with entry points, as `dmpo plugins` does
    entry = registry.get("weighting", "example-tempered")
    assert entry.plugin == "example-tempered"
    assert entry.help
    assert isinstance(registry.create("weighting", "example-tempered", alpha=0.5), TemperedWeighting)


def test_tempered_rewards_by_hand() -> None:
    # Group [2, 1, -8] with kappa 1: best 2, gaps [0, 1, 10] -> g = 2 - log1p(gap)
    # = [2, 2 - log 2, 2 - log 11] = [2, 1.30685, -0.39790]; the NaN row stays NaN.
    g = tempered_rewards(torch.tensor([2.0, 1.0, -8.0, math.nan]), 4, 1.0)
    assert g[:3].tolist() == pytest.approx([2.0, 2 - math.log(2), 2 - math.log(11)], rel=1e-12)
    assert math.isnan(g[3])


def test_large_kappa_gives_plain_dmpo() -> None:
    # log1p(x / kappa) * kappa -> x as kappa -> inf, so g(r) -> r (error ~ gap^2 / (2 kappa)).
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.25])
    log_rnd = torch.tensor([0.1, -0.2, 0.0, 0.3])
    ours = TemperedWeighting(kappa=1e9, alpha=0.5)(rewards, log_rnd, 2)
    dmpo = DmpoWeighting(alpha=0.5)(rewards, log_rnd, 2)
    torch.testing.assert_close(ours.weights, dmpo.weights, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours.advantages, dmpo.advantages, rtol=1e-6, atol=1e-7)


def test_outlier_penalty_no_longer_collapses_the_group() -> None:
    # Rewards [1, 0, -1e4], alpha 1, log_rnd 0. DMPO: softmax([1, 0, -1e4]) = [0.731, 0.269, 0].
    # Tempered (kappa 1): gaps [0, 1, 10001], g = [1, 1 - log 2, 1 - log 10002], so
    # exp(g) is proportional to [1, 1/2, 1/10002] = [2, 1, 1/5001] / 2 -> weights [2, 1, 1/5001] / (3 + 1/5001).
    out = TemperedWeighting(kappa=1.0, alpha=1.0, baseline="none")(
        torch.tensor([1.0, 0.0, -1e4]), torch.zeros(3), 3
    )
    expected = torch.tensor([2.0, 1.0, 1.0 / 5001.0]) / (3.0 + 1.0 / 5001.0)
    torch.testing.assert_close(out.weights, expected.float(), rtol=1e-6, atol=1e-7)


def test_bad_kappa_names_the_argument() -> None:
    with pytest.raises(ConfigError, match=r"kappa=0"):
        TemperedWeighting(kappa=0)
    # Registered with its options class: the registry reports the option with its full path.
    with pytest.raises(ConfigError, match=r"weighting\.options\.kappa=0"):
        build_registry().validate("weighting", "example-tempered", {"kappa": 0}, path="weighting.options")
