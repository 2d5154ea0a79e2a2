"""d1's diffu-GRPO (docs/concepts.md section 6): group-normalised advantages, a one-forward
mean-field estimate of per-token log-probs, the PPO clipped ratio and a k3 KL to the reference.

Letters: ``N`` rows (``B*G``), ``P`` prompt length, ``L`` completion length, ``I`` gradient
steps per rollout batch (``loss.num_iterations``).

The per-token log-probs come from ONE forward of the prompt with each real prompt token
masked with probability ``p_mask_prompt`` and the whole completion masked: ``log pi(x_l |
masked prompt, all-mask completion)`` for every completion position ``l``. The prompt mask
is drawn once per gradient step and shared by the current, old and reference policies;
:meth:`DiffuGrpoObjective.prepare` draws the ``I`` masks at rollout time and computes the old
and reference log-probs under each, so the loss at step ``i`` reuses mask ``i``.

Per row ``j`` and eligible completion token ``l`` (``rho = exp(logp_theta - logp_old)``,
``delta = logp_ref - logp_theta``)::

    term_jl = -min(rho * A_j, clip(rho, 1 - eps, 1 + eps) * A_j) + beta * (exp(delta) - delta - 1)
    loss    = 1/(B G) * sum_j  mean_{l eligible} term_jl

i.e. a per-sequence token mean then the mean over sequences, as d1's trainer (TRL's GRPO)
computes it; a group-aligned slice adds up to the full batch's loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import attrs
import torch

from dmpo_core.checks import check_group_size, check_vector
from dmpo_core.contracts import Policy, WeightingScheme
from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.errors import ConfigError, InvalidArgumentError


def group_normalised_advantages(rewards: torch.Tensor, group_size: int, *, eps: float,
                                scale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r - mean_group) / (std_group + eps)`` over the valid rows of each group.

    ``std`` is the unbiased sample standard deviation (d1's ``Tensor.std``); ``scale="none"``
    drops the division (Dr. GRPO). A group with fewer than 2 valid rows gets zero advantages,
    and an invalid (NaN) row gets zero.

    Returns:
        ``advantages [B*G]`` float32 and ``valid [B*G]`` bool.
    """
    valid = torch.isfinite(rewards)  # [B*G]
    r = torch.where(valid, rewards.double(), torch.zeros_like(rewards, dtype=torch.float64)).view(-1, group_size)  # [B, G]
    v = valid.view(-1, group_size).double()  # [B, G]
    # shift each group by one of its valid rewards (advantages are shift-invariant): equal rewards
    # then centre to exactly 0, where a mean of large equal values can be off by an ulp
    first = torch.argmax(v, dim=1, keepdim=True)  # [B, 1]: a valid row of each group (0 when none)
    r = (r - r.gather(1, first)) * v  # [B, G]
    n = v.sum(dim=1, keepdim=True)  # [B, 1]
    mean = (r * v).sum(dim=1, keepdim=True) / n.clamp_min(1)  # [B, 1]
    var = (((r - mean) ** 2) * v).sum(dim=1, keepdim=True) / (n - 1).clamp_min(1)  # [B, 1], unbiased
    centred = (r - mean) * v  # [B, G]
    adv = centred / (var.sqrt() + eps) if scale == "group" else centred  # [B, G]
    adv = torch.where(n >= 2, adv, torch.zeros_like(adv))  # [B, G]
    return adv.reshape(-1).float(), valid  # [B*G], [B*G]


@attrs.frozen(kw_only=True)
class GroupNormalisedWeighting:
    """GRPO's advantages: each reward minus its group's mean, over the group's standard deviation.

    No importance weights (``weights`` is None) and no likelihoods needed: rewards only.
    """

    eps: float = 1e-4
    """Added to the group standard deviation (TRL's and d1's value)."""
    scale: Literal["group", "none"] = "group"
    """``group``: divide by the group's standard deviation (GRPO, d1); ``none``: only centre (Dr. GRPO)."""

    def __attrs_post_init__(self) -> None:
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not (0 < self.eps < math.inf):
            raise ConfigError([f"eps={self.eps!r}: pass a finite number > 0 (1e-4 is d1's)"], source="grpo weighting")
        if self.scale not in ("group", "none"):
            raise ConfigError([f"scale={self.scale!r}: choose group or none"], source="grpo weighting")

    @property
    def needs(self) -> frozenset[str]:
        """Rewards only."""
        return frozenset()

    @property
    def zero_sum(self) -> bool:
        """Centred advantages sum to zero in every group."""
        return True

    def __call__(self, rewards: torch.Tensor, log_rnd: torch.Tensor | None, group_size: int, *,
                 log_p_current: torch.Tensor | None = None, log_p_old: torch.Tensor | None = None) -> WeightOutput:
        """Advantages ``[B*G]`` of ``rewards [B*G]`` (NaN = missing); the likelihoods are not read."""
        rewards = check_vector("rewards", rewards, allow_nan=True)
        check_group_size(group_size, rewards.shape[0])
        adv, valid = group_normalised_advantages(rewards, group_size, eps=float(self.eps), scale=self.scale)
        stats = {
            "n_invalid": float(int((~valid).sum())),
            "n_empty_groups": float(int((~valid.view(-1, group_size).any(dim=1)).sum())),
            "adv_abs_mean": float(adv[valid].abs().mean()) if bool(valid.any()) else 0.0,
            "groups_without_signal": float(int((adv.view(-1, group_size) == 0).all(dim=1).sum())),  # equal rewards
        }
        return WeightOutput(advantages=adv, valid=valid, stats=stats)


def mean_field_token_logp(logits_fn: object, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                          prompt_noise: torch.Tensor, completion_ids: torch.Tensor, mask_id: int) -> torch.Tensor:
    """``log pi(x_l | prompt with prompt_noise masked, completion all masked)`` ``[N, L]``, float32.

    Args:
        logits_fn: a policy's ``logits`` or ``reference_logits``.
        prompt_ids: ``[N, P]`` left padded; prompt_mask: ``[N, P]`` (False on padding).
        prompt_noise: ``[N, P]`` bool, the prompt positions to mask (only real tokens are masked).
        completion_ids: ``[N, L]`` the tokens scored.
    """
    noisy_prompt = torch.where(prompt_noise & prompt_mask.bool(), torch.full_like(prompt_ids, mask_id), prompt_ids)  # [N, P]
    masked = torch.full_like(completion_ids, mask_id)  # [N, L]
    ids = torch.cat([noisy_prompt, masked], dim=1)  # [N, P+L]
    attn = torch.cat([prompt_mask.bool(), torch.ones_like(completion_ids, dtype=torch.bool)], dim=1)  # [N, P+L]
    logits = logits_fn(ids, attn, last=completion_ids.shape[1]).float()  # [N, L, V]
    return logits.gather(-1, completion_ids[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # [N, L]


def diffu_grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
                    advantages: torch.Tensor, eligible: torch.Tensor, num_rows: int, *, epsilon: float,
                    beta: float) -> tuple[torch.Tensor, dict[str, float]]:
    """The clipped-ratio loss with k3 KL (module docstring) from per-token log-probs ``[N, L]``.

    Args:
        logp: current policy, with gradient; old_logp, ref_logp: no gradient (ref may be None when beta is 0).
        advantages: ``[N]``; eligible: ``[N, L]`` bool, the tokens that count.
        num_rows: ``B*G`` of the full batch (the mean's denominator).
    """
    if num_rows < 1:
        raise InvalidArgumentError("num_rows", num_rows, "pass B*G >= 1")
    if beta > 0 and ref_logp is None:
        raise InvalidArgumentError("ref_logp", None, "beta > 0 needs the reference's per-token log-probs")
    ratio = torch.exp(logp - old_logp.detach())  # [N, L]
    adv = advantages.detach().to(logp.dtype)[:, None]  # [N, 1]
    clipped = ratio.clamp(1.0 - epsilon, 1.0 + epsilon)  # [N, L]
    term = -torch.minimum(ratio * adv, clipped * adv)  # [N, L]
    kl = torch.zeros_like(term)  # [N, L]
    if beta > 0:
        delta = ref_logp.detach() - logp  # [N, L]
        kl = torch.exp(delta) - delta - 1.0  # [N, L], k3 >= 0
        term = term + beta * kl
    w = eligible.to(term.dtype)  # [N, L]
    count = w.sum(dim=1).clamp_min(1.0)  # [N]
    loss = ((term * w).sum(dim=1) / count).sum() / num_rows  # scalar
    k = max(float(w.sum()), 1.0)
    stats = {
        "loss": float(loss.detach()),
        "kl_mean": float((kl.detach() * w).sum()) / k,
        "ratio_mean": float((ratio.detach() * w).sum()) / k,
        "clip_fraction": float((((ratio.detach() < 1 - epsilon) | (ratio.detach() > 1 + epsilon)).to(w.dtype) * w).sum()) / k,
    }
    return loss, stats


@attrs.frozen(kw_only=True)
class DiffuGrpoObjective:
    """d1's diffu-GRPO loss (module docstring). Defaults are d1's."""

    p_mask_prompt: float = 0.15
    """Probability that each real prompt token is masked in the scoring forward (d1: 0.15)."""
    epsilon: float = 0.2
    """PPO clip range of the per-token ratio."""
    beta: float = 0.04
    """Strength of the k3 KL to the reference (0 drops it, and the reference forward)."""

    def __attrs_post_init__(self) -> None:
        problems = []
        for name, low_open in (("p_mask_prompt", False), ("epsilon", True), ("beta", False)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < 0 or (low_open and value == 0) or (name == "p_mask_prompt" and value >= 1):
                problems.append(f"{name}={value!r}: pass a finite number "
                                + ("in [0, 1)" if name == "p_mask_prompt" else "> 0" if low_open else ">= 0"))
        if problems:
            raise ConfigError(problems, source="diffu-grpo objective")

    @property
    def needs(self) -> frozenset[str]:
        """No sequence likelihoods: the objective prepares its own per-token ones."""
        return frozenset()

    def prepare(self, policy: Policy, batch: RolloutBatch, *, num_iterations: int,
                generator: torch.Generator) -> Mapping[str, torch.Tensor]:
        """The ``I`` prompt masks ``[N, I, P]`` and the old (and reference) per-token log-probs
        ``[N, I, L]`` under each, with the rollout policy before any update."""
        n, p = batch.prompt_ids.shape
        noise = torch.rand(num_iterations, n, p, generator=generator) < self.p_mask_prompt  # [I, N, P]
        device = policy.device
        ids, pmask, comp = (batch.prompt_ids.to(device), batch.prompt_mask.to(device),
                            batch.completion_ids.to(device))
        old, ref = [], []
        for i in range(num_iterations):
            old.append(mean_field_token_logp(policy.logits, ids, pmask, noise[i].to(device), comp, policy.mask_id).cpu())
            if self.beta > 0:
                ref.append(mean_field_token_logp(policy.reference_logits, ids, pmask, noise[i].to(device), comp,
                                                 policy.mask_id).cpu())
        out = {"grpo_prompt_noise": noise.permute(1, 0, 2).contiguous(),  # [N, I, P]
               "grpo_old_logp": torch.stack(old, dim=1)}  # [N, I, L]
        if ref:
            out["grpo_ref_logp"] = torch.stack(ref, dim=1)  # [N, I, L]
        return out

    def __call__(self, policy: Policy, batch: RolloutBatch, weights: WeightOutput, *, num_groups: int,
                 iteration: int = 0, weighting: WeightingScheme | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss at gradient step ``iteration`` on ``batch`` (a group-aligned slice of ``num_groups`` groups)."""
        if "grpo_old_logp" not in batch.extras:
            raise InvalidArgumentError("batch.extras", sorted(batch.extras), "diffu-grpo needs its prepare() data")
        device = policy.device
        noise = batch.extras["grpo_prompt_noise"][:, iteration].to(device)  # [N, P]
        logp = mean_field_token_logp(policy.logits, batch.prompt_ids.to(device), batch.prompt_mask.to(device), noise,
                                     batch.completion_ids.to(device), policy.mask_id)  # [N, L]
        old = batch.extras["grpo_old_logp"][:, iteration].to(logp.device)  # [N, L]
        ref = batch.extras["grpo_ref_logp"][:, iteration].to(logp.device) if self.beta > 0 else None  # [N, L]
        return diffu_grpo_loss(logp, old, ref, weights.advantages.to(logp.device), batch.eligible.to(logp.device),
                               num_groups * batch.group_size, epsilon=float(self.epsilon), beta=float(self.beta))
