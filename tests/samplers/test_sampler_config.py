"""Sampler configurations: typed errors naming the field, and registration through the hook."""

from __future__ import annotations

import pytest

import dmpo_core.samplers as samplers_plugin
from dmpo_core.contracts import Sampler
from dmpo_core.errors import ConfigError
from dmpo_core.registry import build_registry
from dmpo_core.samplers import (
    EntropyBoundedSampler,
    FastDllmSampler,
    LowConfidenceSampler,
    RoarSampler,
    random_remask_sampler,
)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"gen_length": 0}, "gen_length"),
        ({"gen_length": 12.0}, "gen_length"),
        ({"block_length": -1}, "block_length"),
        ({"gen_length": 10, "block_length": 4, "steps": 10}, "block_length"),  # 4 does not divide 10
        ({"gen_length": 12, "block_length": 4, "steps": 4}, "steps"),  # 3 blocks do not divide 4 steps
        ({"gen_length": 8, "block_length": 8, "steps": 9}, "steps"),  # more steps than tokens
        ({"steps": 0}, "steps"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"remasking": "lowest"}, "remasking"),
        ({"record_logp": "yes"}, "record_logp"),
    ],
)
def test_invalid_low_confidence_config_names_the_field(options, field):
    with pytest.raises(ConfigError) as info:
        LowConfidenceSampler(**options)
    assert any(p.startswith(f"{field}=") for p in info.value.problems), info.value.problems


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as info:
        LowConfidenceSampler(gen_length=10, block_length=4, temperature=-1, remasking="x")
    fields = {p.split("=")[0] for p in info.value.problems}
    assert fields == {"block_length", "temperature", "remasking"}


@pytest.mark.parametrize(
    ("factory", "options", "field"),
    [
        (RoarSampler, {"gen_length": 6, "block_length": 4}, "block_length"),
        (RoarSampler, {"tempered_logp": 1}, "tempered_logp"),
        (FastDllmSampler, {"threshold": 0.0}, "threshold"),
        (FastDllmSampler, {"threshold": 1.5}, "threshold"),
        (EntropyBoundedSampler, {"gamma": -1.0}, "gamma"),
        (random_remask_sampler, {"remasking": "low_confidence"}, "remasking"),
    ],
)
def test_invalid_other_configs_name_the_field(factory, options, field):
    with pytest.raises(ConfigError) as info:
        factory(**options)
    assert any(p.startswith(f"{field}=") for p in info.value.problems), info.value.problems


def test_configs_are_frozen():
    import attrs

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        LowConfidenceSampler().steps = 3  # type: ignore[misc]


def test_samplers_register_through_the_hook_and_satisfy_the_contract():
    registry = build_registry(plugins=[("samplers", samplers_plugin)], entry_points=False)
    assert registry.names("sampler") == ["eb", "fast-dllm", "low-confidence", "random-remask", "roar", "wino"]
    options = {"gen_length": 8, "block_length": 4}
    built = {
        "low-confidence": registry.create("sampler", "low-confidence", steps=4, **options),
        "random-remask": registry.create("sampler", "random-remask", steps=8, **options),
        "roar": registry.create("sampler", "roar", **options),
        "fast-dllm": registry.create("sampler", "fast-dllm", **options),
        "eb": registry.create("sampler", "entropy-bounded", **options),
        "wino": registry.create("sampler", "wino", **options),
    }
    assert built["random-remask"].remasking == "random"
    for sampler in built.values():
        assert isinstance(sampler, Sampler)
    assert all(e.help for e in registry.entries("sampler"))
