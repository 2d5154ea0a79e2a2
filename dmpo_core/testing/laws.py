"""Public laws of weighting schemes and objectives, as plain assertion functions.

Each law takes a component (a weighting scheme following
:class:`dmpo_core.contracts.WeightingScheme`, a scheme factory, or the loss functions) and
generated inputs (:mod:`dmpo_core.testing.strategies`), and raises :class:`LawError` (an
``AssertionError``) with the law's name and the offending group or row when the law does not
hold. Two families:

* :data:`UNIVERSAL_WEIGHTING_LAWS` hold for ANY weighting scheme (shapes, dtypes, finiteness,
  stats, invalid rows and empty groups, permutation equivariance, purity, ``needs``, weights
  when given, zero sum when declared);
* :data:`DMPO_WEIGHTING_LAWS` hold for DMPO-like schemes, weights
  ``softmax(coeff * (log_rnd + f(r)/alpha))`` minus a baseline (invariances, independence of
  groups, monotonicity, ESS, the alpha and coeff limits, the adaptive coefficient).

:data:`WEIGHTING_LAWS` is both. Whether a law applies is decided from what the scheme
declares: its options class's fields (:data:`DMPO_FAMILY_FIELDS`, :data:`ADAPTIVE_FIELDS`),
``weights is None`` in its output, ``zero_sum``. A law that does not apply raises
:class:`LawNotApplicable` (a ``unittest.SkipTest``, so pytest reports a skip with the reason).
A plugin author checks a new scheme in three lines::

    @pytest.mark.parametrize("law", laws.WEIGHTING_LAWS)
    def test_law(law):
        laws.check(law, MyScheme)          # MyScheme(**options) builds a scheme

where the options are drawn from MyScheme's options class (an attrs class is its own; see
:func:`check`), or one law at a time with hypothesis::

    @given(batch=strategies.group_batches())
    def test_weights_sum_to_one_per_group(batch):
        laws.weights_sum_to_one_per_group(MyScheme(), batch)

Tolerances. Schemes return float32 weights and advantages computed from inputs that the
DMPO schemes upcast to float64. Two evaluations of mathematically equal inputs then
differ by (a) float32 rounding of outputs in ``[-1, 1]`` (at most ``2**-24 ~ 6e-8`` each)
and (b) float64 rounding of the tilted logits ``log_rnd + r / alpha``, whose absolute
error is ``~eps64 * |logit|``. :func:`output_tolerance` adds both with a safety factor; it
is ~1e-6 for every input the default strategies draw, so a real bug (an error of the size
of a weight) cannot hide behind it.
"""

from __future__ import annotations

import math
import unittest
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dmpo_core.contracts import CURRENT_LOGP, LOG_P_OLD, LOG_RND, NEEDS, WeightingScheme
from dmpo_core.data import WeightOutput
from dmpo_core.objective.estimators import noisy_inputs
from dmpo_core.objective.masks import CLAMP_LOW, mask_ratios, sample_masks
from dmpo_core.objective.schemes import DmpoWeighting
from dmpo_core.objective.wdce import wdce_loss
from dmpo_core.testing import strategies as dst

SchemeFactory = Callable[..., WeightingScheme]

OUTPUT_ATOL = 1e-6
"""Base absolute tolerance on float32 outputs in [-1, 1] (~16 float32 ulps of 1)."""
ESS_TOL = 1e-4
"""Tolerance of the adaptive coefficient search on the mean ESS (the search's own ``tol``)."""
_EPS64 = torch.finfo(torch.float64).eps


class LawError(AssertionError):
    """A law does not hold; the message names the law and where it fails."""


class LawNotApplicable(unittest.SkipTest):
    """A law does not apply to a scheme, by a fact the scheme declares; ``str()`` says which.

    Raised by :func:`check` (and by a law function for one scheme instance): a DMPO-family law
    for a scheme whose options class lacks ``alpha``/``coeff``, a weight law for a scheme whose
    ``weights`` is None, the zero-sum laws for a scheme whose ``zero_sum`` is False. It is a
    ``unittest.SkipTest``, so pytest (and unittest, and hypothesis) report the test as SKIPPED
    with this reason: never a silent pass, never a failure. :func:`check_all` lists them.
    """


def _fail(law: str, message: str) -> None:
    raise LawError(f"{law}: {message}")


def _not_applicable(law: str, reason: str) -> None:
    raise LawNotApplicable(f"{law}: does not apply: {reason}")


def couples_groups(scheme: WeightingScheme) -> bool:
    """True for schemes that couple groups on purpose.

    A scheme says so with a true ``couples_groups`` attribute; a batch-adaptive proximal
    coefficient (``DmpoWeighting(adaptive=True)``: ONE coefficient per batch, matched on the
    mean ESS) couples groups, so ``adaptive=True`` counts too. Laws that compare a group
    alone with the group inside a batch do not apply to such schemes.
    """
    return bool(getattr(scheme, "couples_groups", False) or getattr(scheme, "adaptive", False))


def output_tolerance(scheme: WeightingScheme, *batches: dst.GroupBatch) -> float:
    """Absolute tolerance for comparing outputs of ``scheme`` on ``batches`` (see module doc).

    ``scale`` bounds the tilted logits ``|log_rnd| + |r| / alpha`` (``alpha`` read from the
    scheme when it has one, 1 otherwise; ``|r|`` alone when ``alpha`` is 0). Comparisons
    scale it by ``1 + |expected|`` (:func:`_close`), for outputs larger than 1.
    """
    alpha = float(getattr(scheme, "alpha", 1.0) or 0.0)
    scale = 0.0
    for batch in batches:
        r = batch.rewards.double()[batch.valid].abs()  # [K]
        r_max = float(r.max()) if r.numel() else 0.0
        l_max = float(batch.log_rnd.double().abs().max()) if batch.num_rows else 0.0
        scale = max(scale, r_max if alpha == 0.0 else l_max + r_max / alpha)
    return OUTPUT_ATOL + 64 * _EPS64 * scale


def _rows_of(batch: dst.GroupBatch) -> tuple[int, int]:
    return batch.num_groups, batch.group_size


_OUTPUTS = ("weights", "baseline", "advantages")  # the float outputs; weights and baseline may be None


def _check_shapes(law: str, out: object, batch: dst.GroupBatch) -> WeightOutput:
    """The output is a WeightOutput: advantages a float ``[B*G]`` tensor, valid a bool ``[B*G]``
    tensor, weights and baseline None or float ``[B*G]`` tensors."""
    n = batch.num_rows
    if not isinstance(out, WeightOutput):
        _fail(law, f"the scheme must return a WeightOutput, got {type(out).__name__}")
    for name in ("advantages", "valid", "weights", "baseline"):
        t = getattr(out, name)
        if t is None and name in ("weights", "baseline"):
            continue
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n,):
            _fail(law, f"{name} must be a tensor of shape ({n},) [B*G], got {getattr(t, 'shape', type(t))}")
        want_bool = name == "valid"
        if want_bool != (t.dtype == torch.bool) or (not want_bool and not t.dtype.is_floating_point):
            _fail(law, f"{name} has dtype {t.dtype}, expected {'torch.bool' if want_bool else 'a float dtype'}")
    return out


def _check_output(law: str, out: object, batch: dst.GroupBatch) -> WeightOutput:
    """Shapes ``[B*G]``, dtypes and finiteness of everything a scheme returns."""
    out = _check_shapes(law, out, batch)
    for name in _OUTPUTS:
        t = getattr(out, name)
        if t is not None and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).nonzero()[0, 0])
            _fail(law, f"{name}[{bad}] = {float(t[bad])} is not finite (G={batch.group_size})")
    return out


def _weights_of(law: str, out: WeightOutput) -> torch.Tensor:
    """The importance weights; a scheme that gives none (``weights is None``) is not subject to ``law``."""
    if out.weights is None:
        _not_applicable(law, "the scheme gives no importance weights (WeightOutput.weights is None)")
    return out.weights


def _close(law: str, what: str, actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    """``|actual - expected| <= atol * (1 + |expected|)`` entrywise: ``atol`` absolute for outputs
    in [-1, 1], relative beyond (float32 rounds a value ``x`` by up to ``2**-24 |x|``)."""
    diff = (actual.double() - expected.double()).abs()  # [..]
    bound = atol * (1.0 + expected.double().abs())  # [..]
    if diff.numel() and bool((diff > bound).any()):
        i = int((diff - bound).reshape(-1).argmax())
        _fail(
            law,
            f"{what}: entry {i} is {float(actual.reshape(-1)[i])!r}, expected {float(expected.reshape(-1)[i])!r} "
            f"(|diff| {float(diff.reshape(-1)[i]):.3g} > tolerance {float(bound.reshape(-1)[i]):.3g})",
        )


def _same_outputs(law: str, a: WeightOutput, b: WeightOutput, atol: float, what: str = "") -> None:
    if not torch.equal(a.valid.bool(), b.valid.bool()):
        _fail(law, f"valid rows differ{what}")
    for name in _OUTPUTS:
        x, y = getattr(a, name), getattr(b, name)
        if (x is None) != (y is None):
            _fail(law, f"{name} is {'None' if x is None else 'given'} in one output and not the other{what}")
        if x is not None:
            _close(law, f"{name}{what}", x, y, atol)


def _take(out: WeightOutput, index: torch.Tensor | slice) -> WeightOutput:
    """The rows ``index`` of every tensor output (None stays None), stats kept."""
    return WeightOutput(
        weights=None if out.weights is None else out.weights[index],
        baseline=None if out.baseline is None else out.baseline[index],
        advantages=out.advantages[index],
        valid=out.valid[index],
        stats=out.stats,
    )


def _group_ranges(x: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """``max - min`` of ``x`` over the valid rows of each group (0 for empty groups). ``[B]`` float64."""
    z = x.double().view(-1, group_size)  # [B, G]
    ok = valid.view(-1, group_size)  # [B, G]
    hi = torch.where(ok, z, torch.full_like(z, -math.inf)).amax(dim=1)  # [B]
    lo = torch.where(ok, z, torch.full_like(z, math.inf)).amin(dim=1)  # [B]
    return torch.where(ok.any(dim=1), hi - lo, torch.zeros_like(hi))  # [B]


def _valid_softmax(logits: torch.Tensor, valid: torch.Tensor, group_size: int) -> torch.Tensor:
    """Softmax over the valid rows of each group (0 elsewhere), float64. ``[B*G]``."""
    z = logits.double().view(-1, group_size)  # [B, G]
    ok = valid.view(-1, group_size)  # [B, G]
    z = torch.where(ok, z, torch.full_like(z, -math.inf))  # [B, G]
    w = torch.softmax(z, dim=1)  # [B, G]; NaN for groups with no valid row
    return torch.where(ok, w, torch.zeros_like(w)).reshape(-1)  # [B*G]


def _per_group(x: torch.Tensor, group_size: int) -> torch.Tensor:
    return x.repeat_interleave(group_size)  # [B] -> [B*G]


# =========================================================================== universal laws
# Laws of ANY weighting scheme (dmpo_core.contracts.WeightingScheme): what the training loop
# relies on whatever the algorithm. A law about weights applies when the scheme gives them.


def outputs_have_contract_shapes_and_are_finite(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """The scheme returns a :class:`~dmpo_core.data.WeightOutput` whose ``advantages`` are a
    float ``[B*G]`` tensor, ``valid`` a bool ``[B*G]`` tensor, ``weights`` and ``baseline``
    None or float ``[B*G]`` tensors, and every float output is finite, for every input
    (missing rewards, groups with no valid reward, large and tied values)."""
    law = "outputs_have_contract_shapes_and_are_finite"
    _check_output(law, batch.call(scheme), batch)


def stats_are_a_name_to_float_mapping(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """``stats`` is a mapping of ``str`` names to plain numbers (``float``, or ``int``; not a
    bool or a tensor): the loop writes it as it is into ``metrics.jsonl``."""
    law = "stats_are_a_name_to_float_mapping"
    out = _check_shapes(law, batch.call(scheme), batch)
    if not isinstance(out.stats, Mapping):
        _fail(law, f"stats must be a mapping of names to floats, got {type(out.stats).__name__}")
    for key, value in out.stats.items():
        if not isinstance(key, str):
            _fail(law, f"stats key {key!r} is a {type(key).__name__}, expected a str name")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(law, f"stats[{key!r}] = {value!r} is a {type(value).__name__}, expected a float")


def invalid_rows_get_zero_advantage(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """``valid`` is True exactly on the rows whose reward is finite, and every row with a
    missing (NaN) reward gets advantage 0 (and weight 0 when the scheme gives weights): a
    completion nobody could score must not be pushed up or down."""
    law = "invalid_rows_get_zero_advantage"
    out = _check_output(law, batch.call(scheme), batch)
    valid = batch.valid  # [B*G]
    if not torch.equal(out.valid, valid):
        i = int((out.valid != valid).nonzero()[0, 0])
        _fail(law, f"valid[{i}] = {bool(out.valid[i])}, expected {bool(valid[i])} (reward {float(batch.rewards[i])!r})")
    for name in ("advantages", "weights"):
        t = getattr(out, name)
        if t is None:
            continue
        bad = (t != 0) & ~valid  # [B*G]
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            _fail(law, f"{name}[{i}] = {float(t[i])!r} on a row with a missing reward, expected 0")


def group_without_valid_reward_gets_zero_advantages(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """A group whose every reward is missing gets advantage 0 on every row (weight 0 when the
    scheme gives weights) and no row of the batch becomes NaN: one unscorable prompt must not
    poison the step. The emptied group is drawn from ``batch.seed``."""
    law = "group_without_valid_reward_gets_zero_advantages"
    b, g = _rows_of(batch)
    k = int(torch.randint(b, (1,), generator=batch.generator(salt=5)))
    rows = slice(k * g, (k + 1) * g)
    rewards = batch.rewards.clone()  # [B*G]
    rewards[rows] = math.nan
    empty = batch.replace(rewards=rewards)
    out = _check_output(law, empty.call(scheme), empty)
    if bool(out.valid[rows].any()):
        _fail(law, f"group {k} has no valid reward but valid is True on some of its rows")
    for name in ("advantages", "weights"):
        t = getattr(out, name)
        if t is not None and bool((t[rows] != 0).any()):
            _fail(law, f"group {k} has no valid reward but its {name} are {t[rows][:4].tolist()}, expected 0")


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equal values (NaN equal to NaN), dtype and shape."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.is_floating_point:
        return bool(((a == b) | (a.isnan() & b.isnan())).all())
    return torch.equal(a, b)


def calls_are_pure(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """Determinism and purity: calling the scheme twice on equal inputs gives bitwise equal
    outputs and stats, and the call does not modify its input tensors (the loop reuses the
    rewards and likelihoods of a batch for logging and for later calls)."""
    law = "calls_are_pure"
    names = ("rewards", "log_rnd", "log_p_current", "log_p_old")
    before = {n: getattr(batch, n).clone() for n in names}
    first = _check_output(law, batch.call(scheme), batch)
    for n in names:
        if not _same_tensor(getattr(batch, n), before[n]):
            _fail(law, f"the scheme modified its input {n} in place")
    second = _check_output(law, batch.replace(**{n: t.clone() for n, t in before.items()}).call(scheme), batch)
    for name in ("valid", *_OUTPUTS):
        x, y = getattr(first, name), getattr(second, name)
        if (x is None) != (y is None) or (x is not None and not _same_tensor(x, y)):
            _fail(law, f"{name} differs between two calls on equal inputs")
    if set(first.stats) != set(second.stats) or any(
        not (first.stats[k] == second.stats[k] or (first.stats[k] != first.stats[k] and second.stats[k] != second.stats[k]))
        for k in first.stats
    ):
        _fail(law, f"stats differ between two calls on equal inputs: {first.stats} vs {second.stats}")


def uses_only_the_inputs_its_needs_declare(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """``needs`` is a set of names from :data:`dmpo_core.contracts.NEEDS`, and the scheme gives
    the same outputs when every input it does not declare is None, as the loop passes it
    (``log_rnd`` without LOG_RND, ``log_p_old`` without LOG_P_OLD, ``log_p_current`` without
    CURRENT_LOGP): a scheme that reads an undeclared input would fail or differ in training."""
    law = "uses_only_the_inputs_its_needs_declare"
    needs = scheme.needs
    if not isinstance(needs, (set, frozenset)) or not all(isinstance(x, str) for x in needs):
        _fail(law, f"needs must be a frozenset of names from {sorted(NEEDS)}, got {needs!r}")
    if set(needs) - NEEDS:
        _fail(law, f"needs holds unknown names {sorted(set(needs) - NEEDS)}; known: {sorted(NEEDS)}")
    full = _check_output(law, batch.call(scheme), batch)
    try:
        declared = batch.call_declared(scheme)
    except Exception as err:  # noqa: BLE001 - whatever it raises, the law reports it by name
        undeclared = sorted({LOG_RND, LOG_P_OLD, CURRENT_LOGP} - set(needs))
        _fail(law, f"with needs={sorted(needs)} (so {undeclared} passed as None) the scheme raised "
                   f"{type(err).__name__}: {err}; declare every input it reads")
    _check_output(law, declared, batch)
    what = f" with the inputs needs={sorted(needs)} leaves out passed as None"
    _same_outputs(law, full, declared, output_tolerance(scheme, batch), what)


def weights_are_finite_and_non_negative(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """Weights, baseline and advantages are finite ``[B*G]`` tensors and weights are >= 0.

    Holds for every input, including missing (NaN) rewards and groups with no valid reward.
    Universal: raises :class:`LawNotApplicable` for a scheme that gives no weights.
    """
    law = "weights_are_finite_and_non_negative"
    out = _check_output(law, batch.call(scheme), batch)
    w = _weights_of(law, out)  # [B*G]
    if bool((w < 0).any()):
        i = int((w < 0).nonzero()[0, 0])
        _fail(law, f"weights[{i}] = {float(w[i])} < 0")


def weights_sum_to_one_per_group(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """The weights of the valid rows of each group sum to one; invalid rows and groups with
    no valid reward get weight 0.

    Tolerance :data:`OUTPUT_ATOL`: float32 weights carry a relative rounding of at most
    ``2**-24`` each, so their float64 sum is within ~6e-8 of the exact one. Universal: raises
    :class:`LawNotApplicable` for a scheme that gives no weights.
    """
    law = "weights_sum_to_one_per_group"
    out = _check_output(law, batch.call(scheme), batch)
    b, g = _rows_of(batch)
    valid = batch.valid.view(b, g)  # [B, G]
    w = _weights_of(law, out).double().view(b, g)  # [B, G]
    if bool((w[~valid] != 0).any()):
        _fail(law, "a row with a missing reward has a non-zero weight")
    sums = w.sum(dim=1)  # [B]
    expected = valid.any(dim=1).double()  # [B]: 1, or 0 for a group with no valid reward
    _close(law, "sum of the weights of a group", sums, expected, OUTPUT_ATOL)


def permutation_equivariant_within_group(
    scheme: WeightingScheme, batch: dst.GroupBatch, perm: torch.Tensor | None = None
) -> None:
    """Permuting the rows of each group (all inputs together) permutes the outputs the same way.

    ``perm`` is ``[B*G]`` long, mapping within groups; by default drawn from ``batch.seed``.
    """
    law = "permutation_equivariant_within_group"
    b, g = _rows_of(batch)
    if perm is None:
        gen = batch.generator(salt=3)
        perm = torch.cat([k * g + torch.randperm(g, generator=gen) for k in range(b)])  # [B*G]
    if not torch.equal(perm.view(b, g).div(g, rounding_mode="floor"), torch.arange(b)[:, None].expand(b, g)):
        raise ValueError("perm must map every row into its own group")
    moved = batch.replace(
        rewards=batch.rewards[perm],
        log_rnd=batch.log_rnd[perm],
        log_p_current=batch.log_p_current[perm],
        log_p_old=batch.log_p_old[perm],
    )
    out = batch.call(scheme)
    got = moved.call(scheme)
    _check_output(law, got, moved)
    expected = _take(out, perm)
    _same_outputs(law, got, expected, output_tolerance(scheme, batch), " after permuting rows within groups")


def advantages_sum_to_zero_per_group(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """For a scheme whose ``zero_sum`` is True (DMPO's mean, negative and unbiased baselines
    at lambda 1), the advantages of every group sum to zero: the update moves probability
    mass from bad to good completions. Universal: raises :class:`LawNotApplicable` when
    ``zero_sum`` is False.

    Tolerance :data:`OUTPUT_ATOL` times ``max(1, sum_j |a_j|)``: float32 rounds each ``a_j`` by
    at most ``2**-24 |a_j|`` (for DMPO ``sum |a_j| <= sum w_j + sum b_j = 2``).
    """
    law = "advantages_sum_to_zero_per_group"
    if not scheme.zero_sum:
        _not_applicable(law, "the scheme declares zero_sum=False")
    out = _check_output(law, batch.call(scheme), batch)
    a = out.advantages.double().view(batch.num_groups, batch.group_size)  # [B, G]
    sums = a.sum(dim=1)  # [B]
    tol = OUTPUT_ATOL * a.abs().sum(dim=1).clamp_min(1.0)  # [B]
    if bool((sums.abs() > tol).any()):
        k = int((sums.abs() - tol).argmax())
        _fail(law, f"the advantages of group {k} sum to {float(sums[k])!r}, expected 0 (tolerance {float(tol[k]):.3g})")


def equal_inputs_give_zero_advantages(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """For a zero-sum scheme, a group whose rows are indistinguishable (equal rewards, equal
    log-RNDs and, for schemes that read them, equal ``log p_current - log p_old``) gets
    uniform weights (when it gives weights) and zero advantages: there is nothing to prefer.

    Universal: it follows from permutation equivariance (the group is unchanged by swapping
    two of its valid rows, so they get equal outputs) and zero sum. Raises
    :class:`LawNotApplicable` when ``zero_sum`` is False.

    The batch's NaN pattern is kept; the valid rows of each group get the group's first
    valid reward, and every row the group's first log-RND. Rewards are drawn up to 1e4 in
    float64, where the mean of equal values can be an ulp off them: a scheme that divides by
    a group's spread should centre on one of the group's own values first (as
    ``dmpo_core.objective.grpo.group_normalised_advantages`` does), or rounding noise over a
    tiny spread fails this law.
    """
    law = "equal_inputs_give_zero_advantages"
    if not scheme.zero_sum:
        _not_applicable(law, "the scheme declares zero_sum=False")
    b, g = _rows_of(batch)
    valid = batch.valid.view(b, g)  # [B, G]
    r = batch.rewards.view(b, g)  # [B, G]
    first = valid.double().argmax(dim=1)  # [B] index of the first valid row (0 if none)
    r_const = r.gather(1, first[:, None]).expand(b, g)  # [B, G]
    rewards = torch.where(valid, r_const, r).reshape(-1)  # [B*G], NaN kept
    log_rnd = batch.log_rnd.view(b, g)[:, :1].expand(b, g).reshape(-1)  # [B*G]
    # Constant log p_current and log p_old per group: their difference is then exactly equal.
    log_cur = batch.log_p_current.view(b, g)[:, :1].expand(b, g).reshape(-1)  # [B*G]
    log_old = batch.log_p_old.view(b, g)[:, :1].expand(b, g).reshape(-1)  # [B*G]
    same = batch.replace(rewards=rewards, log_rnd=log_rnd, log_p_current=log_cur, log_p_old=log_old)
    out = same.call(scheme)
    _check_output(law, out, same)
    _close(law, "advantage of a group of equal rows", out.advantages, torch.zeros_like(out.advantages), OUTPUT_ATOL)
    if out.weights is None:
        return
    n = valid.sum(dim=1).double()  # [B]
    uniform = torch.where(valid, (1.0 / n.clamp_min(1))[:, None].expand(b, g), torch.zeros(b, g, dtype=torch.float64))
    _close(law, "weight of a group of equal rows", out.weights, uniform.reshape(-1), OUTPUT_ATOL)


# =========================================================================== DMPO-family laws
# Laws of DMPO-like schemes: self-normalised importance weights softmax(c * (log_rnd + f(r)/alpha))
# with a baseline. Checked for a scheme whose options class declares DMPO_FAMILY_FIELDS and that
# gives weights; for any other scheme check() raises LawNotApplicable.








def missing_rewards_are_excluded_and_counted(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """A row with a missing (NaN) reward is excluded and counted.

    * ``valid`` is False exactly on the NaN rows, which get weight 0 and advantage 0;
    * ``stats.n_invalid`` counts them and ``stats.n_empty_groups`` counts the groups with no
      valid reward (their advantages are all 0, never NaN);
    * the other inputs of an invalid row (log-RND, log-likelihoods) change nothing;
    * unless the scheme couples groups, each group's valid rows get the weights and
      advantages of the same group with the invalid rows removed.
    """
    law = "missing_rewards_are_excluded_and_counted"
    out = batch.call(scheme)
    _check_output(law, out, batch)
    valid = batch.valid  # [B*G]
    if not torch.equal(out.valid.bool(), valid):
        _fail(law, "valid must be True exactly where the reward is finite")
    _weights_of(law, out)
    for name in ("weights", "advantages"):
        t = getattr(out, name)[~valid]  # [K]
        if bool((t != 0).any()):
            _fail(law, f"{name} must be 0 on rows with a missing reward, got {t[t != 0][:3].tolist()}")
    b, g = _rows_of(batch)
    n_empty = int((~valid.view(b, g).any(dim=1)).sum())
    if out.stats.get("n_invalid") != int((~valid).sum()):
        _fail(law, f"stats['n_invalid'] = {out.stats.get('n_invalid')}, expected {int((~valid).sum())}")
    if out.stats.get("n_empty_groups") != n_empty:
        _fail(law, f"stats['n_empty_groups'] = {out.stats.get('n_empty_groups')}, expected {n_empty}")

    # The other inputs of invalid rows are irrelevant: replace them and compare.
    gen = batch.generator(salt=11)
    noise = torch.randn(batch.num_rows, generator=gen)  # [B*G]
    other = batch.replace(
        log_rnd=torch.where(valid, batch.log_rnd, (noise * 100).to(batch.log_rnd.dtype)),
        log_p_current=torch.where(valid, batch.log_p_current, batch.log_p_current - 50 * noise.abs()),
        log_p_old=torch.where(valid, batch.log_p_old, batch.log_p_old - 30 * noise.abs()),
    )
    atol = output_tolerance(scheme, batch, other)
    _same_outputs(law, out, other.call(scheme), atol, " after changing the inputs of invalid rows")

    if couples_groups(scheme):
        return
    for k in range(b):
        rows = torch.arange(k * g, (k + 1) * g)[valid[k * g : (k + 1) * g]]  # [n_k]
        if rows.numel() == 0:
            continue
        alone = batch.replace(
            rewards=batch.rewards[rows],
            log_rnd=batch.log_rnd[rows],
            log_p_current=batch.log_p_current[rows],
            log_p_old=batch.log_p_old[rows],
            group_size=int(rows.numel()),
        )
        sub = alone.call(scheme)
        for name in ("weights", "advantages"):
            what = f"{name} of group {k} without its invalid rows"
            _close(law, what, getattr(out, name)[rows], getattr(sub, name), atol)


def invariant_to_reward_shift_per_group(
    scheme: WeightingScheme, batch: dst.GroupBatch, shifts: torch.Tensor | None = None
) -> None:
    """Adding a constant to all rewards of a group (a different constant per group)
    changes no weight, baseline or advantage.

    ``shifts`` is ``[B]``; by default drawn from ``batch.seed`` up to the rewards' magnitude.
    The shift is applied in float64 (the shifted rewards are passed as float64), so the
    law compares equal mathematical inputs, not two roundings of them.
    """
    law = "invariant_to_reward_shift_per_group"
    b, g = _rows_of(batch)
    if shifts is None:
        top = float(batch.rewards.double()[batch.valid].abs().max()) if bool(batch.valid.any()) else 1.0
        shifts = (2 * torch.rand(b, generator=batch.generator(salt=1), dtype=torch.float64) - 1) * max(1.0, top)
    shifted = batch.replace(rewards=batch.rewards.double() + _per_group(shifts.double(), g))  # [B*G]
    atol = output_tolerance(scheme, batch, shifted)
    _same_outputs(law, batch.call(scheme), shifted.call(scheme), atol, " after shifting the rewards of each group")


def invariant_to_log_rnd_shift_per_group(
    scheme: WeightingScheme, batch: dst.GroupBatch, shifts: torch.Tensor | None = None
) -> None:
    """Adding a constant to all log-RNDs of a group changes no weight, baseline or advantage
    (the log-RND is known only up to the normalising constants of ``p_ref`` and ``p_old``).

    ``shifts`` is ``[B]``; by default drawn from ``batch.seed`` up to the log-RNDs' magnitude.
    """
    law = "invariant_to_log_rnd_shift_per_group"
    b, g = _rows_of(batch)
    if shifts is None:
        top = float(batch.log_rnd.double().abs().max()) if batch.num_rows else 1.0
        shifts = (2 * torch.rand(b, generator=batch.generator(salt=2), dtype=torch.float64) - 1) * max(1.0, top)
    shifted = batch.replace(log_rnd=batch.log_rnd.double() + _per_group(shifts.double(), g))  # [B*G]
    atol = output_tolerance(scheme, batch, shifted)
    _same_outputs(law, batch.call(scheme), shifted.call(scheme), atol, " after shifting the log-RNDs of each group")




def groups_are_independent(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """Each group's outputs depend on that group's inputs only: evaluating a group alone
    gives the same outputs as evaluating it inside the batch.

    Does not apply to schemes that couple groups on purpose (:func:`couples_groups`); it
    returns without checking for them.
    """
    law = "groups_are_independent"
    if couples_groups(scheme):
        return
    out = batch.call(scheme)
    atol = output_tolerance(scheme, batch)
    b, g = _rows_of(batch)
    for k in range(b):
        rows = slice(k * g, (k + 1) * g)
        alone = batch.group(k).call(scheme)
        part = _take(out, rows)
        _same_outputs(law, alone, part, atol, f" of group {k} alone and inside the batch of {b} groups")


def higher_reward_never_gets_lower_weight(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """Within a group, of two valid rows with the same log-RND, the one with the higher
    reward never gets the lower weight.

    To make such pairs common, rows ``2k`` and ``2k+1`` of each group are given the same
    log-RND first; then every pair of rows with equal log-RND is checked.
    """
    law = "higher_reward_never_gets_lower_weight"
    b, g = _rows_of(batch)
    pos = torch.arange(batch.num_rows) % g  # [B*G] position within the group
    partner = torch.arange(batch.num_rows) - pos % 2  # [B*G]
    paired = batch.replace(log_rnd=batch.log_rnd[partner])  # [B*G]
    out = paired.call(scheme)
    _check_output(law, out, paired)
    r = paired.rewards.double().view(b, g)  # [B, G]
    lr = paired.log_rnd.double().view(b, g)  # [B, G]
    ok = paired.valid.view(b, g)  # [B, G]
    w = _weights_of(law, out).double().view(b, g)  # [B, G]
    both = ok[:, :, None] & ok[:, None, :]  # [B, G, G]
    same = lr[:, :, None] == lr[:, None, :]  # [B, G, G]
    higher = r[:, :, None] > r[:, None, :]  # [B, G, G]: row i has a higher reward than row j
    lower = w[:, :, None] < w[:, None, :] - output_tolerance(scheme, paired)  # [B, G, G]
    bad = both & same & higher & lower  # [B, G, G]
    if bool(bad.any()):
        k, i, j = (int(v) for v in bad.nonzero()[0])
        _fail(
            law,
            f"group {k}: row {i} (reward {float(r[k, i])!r}) has weight {float(w[k, i])!r} < "
            f"row {j} (reward {float(r[k, j])!r}) with weight {float(w[k, j])!r}, same log-RND {float(lr[k, i])!r}",
        )


def ess_lies_between_one_over_g_and_one(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """The normalised ESS ``1 / (n * sum_j w_j^2)`` of every group lies in ``[1/n, 1]``
    (``n`` valid rows, so within ``[1/G, 1]``), and the scheme's stats report it:
    ``stats.ess_mean`` is the mean over groups with a valid reward, in ``[1/G, 1]``, and
    ``stats.ess_min`` the smallest (0 when a group has no valid reward).

    Tolerance 1e-5 relative: recomputing the ESS from float32 weights moves it by at most
    ~4 float32 ulps.
    """
    law = "ess_lies_between_one_over_g_and_one"
    out = batch.call(scheme)
    _check_output(law, out, batch)
    b, g = _rows_of(batch)
    n = batch.valid.view(b, g).sum(dim=1).double()  # [B]
    has = n > 0  # [B]
    w = _weights_of(law, out).double().view(b, g)  # [B, G]
    ess = 1.0 / (n * (w * w).sum(dim=1))  # [B]; inf/nan on empty groups, masked below
    tol = 1e-5
    for k in has.nonzero().flatten().tolist():
        if not (1.0 / n[k] - tol <= ess[k] <= 1.0 + tol):
            _fail(law, f"group {k}: ESS {float(ess[k])!r} outside [1/{int(n[k])}, 1]")
    stats = out.stats
    if bool(has.any()):
        mean = float(ess[has].mean())
        if not (1.0 / g - tol <= stats["ess_mean"] <= 1.0 + tol):
            _fail(law, f"stats['ess_mean'] = {stats['ess_mean']!r} outside [1/{g}, 1]")
        if abs(stats["ess_mean"] - mean) > tol:
            _fail(law, f"stats['ess_mean'] = {stats['ess_mean']!r} but the weights' mean group ESS is {mean!r}")
    if bool(has.all()):
        low = float(ess.min())
        if abs(stats["ess_min"] - low) > tol:
            _fail(law, f"stats['ess_min'] = {stats['ess_min']!r} but the weights' smallest group ESS is {low!r}")
    elif stats["ess_min"] != 0.0:
        _fail(law, f"stats['ess_min'] = {stats['ess_min']!r}; a group has no valid reward, so it must be 0")


def approaches_softmax_of_log_rnd_as_alpha_grows(
    factory: SchemeFactory, batch: dst.GroupBatch, *, alpha: float, coeff: float = 1.0
) -> None:
    """As ``alpha`` grows the rewards stop mattering: the weights approach
    ``softmax(coeff * log_rnd)`` over the valid rows of each group.

    Quantitatively, for a scheme whose weights are ``softmax(coeff * (log_rnd + f(r)/alpha))``
    with ``range(f(r)) <= range(r)`` within a group (DMPO: ``f(r) = r``), the logits differ
    from ``coeff * log_rnd`` by a per-row term of spread at most ``d = coeff * range(r) /
    alpha``, so each weight lies within a factor ``exp(d)`` of the limit:
    ``|w_j - w_j^inf| <= w_j^inf * (exp(d) - 1)``. The bound goes to 0 as ``alpha`` grows.
    """
    law = "approaches_softmax_of_log_rnd_as_alpha_grows"
    if not alpha > 0:
        raise ValueError(f"alpha={alpha!r}: this law needs alpha > 0")
    scheme = factory(alpha=alpha, coeff=coeff)
    out = batch.call(scheme)
    _check_output(law, out, batch)
    valid, g = batch.valid, batch.group_size
    limit = _valid_softmax(coeff * batch.log_rnd.double(), valid, g)  # [B*G]
    spread = coeff * _group_ranges(batch.rewards, valid, g) / alpha  # [B]
    bound = limit * torch.expm1(_per_group(spread, g)) + output_tolerance(scheme, batch)  # [B*G]
    diff = (_weights_of(law, out).double() - limit).abs()  # [B*G]
    if bool((diff > bound).any()):
        i = int((diff - bound).argmax())
        _fail(
            law,
            f"alpha={alpha!r}, coeff={coeff!r}: weight {i} is {float(out.weights[i])!r}, limit "
            f"softmax(coeff*log_rnd) gives {float(limit[i])!r}, allowed deviation {float(bound[i]):.3g}",
        )


def approaches_uniform_as_coeff_shrinks(
    factory: SchemeFactory, batch: dst.GroupBatch, *, coeff: float, alpha: float = 0.04
) -> None:
    """As the proximal coefficient ``c`` goes to 0 the weights approach uniform ``1/n``.

    Quantitatively, for weights ``softmax(c * z)`` whose tilt ``z`` has a spread ``D`` within
    the group, ``n * w_j`` lies in ``[exp(-c D), exp(c D)]``, so ``|n w_j - 1| <= exp(c D) - 1``.
    ``D`` is bounded by ``range(log_rnd) + range(r) / alpha`` (``range(r)`` when ``alpha`` is
    0), which holds for DMPO's tilt ``log_rnd + r/alpha`` and for any tilt
    ``log_rnd + f(r)/alpha`` with ``range(f(r)) <= range(r)``.
    """
    law = "approaches_uniform_as_coeff_shrinks"
    scheme = factory(alpha=alpha, coeff=coeff)
    out = batch.call(scheme)
    _check_output(law, out, batch)
    valid, g = batch.valid, batch.group_size
    b = batch.num_groups
    n = valid.view(b, g).sum(dim=1).double()  # [B]
    spread = _group_ranges(batch.rewards, valid, g)  # [B]
    if alpha > 0:
        spread = _group_ranges(batch.log_rnd, valid, g) + spread / alpha  # [B]
    # n*w ~ 1 carries the relative float32 rounding of w: OUTPUT_ATOL relative to (1 + bound).
    bound = torch.expm1(coeff * spread)  # [B]
    bound = bound + OUTPUT_ATOL * bound + output_tolerance(scheme, batch)  # [B]
    dev = (_per_group(n, g) * _weights_of(law, out).double() - 1.0).abs().view(b, g)  # [B, G]
    dev = torch.where(valid.view(b, g), dev, torch.zeros_like(dev))  # [B, G]
    worst = dev.amax(dim=1)  # [B]
    if bool((worst > bound).any()):
        k = int((worst - bound).argmax())
        _fail(
            law,
            f"coeff={coeff!r}, alpha={alpha!r}: group {k} has max |n w - 1| = {float(worst[k]):.3g} "
            f"> exp(c D) - 1 = {float(bound[k]):.3g}",
        )






def adaptive_coeff_meets_ess_threshold_or_reports_fallback(
    factory: SchemeFactory,
    batch: dst.GroupBatch,
    *,
    threshold: float,
    alpha: float = 0.04,
    coeff_min: float = 0.01,
    coeff_max: float = 0.99,
    tol: float = ESS_TOL,
) -> None:
    """With an adaptive proximal coefficient the mean group ESS of the weights hits the
    threshold within ``tol``, or ``stats.coeff_fallback`` is True and the reported
    coefficient is the bound that explains it: ``coeff_max`` when the ESS stays above the
    threshold (the weights are already spread), ``coeff_min`` when it stays below.

    The ESS is recomputed from the returned weights (so the stats cannot lie); 1e-5 is
    added to ``tol`` for the float32 rounding of the weights.
    """
    law = "adaptive_coeff_meets_ess_threshold_or_reports_fallback"
    scheme = factory(alpha=alpha, adaptive=True, ess_threshold=threshold, coeff_min=coeff_min, coeff_max=coeff_max)
    out = batch.call(scheme)
    _check_output(law, out, batch)
    b, g = _rows_of(batch)
    n = batch.valid.view(b, g).sum(dim=1).double()  # [B]
    has = n > 0  # [B]
    w = _weights_of(law, out).double().view(b, g)  # [B, G]
    ess = float((1.0 / (n[has] * (w[has] * w[has]).sum(dim=1))).mean()) if bool(has.any()) else 1.0
    stats = out.stats
    slack = tol + 1e-5
    if not (coeff_min - 1e-12 <= stats["coeff"] <= coeff_max + 1e-12):
        _fail(law, f"stats['coeff'] = {stats['coeff']!r} outside [{coeff_min}, {coeff_max}]")
    if not stats["coeff_fallback"]:
        if abs(ess - threshold) > slack:
            _fail(law, f"mean ESS {ess!r} misses the threshold {threshold!r} and no fallback is reported")
        return
    at_max = math.isclose(stats["coeff"], coeff_max, rel_tol=1e-9)
    at_min = math.isclose(stats["coeff"], coeff_min, rel_tol=1e-9)
    if not (at_max and ess >= threshold - slack) and not (at_min and ess <= threshold + slack):
        _fail(
            law,
            f"fallback reported with coeff {stats['coeff']!r} and mean ESS {ess!r} (threshold {threshold!r}): "
            f"expected coeff_max with ESS above the threshold or coeff_min with ESS below",
        )


# =========================================================================== registry laws


def registered_name_refuses_its_fixed_options(
    registry: Any, kind: str, name: str, changes: Mapping[str, Any] | None = None
) -> None:
    """A registered name keeps the options that define it (``dmpo`` fixes ``baseline:
    negative``): setting one, to ``changes[field]`` or by default to another choice of its
    ``Literal``/bool type, is refused by ``registry.validate`` and ``registry.create`` with a
    ConfigError naming the field; built without it, the component carries the fixed value.

    ``registry`` is a :class:`dmpo_core.registry.Registry` (``build_registry()``).
    """
    from dmpo_core.config import field_types
    from dmpo_core.errors import ConfigError

    law = "registered_name_refuses_its_fixed_options"
    entry = registry.get(kind, name)
    if not entry.fixed:
        _not_applicable(law, f"{kind} {name!r} fixes no option")
    hints = field_types(entry.options) if entry.options is not None else {}
    for field, value in entry.fixed.items():
        if changes is not None and field in changes:
            other = changes[field]
        elif isinstance(value, bool):
            other = not value
        else:
            choices = [c for c in getattr(hints.get(field), "__args__", ()) if c != value]
            if not choices:
                raise ValueError(f"{kind} {name!r}: pass changes={{{field!r}: ...}} (no other value known)")
            other = choices[0]
        attempts = (
            ("validate", lambda: registry.validate(kind, name, {field: other}, path=f"{kind}.options")),
            ("create", lambda: registry.create(kind, name, **{field: other})),
        )
        for how, attempt in attempts:
            try:
                attempt()
            except ConfigError as err:
                if field not in str(err):
                    _fail(law, f"{how}({kind} {name!r}, {field}={other!r}) was refused without naming {field!r}: {err}")
                continue
            _fail(law, f"{how}({kind} {name!r}, {field}={other!r}) was accepted; the name fixes {field}={value!r}")
        built = registry.create(kind, name)
        if hasattr(built, field) and getattr(built, field) != value:
            _fail(law, f"{kind} {name!r} built with {field}={getattr(built, field)!r}, expected the fixed {value!r}")


# =========================================================================== objective laws


def antithetic_masks_cover_each_eligible_token_once_per_pair(
    eligible: torch.Tensor, replicates: int, *, seed: int = 0, clamp: bool = True
) -> None:
    """``sample_masks(.., antithetic=True)``: masks are ``[R, N, L]`` bool, never outside
    ``eligible`` (so never the prompt, which is not part of the completion positions), and
    replicates ``2k`` and ``2k+1`` are disjoint and together cover every eligible position:
    each completion token is masked exactly once per pair."""
    law = "antithetic_masks_cover_each_eligible_token_once_per_pair"
    gen = torch.Generator().manual_seed(seed)
    masks = sample_masks(eligible, replicates, antithetic=True, clamp=clamp, generator=gen)  # [R, N, L]
    n, length = eligible.shape
    if masks.dtype != torch.bool or tuple(masks.shape) != (replicates, n, length):
        _fail(law, f"masks must be bool of shape {(replicates, n, length)}, got {masks.dtype} {tuple(masks.shape)}")
    elig = eligible.bool()  # [N, L]
    if bool((masks & ~elig).any()):
        _fail(law, "a position outside `eligible` is masked")
    pairs = masks.view(replicates // 2, 2, n, length)  # [R/2, 2, N, L]
    if bool((pairs[:, 0] & pairs[:, 1]).any()):
        _fail(law, "a position is masked twice within an antithetic pair")
    covered = pairs[:, 0] | pairs[:, 1]  # [R/2, N, L]
    if not bool((covered == elig[None]).all()):
        _fail(law, "an eligible position is masked in neither replicate of a pair")


def mask_ratios_are_clamped(n_draws: int, n_rows: int, *, seed: int = 0) -> None:
    """Clamped mask ratios ``0.1 + 0.9 t`` lie in ``[0.1, 1]``: no mask is nearly empty."""
    law = "mask_ratios_are_clamped"
    t = mask_ratios(n_draws, n_rows, clamp=True, generator=torch.Generator().manual_seed(seed))  # [D, N]
    if tuple(t.shape) != (n_draws, n_rows):
        _fail(law, f"shape {tuple(t.shape)} != {(n_draws, n_rows)}")
    if bool((t < CLAMP_LOW).any()) or bool((t > 1.0).any()):
        _fail(law, f"ratios outside [{CLAMP_LOW}, 1]: min {float(t.min())}, max {float(t.max())}")


def noisy_inputs_leave_prompt_intact(
    prompt_ids: torch.Tensor, completion_ids: torch.Tensor, masks: torch.Tensor, mask_id: int
) -> None:
    """``noisy_inputs`` returns ``[R*N, P+L]``: the prompt untouched, then the completion with
    exactly the masked positions set to ``mask_id``."""
    law = "noisy_inputs_leave_prompt_intact"
    r, n, length = masks.shape
    p = prompt_ids.shape[1]
    out = noisy_inputs(prompt_ids, completion_ids, masks, mask_id)  # [R*N, P+L]
    if tuple(out.shape) != (r * n, p + length):
        _fail(law, f"shape {tuple(out.shape)} != {(r * n, p + length)}")
    out = out.view(r, n, p + length)  # [R, N, P+L]
    if not torch.equal(out[:, :, :p], prompt_ids[None].expand(r, n, p)):
        _fail(law, "the prompt part of the noisy input differs from the prompt")
    completion = completion_ids[None].expand(r, n, length)  # [R, N, L]
    expected = torch.where(masks, torch.full_like(completion, mask_id), completion)  # [R, N, L]
    if not torch.equal(out[:, :, p:], expected):
        _fail(law, "the completion part is not the completion with the masked positions set to mask_id")


class _RecordingPolicy:
    """A stand-in policy: deterministic logits from the input ids; records every input."""

    def __init__(self, mask_id: int, vocab_size: int, seed: int = 0) -> None:
        self.mask_id = mask_id
        self.vocab_size = vocab_size
        gen = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab_size, vocab_size, generator=gen)  # [V, V]
        self.inputs: list[torch.Tensor] = []

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None) -> torch.Tensor:
        self.inputs.append(input_ids.clone())
        out = self.table[input_ids]  # [N, S, V]
        return out if last is None else out[:, -last:]  # [N, S', V]


def wdce_masks_each_completion_token_once_per_pair(objective: Callable[..., object], tokens: dst.TokenBatch) -> None:
    """An objective with antithetic masks (``WdceObjective``) feeds the model inputs whose
    prompt is intact and whose masked completion positions, read back from the inputs,
    form ``R`` masks in complementary pairs over the eligible positions: every completion
    token is masked exactly once per pair and the prompt never. The loss is finite.
    """
    law = "wdce_masks_each_completion_token_once_per_pair"
    batch = tokens.batch
    policy = _RecordingPolicy(tokens.mask_id, tokens.vocab_size, tokens.seed)
    uniform = DmpoWeighting(alpha=0.0, baseline="none")(torch.zeros(batch.num_rows), None, batch.group_size)
    loss, _ = objective(policy, batch, uniform, num_groups=batch.num_groups, generator=tokens.generator())
    if not bool(torch.isfinite(torch.as_tensor(loss)).all()):
        _fail(law, f"loss {loss!r} is not finite")
    if len(policy.inputs) != 1:
        _fail(law, f"expected one model call with all replicates, got {len(policy.inputs)}")
    inputs = policy.inputs[0]  # [R*N, P+L]
    n, p = batch.prompt_ids.shape
    length = batch.completion_ids.shape[1]
    r = inputs.shape[0] // n
    if r % 2 or inputs.shape[0] != r * n:
        _fail(law, f"{inputs.shape[0]} model rows is not an even number of replicates of {n} rows")
    inputs = inputs.view(r, n, p + length)  # [R, N, P+L]
    if not torch.equal(inputs[:, :, :p], batch.prompt_ids[None].expand(r, n, p)):
        _fail(law, "a prompt token was changed (masked) in the model input")
    completion = inputs[:, :, p:]  # [R, N, L]
    masked = completion == tokens.mask_id  # [R, N, L]
    if not torch.equal(torch.where(masked, batch.completion_ids[None].expand(r, n, length), completion),
                       batch.completion_ids[None].expand(r, n, length)):
        _fail(law, "an unmasked completion position differs from the completion")
    elig = batch.eligible.bool()  # [N, L]
    if bool((masked & ~elig).any()):
        _fail(law, "a position outside `eligible` is masked")
    pairs = masked.view(r // 2, 2, n, length)  # [R/2, 2, N, L]
    if bool((pairs[:, 0] & pairs[:, 1]).any()) or not bool(((pairs[:, 0] | pairs[:, 1]) == elig[None]).all()):
        _fail(law, "the replicates of a pair are not complementary over the eligible positions")


def wdce_with_uniform_weights_equals_sft_loss(inputs: dst.LossInputs) -> None:
    """With uniform advantages ``1/G``, ``wdce_loss`` equals the masked-diffusion SFT loss: the
    mean over replicates and completions of ``DCE = (1/max(m, 1)) * sum_{i masked} -log p``.

    The reference is computed here in float64; tolerance 1e-5 relative (float32 sums of at
    most a few hundred terms).
    """
    law = "wdce_with_uniform_weights_equals_sft_loss"
    r, n, length = inputs.masks.shape
    g = inputs.group_size
    adv = torch.full((n,), 1.0 / g)  # [N]
    loss, stats = wdce_loss(inputs.token_logp, inputs.masks, adv, n // g)
    m = inputs.masks.sum(dim=-1).double().clamp_min(1.0)  # [R, N]
    nll = -(inputs.token_logp.double() * inputs.masks).sum(dim=-1)  # [R, N]
    expected = float((nll / m).mean())
    tol = 1e-6 + 1e-5 * abs(expected)
    if abs(float(loss) - expected) > tol:
        _fail(law, f"loss {float(loss)!r} != mean DCE {expected!r}")
    if abs(stats["dce_mean"] - expected) > tol:
        _fail(law, f"stats['dce_mean'] {stats['dce_mean']!r} != mean DCE {expected!r}")


# =========================================================================== runners


def _given(test: Callable[..., None], max_examples: int | None, **strategies: st.SearchStrategy) -> None:
    """Run ``test`` under hypothesis, on one torch thread (the tensors are tiny: a thread
    pool only adds overhead)."""
    wrapped = given(**strategies)(test)
    if max_examples is not None:
        wrapped = settings(max_examples=max_examples)(wrapped)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wrapped()
    finally:
        torch.set_num_threads(threads)


DMPO_FAMILY_FIELDS: tuple[str, ...] = ("alpha", "coeff")
"""Options that make a scheme DMPO-like: the KL temperature and the proximal coefficient of the
tilt ``softmax(coeff * (log_rnd + f(r) / alpha))``. The DMPO-family laws vary them, so they apply
to a scheme whose options class declares both (and that gives weights)."""
ADAPTIVE_FIELDS: tuple[str, ...] = ("alpha", "adaptive", "ess_threshold", "coeff_min", "coeff_max")
"""Options of DMPO's adaptive proximal coefficient (its law sets them all)."""

_PROBE = dst.GroupBatch(  # two groups of two rows: a scheme built with its defaults shows what it returns
    rewards=torch.tensor([1.0, 0.0, 0.5, 0.25]),
    log_rnd=torch.tensor([0.1, -0.2, 0.0, 0.3]),
    group_size=2,
    log_p_current=torch.tensor([-1.0, -2.0, -1.5, -0.5]),
    log_p_old=torch.tensor([-1.2, -1.8, -1.0, -0.7]),
)


class _Target:
    """What a runner checks: ``factory``, its options class and fixed options, the author's
    per-field strategies; decides which laws apply from what these declare."""

    def __init__(self, factory: SchemeFactory, options_class: type | None, fixed: Mapping[str, Any] | None,
                 strategies: Mapping[str, st.SearchStrategy] | None) -> None:
        cls, own_fixed = dst.options_class_of(factory)
        self.options_class = options_class or cls
        # A registry entry is built by its factory with its fixed options; a partial fixes its own.
        is_entry = hasattr(factory, "option_fields") and hasattr(factory, "factory")
        self.factory: SchemeFactory = factory.factory if is_entry else factory
        self.passed = {**(own_fixed if is_entry else {}), **dict(fixed or {})}
        self.held = {**own_fixed, **dict(fixed or {})}
        self.strategies = dict(strategies or {})
        self.names = dst.option_names(factory, options_class=self.options_class, fixed=fixed)

    def build(self, **options: Any) -> WeightingScheme:
        """The scheme with ``options`` (and the fixed ones)."""
        return self.factory(**{**self.passed, **options})

    def options(self, sweep: Mapping[str, st.SearchStrategy] | None = None) -> st.SearchStrategy[dict[str, Any]]:
        """Options drawn from the options class; a law's ``sweep`` wins over the author's strategies."""
        chosen = {**self.strategies, **{k: v for k, v in dict(sweep or {}).items() if k in self.names}}
        return dst.scheme_options(self.factory, options_class=self.options_class, fixed=self.held, strategies=chosen)

    def require(self, law: str, fields: Iterable[str], *, weights: bool) -> None:
        """Raise :class:`LawNotApplicable` unless the options class declares ``fields`` and (when
        ``weights``) the scheme built with its default options gives weights."""
        missing = sorted(set(fields) - self.names)
        if missing:
            declared = sorted(self.names) if self.options_class is not None else "no options class"
            _not_applicable(law, f"a DMPO-family law, for schemes whose options declare {list(fields)}; "
                                 f"{getattr(self.factory, '__name__', self.factory)!r} lacks {missing} "
                                 f"(its options: {declared})")
        if weights:
            try:
                out = _PROBE.call(self.build())
            except Exception:  # noqa: BLE001 - a scheme that cannot build or run is the law's to report
                return
            if isinstance(out, WeightOutput) and out.weights is None:
                _not_applicable(law, "the scheme gives no importance weights (WeightOutput.weights is None)")


class _Tally:
    """Counts the drawn schemes a law applied to; a law that applied to none is not applicable."""

    def __init__(self, law: str) -> None:
        self.law, self.applied, self.reason = law, 0, ""

    def __enter__(self) -> _Tally:
        return self

    def __exit__(self, kind: type | None, err: BaseException | None, tb: object) -> bool:
        if isinstance(err, LawNotApplicable):
            self.reason = self.reason or str(err)
            return True
        if err is None:
            self.applied += 1
        return False

    def finish(self) -> None:
        if not self.applied and self.reason:
            raise LawNotApplicable(f"{self.reason} (for every drawn scheme)")


LawRunner = Callable[..., None]
"""``run(factory, *, max_examples=None, options_class=None, fixed=None, strategies=None)``."""


def _instance_runner(
    law: Callable[[WeightingScheme, dst.GroupBatch], None],
    *,
    requires: tuple[str, ...] = (),
    weights: bool = False,
    min_groups: int = 1,
) -> LawRunner:
    """A runner checking ``law`` on ``factory(**options)`` over drawn batches and options drawn
    from the factory's options class; DMPO-family laws ``require`` option fields."""

    def run(factory: SchemeFactory, *, max_examples: int | None = None, options_class: type | None = None,
            fixed: Mapping[str, Any] | None = None, strategies: Mapping[str, st.SearchStrategy] | None = None) -> None:
        target = _Target(factory, options_class, fixed, strategies)
        target.require(law.__name__, requires, weights=weights)
        tally = _Tally(law.__name__)

        def test(batch: dst.GroupBatch, options: dict[str, Any]) -> None:
            with tally:
                law(target.build(**options), batch)

        _given(test, max_examples, batch=dst.group_batches(min_groups=min_groups), options=target.options())
        tally.finish()

    run.__doc__ = law.__doc__
    return run


def _split(options: dict[str, Any], *names: str) -> tuple[list[Any], dict[str, Any]]:
    """The values of ``names`` and the other options."""
    rest = dict(options)
    return [rest.pop(n) for n in names], rest


def _run_alpha_limit(factory: SchemeFactory, *, max_examples: int | None = None, options_class: type | None = None,
                     fixed: Mapping[str, Any] | None = None,
                     strategies: Mapping[str, st.SearchStrategy] | None = None) -> None:
    law = "approaches_softmax_of_log_rnd_as_alpha_grows"
    target = _Target(factory, options_class, fixed, strategies)
    target.require(law, DMPO_FAMILY_FIELDS, weights=True)

    def test(batch: dst.GroupBatch, options: dict[str, Any]) -> None:
        (alpha, coeff), rest = _split(options, "alpha", "coeff")
        approaches_softmax_of_log_rnd_as_alpha_grows(lambda **kw: target.build(**rest, **kw), batch,
                                                     alpha=alpha, coeff=coeff)

    sweep = {"alpha": dst.large_alphas(), "adaptive": st.just(False)}
    _given(test, max_examples, batch=dst.group_batches(), options=target.options(sweep))


def _run_coeff_limit(factory: SchemeFactory, *, max_examples: int | None = None, options_class: type | None = None,
                     fixed: Mapping[str, Any] | None = None,
                     strategies: Mapping[str, st.SearchStrategy] | None = None) -> None:
    law = "approaches_uniform_as_coeff_shrinks"
    target = _Target(factory, options_class, fixed, strategies)
    target.require(law, DMPO_FAMILY_FIELDS, weights=True)

    def test(batch: dst.GroupBatch, options: dict[str, Any]) -> None:
        (alpha, coeff), rest = _split(options, "alpha", "coeff")
        approaches_uniform_as_coeff_shrinks(lambda **kw: target.build(**rest, **kw), batch, coeff=coeff, alpha=alpha)

    sweep = {"coeff": dst.coeffs(low=1e-12), "adaptive": st.just(False)}
    _given(test, max_examples, batch=dst.group_batches(), options=target.options(sweep))


def _run_adaptive(factory: SchemeFactory, *, max_examples: int | None = None, options_class: type | None = None,
                  fixed: Mapping[str, Any] | None = None,
                  strategies: Mapping[str, st.SearchStrategy] | None = None) -> None:
    law = "adaptive_coeff_meets_ess_threshold_or_reports_fallback"
    target = _Target(factory, options_class, fixed, strategies)
    target.require(law, ADAPTIVE_FIELDS, weights=True)

    def test(batch: dst.GroupBatch, options: dict[str, Any]) -> None:
        (alpha, threshold, low, high), rest = _split(options, "alpha", "ess_threshold", "coeff_min", "coeff_max")
        rest.pop("adaptive")
        adaptive_coeff_meets_ess_threshold_or_reports_fallback(
            lambda **kw: target.build(**rest, **kw), batch, threshold=threshold, alpha=alpha, coeff_min=low,
            coeff_max=high,
        )

    _given(test, max_examples, batch=dst.group_batches(), options=target.options({"adaptive": st.just(True)}))


#: The laws of ANY weighting scheme: name -> runner ``run(factory, *, max_examples=None,
#: options_class=None, fixed=None, strategies=None)``. The weight laws raise
#: :class:`LawNotApplicable` for a scheme without weights, the zero-sum laws for one whose
#: ``zero_sum`` is False.
UNIVERSAL_WEIGHTING_LAWS: dict[str, LawRunner] = {
    "outputs_have_contract_shapes_and_are_finite": _instance_runner(outputs_have_contract_shapes_and_are_finite),
    "stats_are_a_name_to_float_mapping": _instance_runner(stats_are_a_name_to_float_mapping),
    "invalid_rows_get_zero_advantage": _instance_runner(invalid_rows_get_zero_advantage),
    "group_without_valid_reward_gets_zero_advantages": _instance_runner(group_without_valid_reward_gets_zero_advantages),
    "permutation_equivariant_within_group": _instance_runner(permutation_equivariant_within_group),
    "calls_are_pure": _instance_runner(calls_are_pure),
    "uses_only_the_inputs_its_needs_declare": _instance_runner(uses_only_the_inputs_its_needs_declare),
    "weights_are_finite_and_non_negative": _instance_runner(weights_are_finite_and_non_negative, weights=True),
    "weights_sum_to_one_per_group": _instance_runner(weights_sum_to_one_per_group, weights=True),
    "advantages_sum_to_zero_per_group": _instance_runner(advantages_sum_to_zero_per_group),
    "equal_inputs_give_zero_advantages": _instance_runner(equal_inputs_give_zero_advantages),
}

#: The laws of DMPO-like schemes (importance weights ``softmax(coeff * (log_rnd + f(r)/alpha))``
#: minus a baseline): they apply to a scheme whose options class declares
#: :data:`DMPO_FAMILY_FIELDS` (the adaptive law: :data:`ADAPTIVE_FIELDS`) and that gives
#: weights; for any other, :func:`check` raises :class:`LawNotApplicable` saying which fact.
DMPO_WEIGHTING_LAWS: dict[str, LawRunner] = {
    name: _instance_runner(fn, requires=DMPO_FAMILY_FIELDS, weights=True, min_groups=min_groups)
    for name, fn, min_groups in (
        ("missing_rewards_are_excluded_and_counted", missing_rewards_are_excluded_and_counted, 1),
        ("invariant_to_reward_shift_per_group", invariant_to_reward_shift_per_group, 1),
        ("invariant_to_log_rnd_shift_per_group", invariant_to_log_rnd_shift_per_group, 1),
        ("groups_are_independent", groups_are_independent, 2),
        ("higher_reward_never_gets_lower_weight", higher_reward_never_gets_lower_weight, 1),
        ("ess_lies_between_one_over_g_and_one", ess_lies_between_one_over_g_and_one, 1),
    )
} | {
    "approaches_softmax_of_log_rnd_as_alpha_grows": _run_alpha_limit,
    "approaches_uniform_as_coeff_shrinks": _run_coeff_limit,
    "adaptive_coeff_meets_ess_threshold_or_reports_fallback": _run_adaptive,
}

#: Every weighting law: the universal ones, then the DMPO-family ones (what a plugin author
#: parametrizes over; :func:`check` skips, with a reason, those that do not apply).
WEIGHTING_LAWS: dict[str, LawRunner] = {**UNIVERSAL_WEIGHTING_LAWS, **DMPO_WEIGHTING_LAWS}


def check(
    law: str,
    factory: SchemeFactory,
    *,
    max_examples: int | None = None,
    options_class: type | None = None,
    fixed: Mapping[str, Any] | None = None,
    strategies: Mapping[str, st.SearchStrategy] | None = None,
) -> None:
    """Check one law of :data:`WEIGHTING_LAWS` for ``factory`` with hypothesis.

    ``factory(**options)`` builds a scheme; its options are drawn from its options class
    (:func:`dmpo_core.testing.strategies.scheme_options`: an attrs class is its own, a
    ``functools.partial`` of one fixes its keywords, a registry entry has its ``options`` and
    ``fixed``; ``options_class`` names it for any other factory). ``fixed`` options are passed
    as they are and not drawn; ``strategies`` override the strategy of fields by name.
    ``max_examples`` defaults to the loaded hypothesis profile's.

    Raises:
        LawError: the law does not hold (the message names the law and the failing rows).
        LawNotApplicable: the law does not apply to this scheme (a ``unittest.SkipTest``:
            pytest reports a skip with the reason).
        ValueError: an unknown law.
    """
    try:
        runner = WEIGHTING_LAWS[law]
    except KeyError:
        raise ValueError(f"unknown law {law!r}; available: {', '.join(WEIGHTING_LAWS)}") from None
    runner(factory, max_examples=max_examples, options_class=options_class, fixed=fixed, strategies=strategies)


def check_all(
    factory: SchemeFactory,
    *,
    skip: Iterable[str] = (),
    max_examples: int | None = None,
    options_class: type | None = None,
    fixed: Mapping[str, Any] | None = None,
    strategies: Mapping[str, st.SearchStrategy] | None = None,
) -> dict[str, str]:
    """Check every law of :data:`WEIGHTING_LAWS` (but ``skip``) for ``factory`` (see :func:`check`).

    Runs them all and raises one ``AssertionError`` naming every law that failed (and those
    that did not apply). Returns law -> reason for the laws that did not apply ({} when all did).
    """
    skipped = set(skip)
    unknown = skipped - set(WEIGHTING_LAWS)
    if unknown:
        raise ValueError(f"unknown law(s) to skip: {', '.join(sorted(unknown))}")
    failures: list[str] = []
    not_applicable: dict[str, str] = {}
    for name in WEIGHTING_LAWS:
        if name in skipped:
            continue
        try:
            check(name, factory, max_examples=max_examples, options_class=options_class, fixed=fixed,
                  strategies=strategies)
        except LawNotApplicable as err:
            not_applicable[name] = str(err)
        except AssertionError as err:
            failures.append(f"{name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    if failures:
        lines = failures + [f"(not applicable) {reason}" for reason in not_applicable.values()]
        raise AssertionError("laws failed:\n  " + "\n  ".join(lines))
    return not_applicable
