"""The public contract every sampler plugin must pass.

A sampler turns prompts into completions (:class:`dmpo_core.contracts.Sampler`). These
checks pin what the training loop and the evaluation rely on:

* ``output_shape``: ``completion_ids [N, L]`` long; ``token_logp``/``commit_step`` ``[N, L]``
  exactly when ``returns_logp`` says so;
* ``nfe_accounting``: the reported NFE equals the model forwards actually run (plain and
  KV-cache forwards alike), and is at least the number of blocks;
* ``deterministic_under_seed``: at temperature 1, two calls with equally seeded generators
  give the same completions and NFE;
* ``no_mask_left``: no completion holds the mask token;
* ``prefill_respected``: with a ``prefill``, every fixed position keeps its token;
* ``block_boundaries_respected``: in every state the model is shown, no row has a token
  past its first block that still holds a mask (blocks are decoded left to right);
* ``batch_rows_equal_unbatched``: at temperature 0, each row of a left-padded batch gets the
  completion it gets alone, without padding (not applicable to a sampler that draws at random
  even at temperature 0, which two seeds reveal);
* ``refreshed_cache_equals_uncached``: a sampler with a ``cache`` option decodes the same
  tokens with the same NFE under ``cache="refresh"`` (the cache path recomputed at every
  step) as under ``cache="none"``, greedy and at temperature 1 with equal seeds;
* ``threshold_one_is_low_confidence``: a sampler with a ``threshold`` option, at threshold
  1.0 and temperature 0, decodes what one-token-per-step low-confidence decoding does.

A check that does not apply to a sampler (no ``cache`` or ``threshold`` option) raises
:class:`SamplerCheckNotApplicable`, a ``unittest.SkipTest``: pytest shows a skip with the
reason, never a silent pass.

The public entry point, stable::

    from dmpo_core.testing.sampler_contract import run_sampler_contract
    report = run_sampler_contract(MySampler, options={"my_option": 3})
    # {check name: "passed" or "not applicable: <reason>"}; raises SamplerContractError

``sampler_factory(**options)`` must build a sampler; it receives ``gen_length``,
``block_length`` and ``temperature`` (from :class:`SamplerContractSettings`), the given
``options`` and, for the checks that need them, ``cache``/``threshold``. Whether a factory has
an option is read from its attrs fields or its signature. ``model`` (default: a fresh
:class:`~dmpo_core.testing.toy_model.ToyDiffusionLM`) is any
:class:`~dmpo_core.contracts.LogitsFn` with ``mask_id`` and ``vocab`` attributes (a
:class:`~dmpo_core.contracts.CachingLogitsFn` for the cache check). As a pytest mixin, one
test per check::

    class TestMySampler(SamplerContractTests):
        sampler_factory = staticmethod(MySampler)
        sampler_options = {"my_option": 3}

This module imports only torch and attrs.

Letters: ``N`` rows, ``P`` prompt length, ``L`` completion length, ``K`` block length.
"""

from __future__ import annotations

import inspect
import unittest
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch

from dmpo_core.contracts import CachingLogitsFn, MaskedLogitsFn
from dmpo_core.testing.toy_model import ToyDiffusionLM

SamplerFactory = Callable[..., Any]
"""``sampler_factory(**options) -> Sampler``."""


class SamplerContractError(AssertionError):
    """A sampler broke one contract check; the message names the check and what differed."""

    def __init__(self, check: str, problem: str) -> None:
        self.check = check
        self.problem = problem
        super().__init__(f"sampler contract '{check}' failed: {problem}")


class SamplerCheckNotApplicable(unittest.SkipTest):
    """A check does not apply to this sampler (it lacks the option the check varies)."""


@attrs.frozen(kw_only=True)
class SamplerContractSettings:
    """Sizes of the checks (defaults: a few seconds on one CPU core with the toy model)."""

    gen_length: int = attrs.field(default=12, validator=attrs.validators.ge(2))
    """Completion length ``L``."""
    block_length: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    """Block length ``K`` (must divide ``gen_length``; several blocks test the boundaries)."""
    rows: int = attrs.field(default=3, validator=attrs.validators.ge(2))
    """Rows ``N`` of the test batches."""
    prompt_len: int = attrs.field(default=5, validator=attrs.validators.ge(2))
    """Prompt length ``P`` of the longest row (shorter rows are left padded)."""
    seed: int = 0
    """Seed of the prompts, prefills and generators."""

    def __attrs_post_init__(self) -> None:
        if self.gen_length % self.block_length:
            raise ValueError(f"block_length={self.block_length} must divide gen_length={self.gen_length}")


# ---- a model proxy that counts and records every forward ---------------------------------------


class _Recorder:
    """Wraps a logits function: counts forwards and keeps every state ``[R, S]`` it is shown."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.forwards = 0
        self.states: list[torch.Tensor] = []

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None) -> torch.Tensor:
        self.forwards += 1
        self.states.append(input_ids.detach().clone())
        return self.model(input_ids, attention_mask, last=last)


class _CachingRecorder(_Recorder):
    """A :class:`_Recorder` of a model that keeps a KV cache; cache forwards count too."""

    def open_cache(self, attention_mask: torch.Tensor) -> Any:
        recorder = self

        class _Cache:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def forward(self, input_ids: torch.Tensor, *, start: int, stop: int, keep: tuple[int, int]) -> torch.Tensor:
                recorder.forwards += 1
                recorder.states.append(input_ids.detach().clone())
                return self.inner.forward(input_ids, start=start, stop=stop, keep=keep)

            def select(self, rows: torch.Tensor) -> Any:
                return _Cache(self.inner.select(rows))

        return _Cache(self.model.open_cache(attention_mask))


class _MaskedRecorder(_Recorder):
    """A :class:`_Recorder` of a model with a custom-attention forward (``masked_logits``); those
    forwards count too, and their whole input (the sequence, then any extra positions) is kept."""

    def masked_logits(self, input_ids: torch.Tensor, attention: torch.Tensor, position_ids: torch.Tensor,
                      keep: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        self.states.append(input_ids.detach().clone())
        return self.model.masked_logits(input_ids, attention, position_ids, keep)


class _CachingMaskedRecorder(_CachingRecorder, _MaskedRecorder):
    """Both of the above."""


def _recorder(model: Any) -> _Recorder:
    caching, masked = isinstance(model, CachingLogitsFn), isinstance(model, MaskedLogitsFn)
    if caching and masked:
        return _CachingMaskedRecorder(model)
    if masked:
        return _MaskedRecorder(model)
    return _CachingRecorder(model) if caching else _Recorder(model)


# ---- inputs ------------------------------------------------------------------------------------


def _prompts(s: SamplerContractSettings, vocab: int, mask_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompts ``[N, P]``: row i has ``P - i`` real tokens (at least 1); never the mask id."""
    g = torch.Generator().manual_seed(s.seed)
    ids = torch.randint(0, vocab - 1, (s.rows, s.prompt_len), generator=g)  # [N, P]
    ids = torch.where(ids >= mask_id, ids + 1, ids) % vocab  # skip the mask id
    mask = torch.ones(s.rows, s.prompt_len, dtype=torch.long)  # [N, P]
    for i in range(s.rows):
        pad = min(i, s.prompt_len - 1)
        mask[i, :pad] = 0
        ids[i, :pad] = 0
    return ids, mask


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _has_option(factory: SamplerFactory, name: str) -> bool:
    target = factory
    if attrs.has(target):
        return name in attrs.fields_dict(target)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return name in params  # a **options factory declares nothing: pass its options class instead


class _Context:
    """What every check gets: the factory, its options, the settings and the model."""

    def __init__(self, factory: SamplerFactory, options: Mapping[str, Any] | None, s: SamplerContractSettings,
                 model: Any) -> None:
        self.factory, self.options, self.s = factory, dict(options or {}), s
        self.model = model if model is not None else ToyDiffusionLM(max_len=s.prompt_len + s.gen_length + 8,
                                                                      seed=s.seed)
        self.mask_id = int(self.model.mask_id)
        self.vocab = int(self.model.vocab)

    def sampler(self, **overrides: Any) -> Any:
        base = {"gen_length": self.s.gen_length, "block_length": self.s.block_length, "temperature": 0.0}
        return self.factory(**{**base, **self.options, **overrides})

    def run(self, sampler: Any, ids: torch.Tensor, mask: torch.Tensor, *, seed: int | None = None,
            prefill: torch.Tensor | None = None) -> tuple[Any, _Recorder]:
        rec = _recorder(self.model)
        with torch.no_grad():
            out = sampler(rec, ids, mask, mask_id=self.mask_id,
                          generator=None if seed is None else _generator(seed), prefill=prefill)
        return out, rec


def _fail(check: str, problem: str) -> SamplerContractError:
    return SamplerContractError(check, problem)


def _same(check: str, what: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if tuple(a.shape) != tuple(b.shape) or not torch.equal(a.cpu(), b.cpu()):
        rows = [] if a.shape != b.shape else (a.cpu() != b.cpu()).any(dim=-1).nonzero().flatten().tolist()
        raise _fail(check, f"{what} differ (rows {rows}): {a.tolist()} vs {b.tolist()}")


# ---- the checks --------------------------------------------------------------------------------


def check_output_shape(ctx: _Context) -> None:
    """``completion_ids [N, L]`` long; ``token_logp``/``commit_step`` ``[N, L]`` iff ``returns_logp``."""
    ids, mask = _prompts(ctx.s, ctx.vocab, ctx.mask_id)
    sampler = ctx.sampler()
    out, _ = ctx.run(sampler, ids, mask, seed=ctx.s.seed)
    want = (ctx.s.rows, ctx.s.gen_length)
    if tuple(out.completion_ids.shape) != want or out.completion_ids.dtype != torch.long:
        raise _fail("output_shape", f"completion_ids {tuple(out.completion_ids.shape)} {out.completion_ids.dtype}, "
                                    f"expected {want} torch.int64")
    for name in ("token_logp", "commit_step"):
        value = getattr(out, name)
        if bool(sampler.returns_logp) != (value is not None):
            raise _fail("output_shape", f"returns_logp is {sampler.returns_logp} but {name} is "
                                        f"{'None' if value is None else 'given'}")
        if value is not None and tuple(value.shape) != want:
            raise _fail("output_shape", f"{name} has shape {tuple(value.shape)}, expected {want}")


def check_nfe_accounting(ctx: _Context) -> None:
    """Reported NFE = forwards run (plain or cached), and at least one per block."""
    ids, mask = _prompts(ctx.s, ctx.vocab, ctx.mask_id)
    for temperature in (0.0, 1.0):
        out, rec = ctx.run(ctx.sampler(temperature=temperature), ids, mask, seed=ctx.s.seed)
        if out.nfe != rec.forwards:
            raise _fail("nfe_accounting", f"reported nfe {out.nfe} but the model ran {rec.forwards} forwards "
                                          f"(temperature {temperature})")
        blocks = ctx.s.gen_length // ctx.s.block_length
        if out.nfe < blocks:
            raise _fail("nfe_accounting", f"nfe {out.nfe} is below the number of blocks {blocks}")


def check_deterministic_under_seed(ctx: _Context) -> None:
    """Equal seeds at temperature 1: equal completions and NFE."""
    ids, mask = _prompts(ctx.s, ctx.vocab, ctx.mask_id)
    sampler = ctx.sampler(temperature=1.0)
    a, _ = ctx.run(sampler, ids, mask, seed=ctx.s.seed + 1)
    b, _ = ctx.run(sampler, ids, mask, seed=ctx.s.seed + 1)
    _same("deterministic_under_seed", "completions of two equally seeded calls", a.completion_ids, b.completion_ids)
    if a.nfe != b.nfe:
        raise _fail("deterministic_under_seed", f"nfe {a.nfe} vs {b.nfe} under equal seeds")


def check_no_mask_left(ctx: _Context) -> None:
    """No completion holds the mask token (greedy and sampled)."""
    ids, mask = _prompts(ctx.s, ctx.vocab, ctx.mask_id)
    for temperature in (0.0, 1.0):
        out, _ = ctx.run(ctx.sampler(temperature=temperature), ids, mask, seed=ctx.s.seed)
        left = (out.completion_ids == ctx.mask_id).nonzero().tolist()
        if left:
            raise _fail("no_mask_left", f"mask token left at [row, position] {left[:5]} (temperature {temperature})")


def _prefill(ctx: _Context) -> torch.Tensor:
    g = _generator(ctx.s.seed + 7)
    tokens = torch.randint(0, ctx.vocab - 1, (ctx.s.rows, ctx.s.gen_length), generator=g)  # [N, L]
    tokens = torch.where(tokens >= ctx.mask_id, tokens + 1, tokens)  # [N, L]: never the mask id
    fixed = torch.rand(ctx.s.rows, ctx.s.gen_length, generator=g) < 0.4  # [N, L]
    fixed[0, : ctx.s.block_length] = True  # a whole block fixed in one row
    fixed[-1] = False  # and a row with nothing fixed
    return torch.where(fixed, tokens, torch.full_like(tokens, ctx.mask_id))  # [N, L]


def check_prefill_respected(ctx: _Context) -> None:
    """Every fixed position of a prefill keeps its token; the free ones are decoded."""
    ids, mask = _prompts(ctx.s, ctx.vocab, ctx.mask_id)
    prefill = _prefill(ctx)
    fixed = prefill != ctx.mask_id  # [N, L]
    for temperature in (0.0, 1.0):
        out, _ = ctx.run(ctx.sampler(temperature=temperature), ids, mask, seed=ctx.s.seed, prefill=prefill)
        got = out.completion_ids.cpu()
        if not torch.equal(got[fixed], prefill[fixed]):
            raise _fail("prefill_respected", f"fixed tokens changed: {prefill.tolist()} -> {got.tolist()}")
        if bool((got == ctx.mask_id).any()):
            raise _fail("prefill_respected", f"mask token left with a prefill: {got.tolist()}")


def check_block_boundaries_respected(ctx: _Context) -> None:
    """In every state shown to the model, no token past a row's first masked block is decoded."""
    ids, mask = _prompts(ctx.s, ctx.vocab, ctx.mask_id)
    k, length = ctx.s.block_length, ctx.s.gen_length
    for temperature in (0.0, 1.0):
        _, rec = ctx.run(ctx.sampler(temperature=temperature), ids, mask, seed=ctx.s.seed)
        for step, state in enumerate(rec.states):
            completion = state[:, -length:].cpu()  # [R, L]
            masked = (completion == ctx.mask_id).view(completion.shape[0], length // k, k)  # [R, blocks, K]
            open_block = masked.any(dim=-1)  # [R, blocks]
            decoded = (~masked).any(dim=-1)  # [R, blocks]: some token decoded in the block
            # a block with a mask must have no decoded token in any later block
            later = decoded.flip(1).cumsum(1).flip(1) - decoded.long()  # [R, blocks]: decoded blocks after each
            bad = (open_block & (later > 0)).nonzero().tolist()
            if bad:
                raise _fail("block_boundaries_respected",
                            f"forward {step}: [row, block] {bad[:3]} still masked while a later block is decoded: "
                            f"{completion.tolist()}")


def check_batch_rows_equal_unbatched(ctx: _Context) -> None:
    """Greedy: each row of a left-padded batch decodes as it does alone (no padding)."""
    ids, mask = _prompts(ctx.s, ctx.vocab, ctx.mask_id)
    sampler = ctx.sampler(temperature=0.0)
    batch, _ = ctx.run(sampler, ids, mask, seed=ctx.s.seed)
    other, _ = ctx.run(sampler, ids, mask, seed=ctx.s.seed + 1)
    if not torch.equal(batch.completion_ids, other.completion_ids):
        raise SamplerCheckNotApplicable("the sampler draws at random even at temperature 0 (a random order or "
                                        "random remasking): rows of a batch share the random stream")
    for i in range(ctx.s.rows):
        real = mask[i].bool()
        alone, _ = ctx.run(sampler, ids[i : i + 1, real], mask[i : i + 1, real], seed=ctx.s.seed)
        _same("batch_rows_equal_unbatched", f"row {i} in the batch and alone",
              batch.completion_ids[i : i + 1], alone.completion_ids)


def check_refreshed_cache_equals_uncached(ctx: _Context) -> None:
    """``cache="refresh"`` decodes exactly what ``cache="none"`` does, with the same NFE."""
    if not _has_option(ctx.factory, "cache"):
        raise SamplerCheckNotApplicable("the sampler has no 'cache' option")
    if not isinstance(ctx.model, CachingLogitsFn):
        raise SamplerCheckNotApplicable("the model keeps no KV cache (no open_cache)")
    ids, mask = _prompts(ctx.s, ctx.vocab, ctx.mask_id)
    for temperature in (0.0, 1.0):
        plain, _ = ctx.run(ctx.sampler(temperature=temperature, cache="none"), ids, mask, seed=ctx.s.seed)
        cached, rec = ctx.run(ctx.sampler(temperature=temperature, cache="refresh"), ids, mask, seed=ctx.s.seed)
        _same("refreshed_cache_equals_uncached", f"completions (temperature {temperature}) uncached and refreshed",
              plain.completion_ids, cached.completion_ids)
        if plain.nfe != cached.nfe or cached.nfe != rec.forwards:
            raise _fail("refreshed_cache_equals_uncached",
                        f"nfe uncached {plain.nfe}, refreshed {cached.nfe}, forwards run {rec.forwards}")


def check_threshold_one_is_low_confidence(ctx: _Context) -> None:
    """Threshold 1.0, greedy: the tokens and NFE of one-token-per-step low-confidence decoding."""
    if not _has_option(ctx.factory, "threshold"):
        raise SamplerCheckNotApplicable("the sampler has no 'threshold' option")
    from dmpo_core.samplers.low_confidence import LowConfidenceSampler

    ids, mask = _prompts(ctx.s, ctx.vocab, ctx.mask_id)
    got, _ = ctx.run(ctx.sampler(temperature=0.0, threshold=1.0), ids, mask)
    want, _ = ctx.run(LowConfidenceSampler(gen_length=ctx.s.gen_length, block_length=ctx.s.block_length,
                                           steps=ctx.s.gen_length, temperature=0.0), ids, mask)
    _same("threshold_one_is_low_confidence", "threshold 1.0 and one-token-per-step low-confidence completions",
          got.completion_ids, want.completion_ids)
    if got.nfe != want.nfe:
        raise _fail("threshold_one_is_low_confidence", f"nfe {got.nfe} vs low-confidence {want.nfe}")


CHECKS: dict[str, Callable[[_Context], None]] = {
    "output_shape": check_output_shape,
    "nfe_accounting": check_nfe_accounting,
    "deterministic_under_seed": check_deterministic_under_seed,
    "no_mask_left": check_no_mask_left,
    "prefill_respected": check_prefill_respected,
    "block_boundaries_respected": check_block_boundaries_respected,
    "batch_rows_equal_unbatched": check_batch_rows_equal_unbatched,
    "refreshed_cache_equals_uncached": check_refreshed_cache_equals_uncached,
    "threshold_one_is_low_confidence": check_threshold_one_is_low_confidence,
}
CHECK_NAMES: tuple[str, ...] = tuple(CHECKS)


def check(name: str, sampler_factory: SamplerFactory, *, options: Mapping[str, Any] | None = None,
          settings: SamplerContractSettings | None = None, model: Any = None) -> None:
    """Run one check; raises :class:`SamplerContractError` or :class:`SamplerCheckNotApplicable`."""
    if name not in CHECKS:
        raise ValueError(f"unknown sampler contract check {name!r}; known: {', '.join(CHECK_NAMES)}")
    CHECKS[name](_Context(sampler_factory, options, settings or SamplerContractSettings(), model))


def run_sampler_contract(
    sampler_factory: SamplerFactory,
    *,
    options: Mapping[str, Any] | None = None,
    settings: SamplerContractSettings | None = None,
    only: tuple[str, ...] | list[str] | None = None,
    model: Any = None,
) -> dict[str, str]:
    """Run every check (or ``only`` these) on ``sampler_factory``; raise on the first failure.

    Returns ``{check: "passed" | "not applicable: <reason>"}``. ``model`` is shared by the
    checks (default: a fresh :class:`~dmpo_core.testing.toy_model.ToyDiffusionLM` per check).
    """
    names = tuple(only) if only else CHECK_NAMES
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown sampler contract checks {unknown}; known: {', '.join(CHECK_NAMES)}")
    report: dict[str, str] = {}
    for name in names:
        try:
            check(name, sampler_factory, options=options, settings=settings, model=model)
        except SamplerCheckNotApplicable as why:
            report[name] = f"not applicable: {why}"
        else:
            report[name] = "passed"
    return report


class SamplerContractTests:
    """pytest mixin: one test per contract check.

    Set ``sampler_factory`` (wrap a plain function in ``staticmethod``) and optionally
    ``sampler_options``, ``contract_settings`` or a ``contract_model()`` method.
    """

    sampler_factory: SamplerFactory
    sampler_options: Mapping[str, Any] = {}
    contract_settings = SamplerContractSettings()

    def contract_model(self) -> Any:
        """The model the checks decode with (None: the toy model)."""
        return None

    def _check(self, name: str) -> None:
        check(name, type(self).sampler_factory, options=self.sampler_options, settings=self.contract_settings,
              model=self.contract_model())

    def test_sampler_output_shape(self):
        self._check("output_shape")

    def test_sampler_nfe_accounting(self):
        self._check("nfe_accounting")

    def test_sampler_deterministic_under_seed(self):
        self._check("deterministic_under_seed")

    def test_sampler_no_mask_left(self):
        self._check("no_mask_left")

    def test_sampler_prefill_respected(self):
        self._check("prefill_respected")

    def test_sampler_block_boundaries_respected(self):
        self._check("block_boundaries_respected")

    def test_sampler_batch_rows_equal_unbatched(self):
        self._check("batch_rows_equal_unbatched")

    def test_sampler_refreshed_cache_equals_uncached(self):
        self._check("refreshed_cache_equals_uncached")

    def test_sampler_threshold_one_is_low_confidence(self):
        self._check("threshold_one_is_low_confidence")


__all__ = [
    "CHECKS",
    "CHECK_NAMES",
    "SamplerCheckNotApplicable",
    "SamplerContractError",
    "SamplerContractSettings",
    "SamplerContractTests",
    "check",
    "run_sampler_contract",
]
