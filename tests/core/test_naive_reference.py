"""Independent check: naive loop-based re-implementations against the library.

Everything below the "naive" marker is written from docs/concepts.md alone, with plain Python
floats, the ``math`` module and explicit loops over groups, rows, replicates and tokens:
no torch, no vectorisation, no code shared with ``dmpo_core``. The library is then compared
with it on seeded random inputs of several sizes. Tolerance: 1e-6 relative (the library
computes in float64; weights and advantages are returned as float32, whose rounding is
6e-8 relative), plus 1e-9 absolute for values that are zero up to rounding.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from dmpo_core.objective import DmpoWeighting, ddo_loss, elbo_from_logp, group_ess, wdce_loss

REL, ABS = 1e-6, 1e-9

# ============================================================================ naive


def naive_softmax(values: list[float]) -> list[float]:
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def naive_group_softmax(logits: list[float], valid: list[bool], group_size: int) -> list[float]:
    """Softmax over the valid rows of each group; 0 on invalid rows and empty groups."""
    out = [0.0] * len(logits)
    for start in range(0, len(logits), group_size):
        rows = [i for i in range(start, start + group_size) if valid[i]]
        if not rows:
            continue
        for i, w in zip(rows, naive_softmax([logits[i] for i in rows]), strict=True):
            out[i] = w
    return out


def naive_dmpo(
    rewards: list[float],
    log_rnd: list[float],
    group_size: int,
    *,
    alpha: float,
    coeff: float,
    baseline: str,
    lam: float,
    log_p_current: list[float],
    log_p_old: list[float],
) -> tuple[list[float], list[float], list[float]]:
    """Weights, baseline and advantages of docs/concepts.md sections 2 and 3."""
    n = len(rewards)
    valid = [not math.isnan(r) for r in rewards]

    def tilt(i: int, sign: float) -> float:
        if alpha == 0.0:
            return coeff * sign * rewards[i]
        return coeff * (log_rnd[i] + sign * rewards[i] / alpha)

    weights = naive_group_softmax([tilt(i, +1.0) if valid[i] else 0.0 for i in range(n)], valid, group_size)
    if baseline == "none":
        base = [0.0] * n
    elif baseline == "mean":
        base = [0.0] * n
        for start in range(0, n, group_size):
            rows = [i for i in range(start, start + group_size) if valid[i]]
            for i in rows:
                base[i] = 1.0 / len(rows)
    elif baseline == "negative":
        base = naive_group_softmax([tilt(i, -1.0) if valid[i] else 0.0 for i in range(n)], valid, group_size)
    elif baseline == "unbiased":
        base = naive_group_softmax([log_p_current[i] - log_p_old[i] for i in range(n)], valid, group_size)
    else:
        raise ValueError(baseline)
    adv = [weights[i] - lam * base[i] if valid[i] else 0.0 for i in range(n)]
    return weights, base, adv


def naive_ess(weights: list[float], valid: list[bool], group_size: int) -> list[float]:
    """1 / (n * sum w^2) per group with n valid rows (0 for a group without any)."""
    out = []
    for start in range(0, len(weights), group_size):
        rows = [i for i in range(start, start + group_size) if valid[i]]
        if not rows:
            out.append(0.0)
            continue
        out.append(1.0 / (len(rows) * sum(weights[i] ** 2 for i in rows)))
    return out


def naive_dce(logp_row: list[float], mask_row: list[bool]) -> float:
    """(1/m) sum_{i masked} -log p, m clamped to >= 1."""
    m = sum(1 for x in mask_row if x)
    return sum(-lp for lp, x in zip(logp_row, mask_row, strict=True) if x) / max(m, 1)


def naive_wdce(logp, masks, advantages: list[float], num_groups: int) -> float:
    """1/(B R) sum_j sum_r a_j DCE_jr; logp and masks are nested lists [R][N][L]."""
    r_count = len(masks)
    total = 0.0
    for j, a in enumerate(advantages):
        for r in range(r_count):
            total += a * naive_dce(logp[r][j], masks[r][j])
    return total / (num_groups * r_count)


def naive_elbo(logp, masks, eligible) -> list[float]:
    """(1/R) sum_r (L/m_r) sum_{i masked} log p, L = eligible count of the row, m_r >= 1."""
    r_count, n = len(masks), len(masks[0])
    out = []
    for j in range(n):
        length = sum(1 for x in eligible[j] if x)
        acc = 0.0
        for r in range(r_count):
            m = sum(1 for x in masks[r][j] if x)
            acc += length / max(m, 1) * sum(lp for lp, x in zip(logp[r][j], masks[r][j], strict=True) if x)
        out.append(acc / r_count)
    return out


def naive_log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def naive_ddo(
    g: list[float], g_prime: list[float], w: list[float], beta: float, alpha_ddo: float, num_rows: int
) -> float:
    """-mean(w log sigmoid(beta g)) - alpha_ddo * mean(log sigmoid(-beta g')), means over num_rows."""
    pos = -sum(wj * naive_log_sigmoid(beta * gj) for wj, gj in zip(w, g, strict=True)) / num_rows
    neg = -sum(naive_log_sigmoid(-beta * gj) for gj in g_prime) / num_rows
    return pos + alpha_ddo * neg


# ============================================================================ inputs

SIZES = [(1, 1), (1, 2), (3, 4), (2, 16), (5, 7), (1, 64)]


def random_rewards(rng: random.Random, n: int) -> list[float]:
    kind = rng.choice(["binary", "gauss", "wide"])
    out = []
    for _ in range(n):
        if rng.random() < 0.15:
            out.append(math.nan)
        elif kind == "binary":
            out.append(float(rng.random() < 0.5))
        elif kind == "gauss":
            out.append(rng.gauss(0.0, 1.0))
        else:
            out.append(rng.uniform(-50.0, 50.0))
    return out


def t64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# ============================================================================ comparisons


@pytest.mark.parametrize("baseline", ["none", "mean", "negative", "unbiased"])
@pytest.mark.parametrize("alpha", [0.0, 0.04, 0.5, 3.0])
@pytest.mark.parametrize("seed", range(3))
def test_weights_baselines_and_advantages_match_the_naive_reference(baseline, alpha, seed):
    rng = random.Random(1000 * seed + int(alpha * 100) + len(baseline))
    for b, g in SIZES:
        n = b * g
        rewards = random_rewards(rng, n)
        log_rnd = [rng.gauss(0.0, 3.0) for _ in range(n)]
        log_old = [-rng.uniform(0.0, 20.0) for _ in range(n)]
        log_cur = [lo + rng.gauss(0.0, 2.0) for lo in log_old]
        coeff = rng.choice([1.0, 0.3])
        lam = rng.choice([1.0, 0.5])
        want_w, want_b, want_a = naive_dmpo(
            rewards, log_rnd, g, alpha=alpha, coeff=coeff, baseline=baseline, lam=lam,
            log_p_current=log_cur, log_p_old=log_old,
        )
        out = DmpoWeighting(alpha=alpha, coeff=coeff, baseline=baseline, lam=lam)(
            t64(rewards), t64(log_rnd), g, log_p_current=t64(log_cur), log_p_old=t64(log_old)
        )
        assert out.weights.tolist() == pytest.approx(want_w, rel=REL, abs=ABS), (b, g)
        assert out.baseline.tolist() == pytest.approx(want_b, rel=REL, abs=ABS), (b, g)
        assert out.advantages.tolist() == pytest.approx(want_a, rel=REL, abs=ABS), (b, g)
        valid = [not math.isnan(r) for r in rewards]
        assert out.stats["n_invalid"] == valid.count(False)
        ess = naive_ess(want_w, valid, g)
        assert group_ess(t64(want_w), g, torch.tensor(valid)).tolist() == pytest.approx(ess, rel=REL, abs=ABS)
        has = [e for k, e in enumerate(ess) if any(valid[k * g : (k + 1) * g])]
        if has:
            assert out.stats["ess_mean"] == pytest.approx(sum(has) / len(has), rel=REL)


@pytest.mark.parametrize("seed", range(4))
def test_wdce_loss_matches_the_naive_reference(seed):
    rng = random.Random(seed)
    for b, g in SIZES:
        n = b * g
        r_count = rng.choice([1, 2, 4])
        length = rng.randint(1, 12)
        masks = [[[rng.random() < 0.4 for _ in range(length)] for _ in range(n)] for _ in range(r_count)]
        logp = [[[(-rng.uniform(0, 8) if masks[r][j][i] else 0.0) for i in range(length)] for j in range(n)]
                for r in range(r_count)]
        adv = [rng.gauss(0, 0.3) for _ in range(n)]
        want = naive_wdce(logp, masks, adv, b)
        loss, _ = wdce_loss(t64(logp), torch.tensor(masks), t64(adv), b)
        assert float(loss) == pytest.approx(want, rel=REL, abs=ABS), (b, g, r_count, length)


@pytest.mark.parametrize("seed", range(4))
def test_elbo_matches_the_naive_reference(seed):
    rng = random.Random(100 + seed)
    for b, g in SIZES:
        n = b * g
        r_count = rng.choice([1, 2, 4])
        length = rng.randint(1, 12)
        eligible = [[rng.random() < 0.8 for _ in range(length)] for _ in range(n)]
        masks = [[[eligible[j][i] and rng.random() < 0.5 for i in range(length)] for j in range(n)]
                 for _ in range(r_count)]
        logp = [[[(-rng.uniform(0, 8) if masks[r][j][i] else 0.0) for i in range(length)] for j in range(n)]
                for r in range(r_count)]
        want = naive_elbo(logp, masks, eligible)
        got = elbo_from_logp(t64(logp), torch.tensor(masks), torch.tensor(eligible))
        assert got.tolist() == pytest.approx(want, rel=REL, abs=ABS), (b, g, r_count, length)


@pytest.mark.parametrize("seed", range(4))
def test_ddo_loss_matches_the_naive_reference(seed):
    rng = random.Random(200 + seed)
    for b, g in SIZES:
        n = b * g
        gs = [rng.gauss(0, 5) for _ in range(n)]
        gp = [x + rng.gauss(0, 1) for x in gs]
        w = naive_softmax([rng.gauss(0, 1) for _ in range(n)])
        beta, alpha_ddo = rng.choice([0.1, 1.0, 3.0]), rng.choice([0.0, 0.5, 1.0])
        want = naive_ddo(gs, gp, w, beta, alpha_ddo, n)
        got, _ = ddo_loss(t64(gs), t64(gp), t64(w), beta=beta, alpha_ddo=alpha_ddo, num_rows=n)
        assert float(got) == pytest.approx(want, rel=REL, abs=ABS), (b, g)
