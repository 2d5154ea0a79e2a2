"""Every built-in sampler passes the public sampler contract suite, in every cache mode it has;
and the suite catches samplers broken on purpose (a check that cannot fail is no check)."""

from __future__ import annotations

import attrs
import pytest
import torch

from dmpo_core.samplers import EntropyBoundedSampler, FastDllmSampler, LowConfidenceSampler, RoarSampler, WinoSampler
from dmpo_core.samplers.common import DecodingSampler
from dmpo_core.testing.sampler_contract import (
    CHECK_NAMES,
    SamplerContractError,
    SamplerContractTests,
    check,
    run_sampler_contract,
)

BUILT_IN = [
    ("low-confidence", LowConfidenceSampler, {}),
    ("low-confidence-steps", LowConfidenceSampler, {"steps": 6}),
    ("random-remask", LowConfidenceSampler, {"remasking": "random"}),
    ("roar", RoarSampler, {}),
    ("fast-dllm", FastDllmSampler, {"threshold": 0.6}),
    ("eb", EntropyBoundedSampler, {"gamma": 0.5}),
    ("wino", WinoSampler, {"threshold": 0.3, "verify_threshold": 0.6}),
]


@pytest.fixture(autouse=True)
def _one_thread():
    """The toy model runs fastest on one thread (and leaves the other cores alone)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CACHED = [(name, cls, opts) for name, cls, opts in BUILT_IN if "cache" in attrs.fields_dict(cls)]


@pytest.mark.parametrize(("name", "factory", "options"), BUILT_IN, ids=[b[0] for b in BUILT_IN])
def test_built_in_sampler_passes_the_contract(name, factory, options):
    report = run_sampler_contract(factory, options=options)
    assert set(report) == set(CHECK_NAMES)
    assert all(v == "passed" or v.startswith("not applicable") for v in report.values())
    if "cache" in attrs.fields_dict(factory):
        assert report["refreshed_cache_equals_uncached"] == "passed"
    if factory in (FastDllmSampler, WinoSampler):
        assert report["threshold_one_is_low_confidence"] == "passed"
    if options.get("remasking") != "random" and factory is not RoarSampler:
        assert report["batch_rows_equal_unbatched"] == "passed"


@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize(("name", "factory", "options"), CACHED, ids=[b[0] for b in CACHED])
def test_block_cached_sampler_passes_the_contract(name, factory, options, cache):
    # the cached modes change the tokens (an approximation) but must keep every other promise
    only = [c for c in CHECK_NAMES if c not in ("refreshed_cache_equals_uncached", "threshold_one_is_low_confidence")]
    report = run_sampler_contract(factory, options={**options, "cache": cache}, only=only)
    random_at_zero = options.get("remasking") == "random"
    assert {k for k, v in report.items() if v != "passed"} == ({"batch_rows_equal_unbatched"} if random_at_zero else set())


def test_roar_has_no_cache_check():
    report = run_sampler_contract(RoarSampler, only=["refreshed_cache_equals_uncached"])
    assert report["refreshed_cache_equals_uncached"].startswith("not applicable")


class TestMixinOnFastDllm(SamplerContractTests):
    """The pytest mixin, as a plugin uses it."""

    sampler_factory = FastDllmSampler
    sampler_options = {"threshold": 0.7, "cache": "none"}


# ---- the suite fails samplers that break a promise --------------------------------------------


@attrs.frozen(kw_only=True)
class _Wrapped(DecodingSampler):
    """Low-confidence decoding whose output a test breaks on purpose."""

    gen_length: int = 12
    block_length: int = 4
    temperature: float = 0.0
    breakage: str = "none"

    def decoder(self):
        return LowConfidenceSampler(gen_length=self.gen_length, block_length=self.block_length,
                                    temperature=self.temperature).decoder()

    def __call__(self, logits_fn, prompt_ids, prompt_mask, *, mask_id, generator=None, prefill=None):
        out = super().__call__(logits_fn, prompt_ids, prompt_mask, mask_id=mask_id, generator=generator,
                               prefill=prefill)
        ids = out.completion_ids.clone()
        if self.breakage == "nfe":
            return attrs.evolve(out, nfe=out.nfe - 1)
        if self.breakage == "mask":
            ids[0, -1] = mask_id
        if self.breakage == "prefill" and prefill is not None:
            ids[0, 0] = (prefill[0, 0] + 1) % mask_id
        if self.breakage == "seed" and self.temperature > 0:
            ids[0, 0] = int(torch.randint(0, mask_id, (1,)))
        if self.breakage == "batch" and ids.shape[0] > 1:
            ids[1] = ids[0]
        return attrs.evolve(out, completion_ids=ids)


@pytest.mark.parametrize(("breakage", "check_name"), [
    ("nfe", "nfe_accounting"), ("mask", "no_mask_left"), ("prefill", "prefill_respected"),
    ("seed", "deterministic_under_seed"), ("batch", "batch_rows_equal_unbatched"),
])
def test_suite_catches_a_broken_sampler(breakage, check_name):
    check(check_name, _Wrapped, options={"breakage": "none"})  # the unbroken sampler passes
    with pytest.raises(SamplerContractError, match=check_name):
        check(check_name, _Wrapped, options={"breakage": breakage})


def test_suite_catches_a_sampler_that_ignores_blocks():
    # one block as long as the completion decodes past the suite's block boundaries
    def whole(**options):
        return LowConfidenceSampler(**{**options, "block_length": options["gen_length"]})

    with pytest.raises(SamplerContractError, match="block_boundaries_respected"):
        check("block_boundaries_respected", whole)


def test_suite_catches_a_cache_that_is_not_refreshed():
    # a sampler that maps cache=refresh to the dual cache is caught
    def stale(**options):
        if options.get("cache") == "refresh":
            options = {**options, "cache": "dual"}
        return FastDllmSampler(**options)

    stale.__signature__ = __import__("inspect").signature(FastDllmSampler)
    with pytest.raises(SamplerContractError, match="refreshed_cache_equals_uncached"):
        check("refreshed_cache_equals_uncached", stale, options={"threshold": 0.6})


def test_suite_catches_a_threshold_that_is_not_a_threshold():
    def loose(**options):
        return FastDllmSampler(**{**options, "threshold": min(options.get("threshold", 0.9), 0.3)})

    loose.__signature__ = __import__("inspect").signature(FastDllmSampler)
    with pytest.raises(SamplerContractError, match="threshold_one_is_low_confidence"):
        check("threshold_one_is_low_confidence", loose)
