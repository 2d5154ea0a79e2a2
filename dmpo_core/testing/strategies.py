"""Public hypothesis strategies for property-testing weighting schemes and objectives.

A plugin author checks a new weighting scheme with the same inputs dmpo's own suite uses::

    from hypothesis import given
    from dmpo_core.testing import laws, strategies as dst

    @given(batch=dst.group_batches())
    def test_weights_sum_to_one_per_group(batch):
        laws.weights_sum_to_one_per_group(MyScheme(), batch)

What the inputs cover, by default (docs/concepts.md letters):

* groups of size ``G`` from 1 to 256 (1, 2 and 256 are drawn on purpose), ``B`` up to 8
  groups, at most 512 rows, so that each example stays cheap on a laptop;
* rewards and log-RNDs up to ``1e4`` in magnitude, in float32 and bfloat16 (and float16,
  float64), drawn in several shapes: element by element (small batches), uniform, normal,
  a few tied levels (binary 0/1 rewards are the common case), extremes only, constants;
* missing (NaN) rewards: none, some, a whole group, or every row;
* ``alpha = 0`` and ``alpha > 0`` (log-uniform in ``[1e-3, 1e3]``, plus the paper's 0.04)
  for the built-in DMPO schemes (:func:`dmpo_schemes`);
* for any other scheme, its options drawn from its OPTIONS CLASS (:func:`scheme_options`):
  the attrs fields' types, defaults and validators decide what is drawn, an author may
  override a field's strategy, and a factory without an options class draws none.

Large vectors are filled from a torch generator seeded by hypothesis (drawing 512 floats
one by one would make every example slow); the parameters of the fill (shape, scale,
seed, NaN pattern) are drawn by hypothesis, so failures still shrink to small examples.

This module imports hypothesis, which is a test extra: ``import dmpo_core`` never imports
it (a test in ``tests/core`` checks that).
"""

from __future__ import annotations

import functools
import math
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from dmpo_core.config import field_types
from dmpo_core.contracts import CURRENT_LOGP, LOG_P_OLD, LOG_RND, WeightingScheme
from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.errors import DmpoError
from dmpo_core.objective.schemes import BASELINES, DmpoWeighting

MAGNITUDE = 1e4
"""Default largest absolute value of rewards and log-RNDs."""
DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
"""Default input dtypes of rewards and log-RNDs (float32 and bfloat16 are the ones that matter)."""
MAX_ROWS = 512
"""Default cap on ``B*G`` (keeps each example cheap; the laws do not depend on size)."""

_ELEMENTWISE_MAX = 32  # up to this many rows, values may be drawn one by one
_FILLS = ("elements", "uniform", "normal", "ties", "extremes", "constant")
_MISSING = ("none", "none", "some", "group", "all")  # "none" twice: most batches are complete


# --------------------------------------------------------------------------- profiles


def register_profiles() -> None:
    """Register the hypothesis profiles of dmpo's suites.

    ``default`` and ``ci`` run 200 examples per law (CI must run at least that many),
    ``long`` runs 2000. No deadline: the first call of a torch op can take longer than
    hypothesis' default 200 ms. ``too_slow`` is not a health failure because large
    groups (G = 256) are part of what must be covered.
    """
    common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
    settings.register_profile("default", max_examples=200, **common)
    settings.register_profile("ci", max_examples=200, **common)
    settings.register_profile("long", max_examples=2000, **common)


def load_profile(env_var: str = "HYPOTHESIS_PROFILE") -> str:
    """Register the profiles and load the one named by ``$HYPOTHESIS_PROFILE`` (default ``default``).

    Returns the name of the profile loaded. Call it from a ``conftest.py``.
    """
    register_profiles()
    name = os.environ.get(env_var, "default")
    settings.load_profile(name)
    return name


# --------------------------------------------------------------------------- batches


@attrs.frozen(kw_only=True)
class GroupBatch:
    """Inputs of a weighting scheme for ``B`` groups of ``G`` rows (prompt-major ``[B*G]``)."""

    rewards: torch.Tensor  # [B*G] float (drawn dtype), NaN where the reward is missing
    log_rnd: torch.Tensor  # [B*G] same dtype as rewards, finite
    group_size: int
    """``G``."""
    log_p_current: torch.Tensor  # [B*G] float32: ELBO_theta(x) at loss time (unbiased baseline)
    log_p_old: torch.Tensor  # [B*G] float32: log p_old(x)
    seed: int = 0
    """Seed for any further randomness a law needs (permutations, shifts)."""

    @property
    def num_rows(self) -> int:
        """``B*G``."""
        return int(self.rewards.shape[0])

    @property
    def num_groups(self) -> int:
        """``B``."""
        return self.num_rows // self.group_size

    @property
    def valid(self) -> torch.Tensor:
        """``[B*G]`` bool: rows whose reward is present."""
        return torch.isfinite(self.rewards)  # [B*G]

    def generator(self, salt: int = 0) -> torch.Generator:
        """A CPU generator seeded from :attr:`seed` (``salt`` gives independent streams)."""
        return torch.Generator().manual_seed((self.seed * 1_000_003 + salt) % (2**63))

    def replace(self, **changes: object) -> GroupBatch:
        """A copy with some fields replaced."""
        return attrs.evolve(self, **changes)

    def group(self, index: int) -> GroupBatch:
        """Group ``index`` alone, as a batch of one group."""
        rows = slice(index * self.group_size, (index + 1) * self.group_size)
        return self.replace(
            rewards=self.rewards[rows],
            log_rnd=self.log_rnd[rows],
            log_p_current=self.log_p_current[rows],
            log_p_old=self.log_p_old[rows],
        )

    def call(self, scheme: WeightingScheme) -> WeightOutput:
        """Apply ``scheme`` to this batch (the current/old log-likelihoods are always passed;
        schemes that do not need them ignore them)."""
        return scheme(
            self.rewards,
            self.log_rnd,
            self.group_size,
            log_p_current=self.log_p_current,
            log_p_old=self.log_p_old,
        )

    def call_declared(self, scheme: WeightingScheme) -> WeightOutput:
        """Apply ``scheme`` as the training loop may: an input is passed only when the scheme's
        ``needs`` declares it (``log_rnd`` for LOG_RND, ``log_p_old`` for LOG_P_OLD,
        ``log_p_current`` for CURRENT_LOGP), None otherwise."""
        needs = scheme.needs
        return scheme(
            self.rewards,
            self.log_rnd if LOG_RND in needs else None,
            self.group_size,
            log_p_current=self.log_p_current if CURRENT_LOGP in needs else None,
            log_p_old=self.log_p_old if LOG_P_OLD in needs else None,
        )


# Strategies are built once and cached: building (and validating) them on every draw
# costs more than drawing from them.


@functools.cache
def _log_uniform(low: float, high: float) -> st.SearchStrategy[float]:
    """Floats spread evenly over the decades of ``[low, high]`` (both > 0)."""
    return st.floats(math.log10(low), math.log10(high)).map(lambda e: min(high, max(low, 10.0**e)))


@functools.cache
def _scales(magnitude: float) -> st.SearchStrategy[float]:
    """Spreads of a vector: exact special values and anything in ``[1e-3, magnitude]``."""
    special = sorted({0.0, 1e-3, 1.0, 10.0, magnitude})
    return st.one_of(st.sampled_from(special), _log_uniform(1e-3, max(magnitude, 1e-3)))


@functools.cache
def _elements(magnitude: float) -> st.SearchStrategy[float]:
    special = [0.0, 1.0, -1.0, magnitude, -magnitude, 0.5]
    return st.one_of(
        st.sampled_from(special), st.floats(-magnitude, magnitude, allow_nan=False, allow_infinity=False)
    )


@functools.cache
def _element_lists(magnitude: float, min_size: int, max_size: int) -> st.SearchStrategy[list[float]]:
    return st.lists(_elements(magnitude), min_size=min_size, max_size=max_size)


@functools.cache
def _centers(magnitude: float) -> st.SearchStrategy[float]:
    return st.one_of(st.just(0.0), _elements(magnitude))


@functools.cache
def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@functools.cache
def _sampled(values: tuple) -> st.SearchStrategy:
    return st.sampled_from(values)


_SEEDS = st.integers(0, 2**32 - 1)
_FILL_KINDS = st.sampled_from(_FILLS)
_MISSING_KINDS = st.sampled_from(_MISSING)
_MISSING_FRACTIONS = st.sampled_from([0.1, 0.5, 0.9])


@st.composite
def vectors(
    draw: st.DrawFn, n: int, *, magnitude: float = MAGNITUDE, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A finite vector ``[n]`` with ``|x| <= magnitude`` in ``dtype``, in one of several shapes
    (element by element, uniform, normal, a few tied levels, extremes only, constant).

    ``magnitude`` is capped at half the dtype's largest value (float16: 32752), so the
    cast never overflows.
    """
    magnitude = min(magnitude, torch.finfo(dtype).max / 2)
    fill = draw(_FILL_KINDS)
    seed = draw(_SEEDS)
    gen = torch.Generator().manual_seed(seed)
    if fill == "elements" and n <= _ELEMENTWISE_MAX:
        x = torch.tensor(draw(_element_lists(magnitude, n, n)), dtype=torch.float64)
    elif fill == "ties":
        levels = torch.tensor(draw(_element_lists(magnitude, 1, 3)), dtype=torch.float64)
        x = levels[torch.randint(len(levels), (n,), generator=gen)]  # [n]
    elif fill == "extremes":
        x = magnitude * torch.randint(-1, 2, (n,), generator=gen).double()  # [n] in {-m, 0, m}
    elif fill == "constant":
        x = torch.full((n,), draw(_elements(magnitude)), dtype=torch.float64)
    else:
        scale = draw(_scales(magnitude))
        center = draw(_centers(magnitude))
        noise = torch.randn(n, generator=gen, dtype=torch.float64) if fill == "normal" else (
            2.0 * torch.rand(n, generator=gen, dtype=torch.float64) - 1.0
        )
        x = center + scale * noise  # [n]
    return x.clamp(-magnitude, magnitude).to(dtype)  # [n]


@st.composite
def missing_masks(draw: st.DrawFn, num_groups: int, group_size: int) -> torch.Tensor:
    """``[B*G]`` bool, True where the reward is missing: none, some, a whole group, or all."""
    n = num_groups * group_size
    mode = draw(_MISSING_KINDS)
    if mode == "none":
        return torch.zeros(n, dtype=torch.bool)
    if mode == "all":
        return torch.ones(n, dtype=torch.bool)
    gen = torch.Generator().manual_seed(draw(_SEEDS))
    p = draw(_MISSING_FRACTIONS)
    missing = torch.rand(n, generator=gen) < p  # [B*G]
    if mode == "group":
        k = draw(_integers(0, num_groups - 1))
        missing = missing.view(num_groups, group_size).clone()  # [B, G]
        missing[k] = True
        missing = missing.view(-1)  # [B*G]
    return missing


@functools.cache
def group_sizes(max_group_size: int = 256, min_group_size: int = 1) -> st.SearchStrategy[int]:
    """``G`` in ``[min_group_size, max_group_size]``, with both ends and 2 drawn on purpose."""
    ends = sorted({min_group_size, min(max(2, min_group_size), max_group_size), max_group_size})
    return st.one_of(st.sampled_from(ends), st.integers(min_group_size, max_group_size))


@st.composite
def group_batches(
    draw: st.DrawFn,
    max_groups: int = 8,
    max_group_size: int = 256,
    magnitude: float = MAGNITUDE,
    dtypes: Sequence[torch.dtype] = DTYPES,
    *,
    min_groups: int = 1,
    min_group_size: int = 1,
    missing: bool = True,
    max_rows: int = MAX_ROWS,
) -> GroupBatch:
    """Rewards, log-RNDs and group size of a rollout batch (a :class:`GroupBatch`).

    Args:
        max_groups: largest ``B``.
        max_group_size: largest ``G`` (drawn on purpose, as are 1 and 2).
        magnitude: largest absolute reward and log-RND.
        dtypes: dtypes the rewards and log-RNDs are drawn in (one per batch).
        min_groups: smallest ``B`` (2 makes cross-group laws non-trivial).
        min_group_size: smallest ``G``.
        missing: draw NaN (missing) rewards too.
        max_rows: cap on ``B*G``; ``G`` wins over ``B`` when both cannot fit.
    """
    g = draw(group_sizes(max_group_size, min_group_size))
    b_max = max(min_groups, min(max_groups, max_rows // g))
    b = draw(_integers(min_groups, b_max))
    n = b * g
    dtype = draw(_sampled(tuple(dtypes)))
    rewards = draw(vectors(n, magnitude=magnitude, dtype=dtype))  # [B*G]
    if missing:
        gone = draw(missing_masks(b, g))  # [B*G]
        rewards = rewards.masked_fill(gone, float("nan"))  # [B*G]
    log_rnd = draw(vectors(n, magnitude=magnitude, dtype=dtype))  # [B*G]
    # log p_old is a log-likelihood (<= 0); log p_current differs from it by a drawn vector.
    log_p_old = -draw(vectors(n, magnitude=min(magnitude, 1e30), dtype=torch.float32)).abs()  # [B*G]
    log_p_current = log_p_old + draw(vectors(n, magnitude=min(magnitude, 1e30), dtype=torch.float32))  # [B*G]
    return GroupBatch(
        rewards=rewards,
        log_rnd=log_rnd,
        group_size=g,
        log_p_current=log_p_current,
        log_p_old=log_p_old,
        seed=draw(_SEEDS),
    )


# --------------------------------------------------------------------------- scheme options


@functools.cache
def alphas(*, zero: bool = True, low: float = 1e-3, high: float = 1e3) -> st.SearchStrategy[float]:
    """KL temperatures: 0 (reference dropped, when ``zero``), both bounds, the paper's 0.04, 1, and
    log-uniform ``[low, high]``.

    The bounds are listed explicitly: hypothesis biases float draws toward constants it finds in
    loaded modules, so which log-uniform values a run meets depends on what else was imported,
    and the extremes must not hinge on that.
    """
    special = sorted({v for v in (low, 0.04, 1.0, high) if low <= v <= high})
    positive = st.one_of(st.sampled_from(special), _log_uniform(low, high))
    return st.one_of(st.just(0.0), positive) if zero else positive


@functools.cache
def large_alphas(low: float = 1.0, high: float = 1e12) -> st.SearchStrategy[float]:
    """Large KL temperatures, for the ``alpha -> infinity`` limit."""
    return _log_uniform(low, high)


@functools.cache
def coeffs(low: float = 1e-3) -> st.SearchStrategy[float]:
    """Proximal coefficients in ``(0, 1]``: the full step 1 and log-uniform ``[low, 1]``."""
    return st.one_of(st.just(1.0), _log_uniform(low, 1.0))


@functools.cache
def ess_thresholds() -> st.SearchStrategy[float]:
    """Targets of the adaptive coefficient search in ``(0, 1]`` (0.7 is the default)."""
    return st.one_of(st.just(0.7), st.floats(0.05, 1.0))


# Options of a scheme are drawn from its OPTIONS CLASS (a frozen attrs class), field by field.
# What a field may hold is what the class accepts: its validators and its cross-field checks
# (``__attrs_post_init__``) decide, found by building the class. Probing a log grid around the
# default gives each float or int field the interval that contains the default; values are
# then drawn from that interval (the default and its ends on purpose, log-uniform between).
_GRID_DECADES = 3
"""Numeric fields are probed over ``default * 10**k`` for ``|k| <= 3`` (and 0, 1, their negatives)."""


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(tp, False)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def options_class_of(factory: Callable[..., Any]) -> tuple[type | None, dict[str, Any]]:
    """The attrs class whose fields are ``factory``'s options, and the options it already fixes.

    * an attrs class is its own options class (``DmpoWeighting``, a plugin's frozen scheme);
    * ``functools.partial(cls, **kw)`` of one fixes ``kw`` (they are not drawn);
    * a registry entry (``registry.get("weighting", "dmpo")``) has its ``options`` class and
      fixes its ``fixed`` options (the registered name's defining option);
    * anything else (a plain function, a class taking ``**options``) declares none: ``(None, {})``.
    """
    if isinstance(factory, functools.partial):
        cls, fixed = options_class_of(factory.func)
        return cls, {**fixed, **factory.keywords}
    if attrs.has(factory) and isinstance(factory, type):
        return factory, {}
    options = getattr(factory, "options", None)
    if hasattr(factory, "option_fields") and (options is None or attrs.has(options)):  # a registry Entry
        return options, dict(getattr(factory, "fixed", {}) or {})
    return None, {}


def _accepts(cls: type, values: Mapping[str, Any]) -> bool:
    """True when ``cls(**values)`` builds (its validators and cross-field checks pass)."""
    try:
        cls(**values)
    except (ValueError, TypeError, DmpoError):
        return False
    return True


def _numeric_interval(cls: type, base: Mapping[str, Any], name: str, default: float, kind: type) -> list[float]:
    """Probe values of field ``name`` (sorted) whose run of accepted ones contains ``default``."""
    scale = abs(default) if default else 1.0
    grid = {0.0, 1.0, float(default)}
    for k in range(-_GRID_DECADES, _GRID_DECADES + 1):
        grid |= {scale * 10.0**k, -scale * 10.0**k}
    if kind is int:
        grid = {float(round(v)) for v in grid} | {2.0, -2.0}
    probes = sorted(grid)
    ok = [_accepts(cls, {**base, name: kind(v)}) for v in probes]
    i = probes.index(float(default))
    if not ok[i]:
        return [float(default)]
    lo = hi = i
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(probes) - 1 and ok[hi + 1]:
        hi += 1
    return probes[lo : hi + 1]


def _numbers(accepted: Sequence[float], default: float, kind: type) -> st.SearchStrategy:
    """The default, the accepted probes, and log-uniform values inside their interval."""
    lo, hi = accepted[0], accepted[-1]
    if kind is int:
        return st.one_of(st.just(int(default)), st.sampled_from([int(v) for v in accepted]),
                         st.integers(int(lo), int(hi)))
    parts: list[st.SearchStrategy] = [st.just(float(default)), st.sampled_from([float(v) for v in accepted])]
    pos = [v for v in accepted if v > 0]
    neg = [-v for v in accepted if v < 0]
    if len(pos) > 1:
        parts.append(_log_uniform(pos[0], pos[-1]))
    if len(neg) > 1:
        parts.append(_log_uniform(neg[0], neg[-1]).map(lambda v: -v))
    return st.one_of(*parts)


def option_field_strategy(cls: type, name: str, *, fixed: Mapping[str, Any] | None = None) -> st.SearchStrategy:
    """Values of the option ``name`` of the options class ``cls`` (``fixed`` options held).

    Decided by the field's type, default and validators: ``bool`` draws both values, a
    ``Literal`` its choices, a float or int the interval of accepted values around the
    default (probed by building ``cls``), ``X | None`` also None when accepted; any other
    type keeps its default. Every value is checked by building ``cls`` with it.

    Raises:
        ValueError: the field has no default and no type this can draw (pass an override).
    """
    base = dict(fixed or {})
    field = attrs.fields_dict(cls)[name]
    tp = field_types(cls).get(name, Any)
    inner, optional = _unwrap_optional(tp)
    has_default = field.default is not attrs.NOTHING
    default = field.default.factory() if isinstance(field.default, attrs.Factory) else field.default
    if inner is bool:
        values: st.SearchStrategy = st.booleans()
    elif typing.get_origin(inner) is typing.Literal:
        values = st.sampled_from(typing.get_args(inner))
    elif inner in (float, int) and (not has_default or isinstance(default, (int, float))):
        start = default if has_default and default is not None and not isinstance(default, bool) else 1
        values = _numbers(_numeric_interval(cls, base, name, start, inner), start, inner)
    elif has_default:
        values = st.just(default)
    else:
        raise ValueError(f"{cls.__name__}.{name}: no default and no strategy for type {tp!r}; "
                         f"pass strategies={{{name!r}: ...}}")
    if optional:
        values = st.one_of(st.just(None), values)
    # Each value alone is accepted (probed interval, or checked here for the others); the set
    # of all options is checked once more by scheme_options (cross-field checks).
    return values if inner in (float, int) and not optional else values.filter(lambda v: _accepts(cls, {**base, name: v}))


def scheme_options(
    factory: Callable[..., Any] | None = None,
    *,
    options_class: type | None = None,
    fixed: Mapping[str, Any] | None = None,
    strategies: Mapping[str, st.SearchStrategy] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword options for ``factory``, drawn from its options class (:func:`options_class_of`,
    or ``options_class``): one value per settable field (:func:`option_field_strategy`), with
    ``strategies`` overriding fields by name, the ``fixed`` options (and those the factory
    fixes) left out, and the whole set checked by building the class (cross-field checks).

    A factory without an options class draws no options (``{}``); ``strategies`` then are
    the options drawn (an author's explicit choice).
    """
    cls, own_fixed = options_class_of(factory) if factory is not None else (None, {})
    cls = options_class or cls
    held = {**own_fixed, **dict(fixed or {})}
    overrides = dict(strategies or {})
    if cls is None:
        return st.fixed_dictionaries(overrides)
    names = [f.name for f in attrs.fields(cls) if f.init and f.name not in held]
    unknown = set(overrides) - set(names) - set(held)
    if unknown:
        raise ValueError(f"strategies for unknown options {sorted(unknown)}; {cls.__name__} has {names}")
    fields = {n: overrides[n] if n in overrides else _field_strategy(cls, n, tuple(sorted(held.items(), key=str)))
              for n in names}
    return st.fixed_dictionaries(fields).filter(lambda o: _accepts(cls, {**held, **o}))


@functools.lru_cache(maxsize=256)
def _field_strategy(cls: type, name: str, fixed: tuple[tuple[str, Any], ...]) -> st.SearchStrategy:
    return option_field_strategy(cls, name, fixed=dict(fixed))


def option_names(factory: Callable[..., Any], *, options_class: type | None = None,
                 fixed: Mapping[str, Any] | None = None) -> frozenset[str]:
    """The options :func:`scheme_options` draws for ``factory`` (its settable fields)."""
    cls, own_fixed = options_class_of(factory)
    cls = options_class or cls
    held = {**own_fixed, **dict(fixed or {})}
    if cls is None:
        return frozenset()
    return frozenset(f.name for f in attrs.fields(cls) if f.init and f.name not in held)


@st.composite
def dmpo_schemes(
    draw: st.DrawFn,
    baselines: Sequence[str] = BASELINES,
    *,
    adaptive: st.SearchStrategy[bool] | None = None,
    lam: st.SearchStrategy[float] | None = None,
    alpha: st.SearchStrategy[float] | None = None,
    coeff: st.SearchStrategy[float] | None = None,
) -> DmpoWeighting:
    """Built-in :class:`DmpoWeighting` schemes over every baseline, fixed or adaptive coefficient."""
    is_adaptive = draw(adaptive if adaptive is not None else st.booleans())
    baseline = draw(_sampled(tuple(baselines)))
    options: dict[str, object] = {
        "baseline": baseline,
        "alpha": draw(alpha if alpha is not None else alphas()),
        "lam": draw(lam if lam is not None else _sampled((1.0, 1.0, 0.0, 0.5, 2.0))),
    }
    if is_adaptive:
        options.update(adaptive=True, ess_threshold=draw(ess_thresholds()))
    else:
        options["coeff"] = draw(coeff if coeff is not None else coeffs())
    return DmpoWeighting(**options)


def zero_sum_schemes(adaptive: st.SearchStrategy[bool] | None = None) -> st.SearchStrategy[DmpoWeighting]:
    """Built-in schemes whose advantages sum to zero per group (mean/negative/unbiased, lambda 1)."""
    return dmpo_schemes(("mean", "negative", "unbiased"), adaptive=adaptive, lam=st.just(1.0))


# --------------------------------------------------------------------------- masks and tokens


@attrs.frozen(kw_only=True)
class TokenBatch:
    """A rollout batch of token ids for objective laws, with the mask id and a seed."""

    batch: RolloutBatch
    mask_id: int
    """Id of the mask token; no prompt or completion token equals it."""
    vocab_size: int
    """``V``: token ids are in ``[0, V)``."""
    replicates: int
    """``R`` (even: antithetic pairs)."""
    seed: int

    def generator(self) -> torch.Generator:
        """A CPU generator seeded from :attr:`seed`."""
        return torch.Generator().manual_seed(self.seed)


@st.composite
def eligibles(draw: st.DrawFn, n_rows: int, length: int) -> torch.Tensor:
    """``[N, L]`` bool positions that may be masked: all, up to a first EOS, random, or none in some rows."""
    mode = draw(st.sampled_from(["all", "prefix", "random", "some-empty"]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    if mode == "all":
        return torch.ones(n_rows, length, dtype=torch.bool)
    if mode == "prefix":  # the tail after a first EOS is not eligible
        ends = torch.randint(0, length + 1, (n_rows, 1), generator=gen)  # [N, 1]
        return torch.arange(length)[None, :] < ends  # [N, L]
    elig = torch.rand(n_rows, length, generator=gen) < 0.6  # [N, L]
    if mode == "some-empty":
        elig[torch.rand(n_rows, generator=gen) < 0.5] = False
    return elig


@st.composite
def token_batches(
    draw: st.DrawFn,
    max_groups: int = 3,
    max_group_size: int = 4,
    max_prompt_len: int = 6,
    max_completion_len: int = 12,
    vocab_size: int = 11,
) -> TokenBatch:
    """Prompts (left padded), completions and eligible positions of a small rollout batch.

    The mask id is ``vocab_size - 1`` and no drawn token equals it, so a law can read the
    masks back from the model inputs. ``R`` is drawn from 2, 4, 6, 8.
    """
    g = draw(st.integers(1, max_group_size))
    b = draw(st.integers(1, max_groups))
    p = draw(st.integers(1, max_prompt_len))
    length = draw(st.integers(1, max_completion_len))
    n = b * g
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    mask_id = vocab_size - 1
    prompt_ids = torch.randint(0, mask_id, (n, p), generator=gen)  # [B*G, P]
    pad = torch.randint(0, p, (n, 1), generator=gen)  # [B*G, 1] left padding per row
    prompt_mask = torch.arange(p)[None, :] >= pad  # [B*G, P]
    completion_ids = torch.randint(0, mask_id, (n, length), generator=gen)  # [B*G, L]
    batch = RolloutBatch(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        completion_ids=completion_ids,
        eligible=draw(eligibles(n, length)),
        rewards=torch.rand(n, generator=gen),
        group_size=g,
        log_p_old=-torch.rand(n, generator=gen) * length,
        log_p_ref=-torch.rand(n, generator=gen) * length,
    )
    return TokenBatch(
        batch=batch,
        mask_id=mask_id,
        vocab_size=vocab_size,
        replicates=draw(st.sampled_from([2, 4, 6, 8])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


@attrs.frozen(kw_only=True)
class LossInputs:
    """Per-token log-probs and masks for the pure loss functions."""

    token_logp: torch.Tensor  # [R, N, L] float32, <= 0, 0 where not masked
    masks: torch.Tensor  # [R, N, L] bool
    group_size: int
    """``G``; ``N = B*G``."""


@st.composite
def loss_inputs(
    draw: st.DrawFn, max_replicates: int = 4, max_groups: int = 3, max_group_size: int = 4, max_len: int = 16
) -> LossInputs:
    """Random masks (some rows empty) and log-probs of the true tokens at the masked positions."""
    r = draw(st.integers(1, max_replicates))
    g = draw(st.integers(1, max_group_size))
    b = draw(st.integers(1, max_groups))
    length = draw(st.integers(1, max_len))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    p = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    masks = torch.rand(r, b * g, length, generator=gen) < p  # [R, N, L]
    scale = draw(st.sampled_from([1e-3, 1.0, 20.0]))
    logp = -scale * torch.rand(r, b * g, length, generator=gen)  # [R, N, L]
    return LossInputs(token_logp=logp * masks, masks=masks, group_size=g)
