"""Public laws of weighting schemes and objectives, as plain assertion functions.

Each law takes a component (a weighting scheme following
:class:`dmpo_core.contracts.WeightingScheme`, a scheme factory, or the loss functions) and
generated inputs (:mod:`dmpo_core.testing.strategies`), and raises ``AssertionError`` with
the law's name and the offending group or row when the law does not hold. A plugin author
checks a new scheme in three lines::

    @pytest.mark.parametrize("law", laws.WEIGHTING_LAWS)
    def test_law(law):
        laws.check(law, MyScheme)          # MyScheme(alpha=..., coeff=...) builds a scheme

or one law at a time with hypothesis::

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
from collections.abc import Callable, Iterable

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dmpo_core.contracts import WeightingScheme
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


def _fail(law: str, message: str) -> None:
    raise LawError(f"{law}: {message}")


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
    scheme when it has one, 1 otherwise; ``|r|`` alone when ``alpha`` is 0).
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


def _check_output(law: str, out: WeightOutput, batch: dst.GroupBatch) -> None:
    """Shapes ``[B*G]`` and finiteness of everything a scheme returns."""
    n = batch.num_rows
    for name in ("weights", "baseline", "advantages", "valid"):
        t = getattr(out, name)
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n,):
            _fail(law, f"{name} must be a tensor of shape ({n},) [B*G], got {getattr(t, 'shape', type(t))}")
    for name in ("weights", "baseline", "advantages"):
        t = getattr(out, name)
        if not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).nonzero()[0, 0])
            _fail(law, f"{name}[{bad}] = {float(t[bad])} is not finite (G={batch.group_size})")


def _close(law: str, what: str, actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    diff = (actual.double() - expected.double()).abs()  # [..]
    if diff.numel() and float(diff.max()) > atol:
        i = int(diff.reshape(-1).argmax())
        _fail(
            law,
            f"{what}: entry {i} is {float(actual.reshape(-1)[i])!r}, expected {float(expected.reshape(-1)[i])!r} "
            f"(|diff| {float(diff.max()):.3g} > tolerance {atol:.3g})",
        )


def _same_outputs(law: str, a: WeightOutput, b: WeightOutput, atol: float, what: str = "") -> None:
    if not torch.equal(a.valid.bool(), b.valid.bool()):
        _fail(law, f"valid rows differ{what}")
    for name in ("weights", "baseline", "advantages"):
        _close(law, f"{name}{what}", getattr(a, name), getattr(b, name), atol)


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


# =========================================================================== weighting laws


def weights_are_finite_and_non_negative(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """Weights, baseline and advantages are finite ``[B*G]`` tensors and weights are >= 0.

    Holds for every input, including missing (NaN) rewards and groups with no valid reward.
    """
    law = "weights_are_finite_and_non_negative"
    out = batch.call(scheme)
    _check_output(law, out, batch)
    if bool((out.weights < 0).any()):
        i = int((out.weights < 0).nonzero()[0, 0])
        _fail(law, f"weights[{i}] = {float(out.weights[i])} < 0")


def weights_sum_to_one_per_group(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """The weights of the valid rows of each group sum to one; invalid rows and groups with
    no valid reward get weight 0.

    Tolerance :data:`OUTPUT_ATOL`: float32 weights carry a relative rounding of at most
    ``2**-24`` each, so their float64 sum is within ~6e-8 of the exact one.
    """
    law = "weights_sum_to_one_per_group"
    out = batch.call(scheme)
    _check_output(law, out, batch)
    b, g = _rows_of(batch)
    valid = batch.valid.view(b, g)  # [B, G]
    w = out.weights.double().view(b, g)  # [B, G]
    if bool((w[~valid] != 0).any()):
        _fail(law, "a row with a missing reward has a non-zero weight")
    sums = w.sum(dim=1)  # [B]
    expected = valid.any(dim=1).double()  # [B]: 1, or 0 for a group with no valid reward
    _close(law, "sum of the weights of a group", sums, expected, OUTPUT_ATOL)


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
    expected = WeightOutput(
        weights=out.weights[perm],
        baseline=out.baseline[perm],
        advantages=out.advantages[perm],
        valid=out.valid[perm],
        stats=out.stats,
    )
    _same_outputs(law, got, expected, output_tolerance(scheme, batch), " after permuting rows within groups")


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
        part = WeightOutput(
            weights=out.weights[rows],
            baseline=out.baseline[rows],
            advantages=out.advantages[rows],
            valid=out.valid[rows],
            stats=out.stats,
        )
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
    w = out.weights.double().view(b, g)  # [B, G]
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
    w = out.weights.double().view(b, g)  # [B, G]
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
    diff = (out.weights.double() - limit).abs()  # [B*G]
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
    dev = (_per_group(n, g) * out.weights.double() - 1.0).abs().view(b, g)  # [B, G]
    dev = torch.where(valid.view(b, g), dev, torch.zeros_like(dev))  # [B, G]
    worst = dev.amax(dim=1)  # [B]
    if bool((worst > bound).any()):
        k = int((worst - bound).argmax())
        _fail(
            law,
            f"coeff={coeff!r}, alpha={alpha!r}: group {k} has max |n w - 1| = {float(worst[k]):.3g} "
            f"> exp(c D) - 1 = {float(bound[k]):.3g}",
        )


def advantages_sum_to_zero_per_group(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """For a scheme whose ``zero_sum`` is True (DMPO's mean, negative and unbiased baselines
    at lambda 1), the advantages of every group sum to zero: the update moves probability
    mass from bad to good completions. Returns without checking when ``zero_sum`` is False.

    Tolerance :data:`OUTPUT_ATOL`: ``sum |a_j| <= sum w_j + sum b_j = 2``, so float32
    rounding of the advantages moves the sum by at most ~1.2e-7.
    """
    law = "advantages_sum_to_zero_per_group"
    if not scheme.zero_sum:
        return
    out = batch.call(scheme)
    _check_output(law, out, batch)
    sums = out.advantages.double().view(batch.num_groups, batch.group_size).sum(dim=1)  # [B]
    _close(law, "sum of the advantages of a group", sums, torch.zeros_like(sums), OUTPUT_ATOL)


def equal_inputs_give_zero_advantages(scheme: WeightingScheme, batch: dst.GroupBatch) -> None:
    """For a zero-sum scheme, a group whose rows are indistinguishable (equal rewards, equal
    log-RNDs and, for schemes that read them, equal ``log p_current - log p_old``) gets
    uniform weights and zero advantages: there is nothing to prefer. Returns without
    checking when ``zero_sum`` is False.

    The batch's NaN pattern is kept; the valid rows of each group get the group's first
    valid reward, and every row the group's first log-RND.
    """
    law = "equal_inputs_give_zero_advantages"
    if not scheme.zero_sum:
        return
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
    n = valid.sum(dim=1).double()  # [B]
    uniform = torch.where(valid, (1.0 / n.clamp_min(1))[:, None].expand(b, g), torch.zeros(b, g, dtype=torch.float64))
    _close(law, "weight of a group of equal rows", out.weights, uniform.reshape(-1), OUTPUT_ATOL)


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
    w = out.weights.double().view(b, g)  # [B, G]
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


def _instance_runner(
    law: Callable[[WeightingScheme, dst.GroupBatch], None], min_groups: int = 1
) -> Callable[..., None]:
    """A runner checking ``law`` on ``factory(alpha=.., coeff=..)`` over drawn batches and options."""

    def run(factory: SchemeFactory, *, max_examples: int | None = None) -> None:
        def test(batch: dst.GroupBatch, options: dict[str, float]) -> None:
            law(factory(**options), batch)

        _given(test, max_examples, batch=dst.group_batches(min_groups=min_groups), options=dst.scheme_options())

    run.__doc__ = law.__doc__
    return run


def _run_alpha_limit(factory: SchemeFactory, *, max_examples: int | None = None) -> None:
    def test(batch: dst.GroupBatch, alpha: float, coeff: float) -> None:
        approaches_softmax_of_log_rnd_as_alpha_grows(factory, batch, alpha=alpha, coeff=coeff)

    _given(test, max_examples, batch=dst.group_batches(), alpha=dst.large_alphas(), coeff=dst.coeffs())


def _run_coeff_limit(factory: SchemeFactory, *, max_examples: int | None = None) -> None:
    def test(batch: dst.GroupBatch, alpha: float, coeff: float) -> None:
        approaches_uniform_as_coeff_shrinks(factory, batch, coeff=coeff, alpha=alpha)

    _given(test, max_examples, batch=dst.group_batches(), alpha=dst.alphas(), coeff=dst.coeffs(low=1e-12))


def _run_adaptive(factory: SchemeFactory, *, max_examples: int | None = None) -> None:
    def test(batch: dst.GroupBatch, alpha: float, threshold: float) -> None:
        adaptive_coeff_meets_ess_threshold_or_reports_fallback(factory, batch, threshold=threshold, alpha=alpha)

    _given(test, max_examples, batch=dst.group_batches(), alpha=dst.alphas(), threshold=dst.ess_thresholds())


#: Law name -> runner ``run(factory, *, max_examples=None)`` that checks the law with
#: hypothesis for a scheme factory ``factory(alpha=.., coeff=..)`` (the adaptive law also
#: passes ``adaptive=True, ess_threshold, coeff_min, coeff_max``).
WEIGHTING_LAWS: dict[str, Callable[..., None]] = {
    "weights_are_finite_and_non_negative": _instance_runner(weights_are_finite_and_non_negative),
    "weights_sum_to_one_per_group": _instance_runner(weights_sum_to_one_per_group),
    "missing_rewards_are_excluded_and_counted": _instance_runner(missing_rewards_are_excluded_and_counted),
    "invariant_to_reward_shift_per_group": _instance_runner(invariant_to_reward_shift_per_group),
    "invariant_to_log_rnd_shift_per_group": _instance_runner(invariant_to_log_rnd_shift_per_group),
    "permutation_equivariant_within_group": _instance_runner(permutation_equivariant_within_group),
    "groups_are_independent": _instance_runner(groups_are_independent, min_groups=2),
    "higher_reward_never_gets_lower_weight": _instance_runner(higher_reward_never_gets_lower_weight),
    "ess_lies_between_one_over_g_and_one": _instance_runner(ess_lies_between_one_over_g_and_one),
    "advantages_sum_to_zero_per_group": _instance_runner(advantages_sum_to_zero_per_group),
    "equal_inputs_give_zero_advantages": _instance_runner(equal_inputs_give_zero_advantages),
    "approaches_softmax_of_log_rnd_as_alpha_grows": _run_alpha_limit,
    "approaches_uniform_as_coeff_shrinks": _run_coeff_limit,
    "adaptive_coeff_meets_ess_threshold_or_reports_fallback": _run_adaptive,
}


def check(law: str, factory: SchemeFactory, *, max_examples: int | None = None) -> None:
    """Check one law of :data:`WEIGHTING_LAWS` for ``factory`` with hypothesis.

    ``max_examples`` defaults to the loaded hypothesis profile's.
    """
    try:
        runner = WEIGHTING_LAWS[law]
    except KeyError:
        raise ValueError(f"unknown law {law!r}; available: {', '.join(WEIGHTING_LAWS)}") from None
    runner(factory, max_examples=max_examples)


def check_all(factory: SchemeFactory, *, skip: Iterable[str] = (), max_examples: int | None = None) -> None:
    """Check every law of :data:`WEIGHTING_LAWS` (but ``skip``) for ``factory``.

    Runs them all and raises one ``AssertionError`` naming every law that failed.
    """
    skipped = set(skip)
    unknown = skipped - set(WEIGHTING_LAWS)
    if unknown:
        raise ValueError(f"unknown law(s) to skip: {', '.join(sorted(unknown))}")
    failures: list[str] = []
    for name in WEIGHTING_LAWS:
        if name in skipped:
            continue
        try:
            check(name, factory, max_examples=max_examples)
        except AssertionError as err:
            failures.append(f"{name}: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
    if failures:
        raise AssertionError("laws failed:\n  " + "\n  ".join(failures))
