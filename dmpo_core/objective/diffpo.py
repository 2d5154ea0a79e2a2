"""DiFFPO (arXiv 2510.02212): a two-stage surrogate likelihood with an importance-sampling
correction toward the sampler's true policy, and the jointly trained threshold action.

The paper's full text was not available when this was written; what follows is this
module's reading of its abstract and of docs/concepts.md section 6, written down so that it can
be checked and corrected (docs/baselines.md lists the same points).

Letters: ``N`` rows (``B*G``), ``P`` prompt length, ``L`` completion length, ``I`` gradient
steps per rollout batch, ``K`` threshold actions.

(a) Two-stage ("two-times mean-field") surrogate. The rollout's decoding order
``commit_step`` (recorded by the sampler) gives each row's distinct steps ``0..T_j-1``. For
gradient step ``i`` a split ``s_ij`` is drawn (``split="uniform"``: uniform in
``1..T_j-1``, so both stages are non-empty whenever the row took two or more steps;
``"middle"``: ``floor(T_j / 2)``; a row of one step gets ``s = 0``). The intermediate
state ``z`` holds the tokens committed at the row's steps ``< s``. With ``x0`` the initial
state (prefilled tokens kept, every other position masked) and the prompt masked with
probability ``p_mask_prompt`` (one draw per gradient step, as d1; shared by both stages and
by the current, old and reference policies)::

    log q(x_l) = log pi(x_l | prompt~, x0)   for l in z        (stage 1: mean-field given the prompt)
               = log pi(x_l | prompt~, z)    for l not in z    (stage 2: mean-field given prompt and z)

Two forwards per policy and gradient step. The mask token is excluded from the softmax,
as the samplers exclude it, so ``q`` and the sampler's per-token probabilities live on the
same support. Prefilled positions stay visible in both stages (they are the sampler's
starting state) and are never scored.

(b) Importance-sampling correction. The rollouts come from the sampler's true policy ``mu``
(per-token log-probs ``sampler/token_logp``, exact along the recorded order), not from the
surrogate ``q_old``. The surrogate objective ``E_q[A]`` is estimated off-policy:
``E_mu[(q_old / mu) * (q_theta / q_old) * A]``, token by token, with the IS weight truncated
at ``is_clip`` (detached)::

    w_jl   = min(exp(log q_old(x_jl) - log mu(x_jl)), is_clip)
    rho_jl = exp(log q_theta(x_jl) - log q_old(x_jl))
    term_jl = -w_jl * min(rho_jl * A_j, clip(rho_jl, 1 - eps, 1 + eps) * A_j) + beta * k3(q_ref, q_theta)
    L_tok  = 1/(B G) * sum_j mean_{l eligible} term_jl

(c) The threshold action (sampler ``diffpo-eb``,
:mod:`dmpo_core.samplers.threshold_action`): each row chose action ``a_j`` (an entropy
budget) with probability ``pi_old(a_j | prompt)``. It is trained by the same clipped
policy gradient with advantages ``A'`` that are group-normalised like GRPO's, from an
NFE-aware reward ``r'_j = r_j - nfe_penalty * NFE_j / L`` (``NFE_j``: the row's own
forwards, recorded by the sampler)::

    L_act = action_coef / (B G) * sum_j -min(rho_j A'_j, clip(rho_j, 1 - eps, 1 + eps) A'_j)

The token terms keep the task reward's advantages (from the weighting scheme, ``grpo``), so
the NFE penalty shapes only the choice of the threshold, not the answers. Without the
action records (another sampler), ``L_act`` is 0 and DiFFPO is (a) + (b) alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import attrs
import torch

from dmpo_core.contracts import TRAJECTORY, LogitsFn, Policy, WeightingScheme
from dmpo_core.data import RolloutBatch, WeightOutput
from dmpo_core.errors import ConfigError, InvalidArgumentError
from dmpo_core.objective.grpo import group_normalised_advantages
from dmpo_core.samplers.threshold_action import position_logits


def step_ranks(commit_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank of each token's commit step among its row's distinct steps, and the row's step count.

    ``commit_step [N, L]`` (-1: prefilled). Returns ``rank [N, L]`` long (-1 on prefilled
    positions) and ``count [N]`` long.
    """
    n, length = commit_step.shape
    top = int(commit_step.max()) + 1 if commit_step.numel() else 0
    if top <= 0:
        return torch.full_like(commit_step, -1), torch.zeros(n, dtype=torch.long, device=commit_step.device)
    steps = torch.arange(top, device=commit_step.device)  # [T]
    hit = (commit_step[:, :, None] == steps[None, None, :]).any(dim=1)  # [N, T]
    order = hit.long().cumsum(dim=1) - 1  # [N, T]: rank of step t among the row's steps (where hit)
    rank = order.gather(1, commit_step.clamp_min(0))  # [N, L]
    return torch.where(commit_step >= 0, rank, torch.full_like(rank, -1)), hit.sum(dim=1)  # [N, L], [N]


def draw_splits(counts: torch.Tensor, num_iterations: int, split: str, generator: torch.Generator) -> torch.Tensor:
    """The split ``s [I, N]`` long of each gradient step and row (module docstring, (a)).

    ``counts [N]``: the row's number of steps ``T``. ``uniform``: ``1..T-1``; ``middle``:
    ``T // 2``; 0 where ``T < 2``.
    """
    counts = counts.long()
    if split == "middle":
        s = (counts // 2).expand(num_iterations, -1).clone()  # [I, N]
    else:
        u = torch.rand(num_iterations, counts.shape[0], generator=generator, dtype=torch.float64)  # [I, N]
        s = 1 + (u * (counts - 1).clamp_min(0).double()).floor().long()  # [I, N] in 1..T-1
    return torch.where(counts >= 2, s, torch.zeros_like(s))  # [I, N]


def _logp_without_mask(logits: torch.Tensor, tokens: torch.Tensor, mask_id: int) -> torch.Tensor:
    """``log softmax(logits)[token]`` with the mask token excluded ``[N, L]`` float32."""
    logits = logits.float().clone()  # [N, L, V]
    logits[..., mask_id] = float("-inf")
    return logits.gather(-1, tokens[..., None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)  # [N, L]


def two_stage_token_logp(logits_fn: LogitsFn, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                         prompt_noise: torch.Tensor, completion_ids: torch.Tensor, commit_step: torch.Tensor,
                         in_z: torch.Tensor, mask_id: int) -> torch.Tensor:
    """The surrogate's per-token log-probs ``[N, L]`` (module docstring, (a)): stage 1 for the
    tokens of ``z`` (``in_z [N, L]`` bool), stage 2 for the others; two forwards.

    Args:
        prompt_noise: ``[N, P]`` bool, prompt positions to mask (only real tokens are masked).
        commit_step: ``[N, L]`` long, -1 on prefilled positions (kept visible in both stages).
    """
    noisy_prompt = torch.where(prompt_noise & prompt_mask.bool(), torch.full_like(prompt_ids, mask_id), prompt_ids)  # [N, P]
    attn = torch.cat([prompt_mask.bool(), torch.ones_like(completion_ids, dtype=torch.bool)], dim=1)  # [N, P+L]
    fixed = commit_step < 0  # [N, L] prefilled
    start = torch.where(fixed, completion_ids, torch.full_like(completion_ids, mask_id))  # [N, L]: x0
    state_z = torch.where(fixed | in_z, completion_ids, torch.full_like(completion_ids, mask_id))  # [N, L]: z
    length = completion_ids.shape[1]
    first = _logp_without_mask(logits_fn(torch.cat([noisy_prompt, start], dim=1), attn, last=length),
                               completion_ids, mask_id)  # [N, L]
    second = _logp_without_mask(logits_fn(torch.cat([noisy_prompt, state_z], dim=1), attn, last=length),
                                completion_ids, mask_id)  # [N, L]
    return torch.where(in_z, first, second)  # [N, L]


def diffpo_token_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None,
                      sampler_logp: torch.Tensor, advantages: torch.Tensor, eligible: torch.Tensor, num_rows: int, *,
                      epsilon: float, beta: float, is_clip: float) -> tuple[torch.Tensor, dict[str, float]]:
    """``L_tok`` of the module docstring, (b), from per-token log-probs ``[N, L]``.

    Args:
        logp: the current surrogate, with gradient; old_logp, ref_logp: the rollout-time and
            reference surrogates (no gradient; ref may be None when beta is 0).
        sampler_logp: the sampler's true per-token log-probs ``[N, L]``.
        advantages: ``[N]``; eligible: ``[N, L]`` bool; num_rows: ``B*G`` of the full batch.
    """
    if num_rows < 1:
        raise InvalidArgumentError("num_rows", num_rows, "pass B*G >= 1")
    if beta > 0 and ref_logp is None:
        raise InvalidArgumentError("ref_logp", None, "beta > 0 needs the reference's per-token log-probs")
    w = eligible.to(logp.dtype)  # [N, L]
    old = old_logp.detach().to(logp.dtype)  # [N, L]
    raw_is = torch.exp(torch.where(eligible, old - sampler_logp.detach().to(logp.dtype), torch.zeros_like(old)))  # [N, L]
    is_weight = raw_is.clamp(max=is_clip)  # [N, L] truncated importance weight
    ratio = torch.exp(logp - old)  # [N, L]
    adv = advantages.detach().to(logp.dtype)[:, None]  # [N, 1]
    clipped = ratio.clamp(1.0 - epsilon, 1.0 + epsilon)  # [N, L]
    term = -is_weight * torch.minimum(ratio * adv, clipped * adv)  # [N, L]
    kl = torch.zeros_like(term)  # [N, L]
    if beta > 0:
        delta = ref_logp.detach().to(logp.dtype) - logp  # [N, L]
        kl = torch.exp(delta) - delta - 1.0  # [N, L], k3 >= 0
        term = term + beta * kl
    count = w.sum(dim=1).clamp_min(1.0)  # [N]
    loss = ((term * w).sum(dim=1) / count).sum() / num_rows  # scalar
    k = max(float(w.sum()), 1.0)
    r = ratio.detach()
    stats = {
        "loss_tokens": float(loss.detach()),
        "kl_mean": float((kl.detach() * w).sum()) / k,
        "ratio_mean": float((r * w).sum()) / k,
        "clip_fraction": float((((r < 1 - epsilon) | (r > 1 + epsilon)).to(w.dtype) * w).sum()) / k,
        "is_weight_mean": float((is_weight * w).sum()) / k,
        "is_clip_fraction": float(((raw_is > is_clip).to(w.dtype) * w).sum()) / k,
    }
    return loss, stats


def nfe_aware_advantages(rewards: torch.Tensor, row_nfe: torch.Tensor, gen_length: int, group_size: int, *,
                         nfe_penalty: float, eps: float) -> torch.Tensor:
    """``A' [N]``: group-normalised ``r - nfe_penalty * NFE / L`` (module docstring, (c)); 0 on NaN rewards."""
    shaped = rewards.double() - nfe_penalty * row_nfe.double() / gen_length  # [N], NaN stays NaN
    adv, _ = group_normalised_advantages(shaped.float(), group_size, eps=eps, scale="group")  # [N]
    return adv


def threshold_action_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, num_rows: int, *,
                          epsilon: float, coef: float) -> tuple[torch.Tensor, dict[str, float]]:
    """``L_act`` of the module docstring, (c): the clipped policy gradient of the chosen actions.

    Args:
        logp: ``[N]`` log-probability of each row's action under the current policy (with gradient).
        old_logp: ``[N]`` at rollout time; advantages: ``[N]`` the NFE-aware ``A'``.
    """
    ratio = torch.exp(logp - old_logp.detach().to(logp.dtype))  # [N]
    adv = advantages.detach().to(logp.dtype)  # [N]
    term = -torch.minimum(ratio * adv, ratio.clamp(1.0 - epsilon, 1.0 + epsilon) * adv)  # [N]
    loss = coef * term.sum() / num_rows  # scalar
    return loss, {"loss_action": float(loss.detach()), "action_ratio_mean": float(ratio.detach().mean())}


@attrs.frozen(kw_only=True)
class DiffpoObjective:
    """DiFFPO's loss (module docstring): two-stage surrogate, IS correction, threshold action."""

    p_mask_prompt: float = 0.15
    """Probability that each real prompt token is masked in the scoring forwards (d1's 0.15;
    drawn once per gradient step and shared by both stages)."""
    epsilon: float = 0.2
    """PPO clip range of the per-token (and per-action) ratio."""
    beta: float = 0.04
    """Strength of the k3 KL to the reference surrogate (0 drops it, and the reference forwards)."""
    is_clip: float = 2.0
    """Upper bound of the importance weight ``q_old / mu`` between the surrogate and the sampler."""
    split: Literal["uniform", "middle"] = "uniform"
    """Where the intermediate state ``z`` cuts each row's trajectory: a uniform step in
    ``1..T-1`` drawn per gradient step, or the middle step."""
    action_coef: float = 1.0
    """Weight of the threshold action's loss (0 trains the model only, not the sampler)."""
    nfe_penalty: float = 0.2
    """Reward cost of one forward per completion token in the action's reward ``r - c * NFE / L``."""
    eps: float = 1e-4
    """Added to the group standard deviation of the action's NFE-aware reward."""

    def __attrs_post_init__(self) -> None:
        problems = []
        for name, low, low_open, high in (("p_mask_prompt", 0.0, False, 1.0), ("epsilon", 0.0, True, None),
                                          ("beta", 0.0, False, None), ("is_clip", 0.0, True, None),
                                          ("action_coef", 0.0, False, None), ("nfe_penalty", 0.0, False, None),
                                          ("eps", 0.0, True, None)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < low or (low_open and value == low) or (high is not None and value >= high):
                bound = "in [0, 1)" if high is not None else "> 0" if low_open else ">= 0"
                problems.append(f"{name}={value!r}: pass a finite number {bound}")
        if self.split not in ("uniform", "middle"):
            problems.append(f"split={self.split!r}: choose uniform or middle")
        if problems:
            raise ConfigError(problems, source="diffpo objective")

    @property
    def needs(self) -> frozenset[str]:
        """The sampler's trajectory (decoding order, token log-probs, the threshold action)."""
        return frozenset({TRAJECTORY})

    def prepare(self, policy: Policy, batch: RolloutBatch, *, num_iterations: int,
                generator: torch.Generator) -> Mapping[str, torch.Tensor]:
        """Per gradient step: the prompt mask ``[N, I, P]``, the intermediate state ``[N, I, L]``
        and the old (and reference) surrogate log-probs ``[N, I, L]``, with the rollout policy."""
        if "sampler/commit_step" not in batch.extras:
            raise InvalidArgumentError("batch.extras", sorted(batch.extras), "diffpo needs the sampler's trajectory")
        commit = batch.extras["sampler/commit_step"]  # [N, L]
        rank, counts = step_ranks(commit)  # [N, L], [N]
        n, p = batch.prompt_ids.shape
        noise = torch.rand(num_iterations, n, p, generator=generator) < self.p_mask_prompt  # [I, N, P]
        splits = draw_splits(counts, num_iterations, self.split, generator)  # [I, N]
        in_z = (rank[None] >= 0) & (rank[None] < splits[:, :, None])  # [I, N, L]
        device = policy.device
        ids, pmask, comp, cs = (batch.prompt_ids.to(device), batch.prompt_mask.to(device),
                                batch.completion_ids.to(device), commit.to(device))
        old, ref = [], []
        for i in range(num_iterations):
            args = (ids, pmask, noise[i].to(device), comp, cs, in_z[i].to(device), policy.mask_id)
            old.append(two_stage_token_logp(policy.logits, *args).cpu())
            if self.beta > 0:
                ref.append(two_stage_token_logp(policy.reference_logits, *args).cpu())
        out = {"diffpo_prompt_noise": noise.permute(1, 0, 2).contiguous(),  # [N, I, P]
               "diffpo_in_z": in_z.permute(1, 0, 2).contiguous(),  # [N, I, L]
               "diffpo_old_logp": torch.stack(old, dim=1)}  # [N, I, L]
        if ref:
            out["diffpo_ref_logp"] = torch.stack(ref, dim=1)  # [N, I, L]
        return out

    def __call__(self, policy: Policy, batch: RolloutBatch, weights: WeightOutput, *, num_groups: int,
                 iteration: int = 0, weighting: WeightingScheme | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss at gradient step ``iteration`` on ``batch`` (a group-aligned slice of ``num_groups`` groups)."""
        ex = batch.extras
        if "diffpo_old_logp" not in ex:
            raise InvalidArgumentError("batch.extras", sorted(ex), "diffpo needs its prepare() data")
        device = policy.device
        ids, pmask, comp = batch.prompt_ids.to(device), batch.prompt_mask.to(device), batch.completion_ids.to(device)
        commit = ex["sampler/commit_step"].to(device)  # [N, L]
        logp = two_stage_token_logp(policy.logits, ids, pmask, ex["diffpo_prompt_noise"][:, iteration].to(device),
                                    comp, commit, ex["diffpo_in_z"][:, iteration].to(device), policy.mask_id)  # [N, L]
        dev = logp.device
        ref = ex["diffpo_ref_logp"][:, iteration].to(dev) if self.beta > 0 else None  # [N, L]
        num_rows = num_groups * batch.group_size
        loss, stats = diffpo_token_loss(
            logp, ex["diffpo_old_logp"][:, iteration].to(dev), ref, ex["sampler/token_logp"].to(dev),
            weights.advantages.to(dev), batch.eligible.to(dev), num_rows, epsilon=float(self.epsilon),
            beta=float(self.beta), is_clip=float(self.is_clip))
        act_stats = {"loss_action": 0.0, "action_ratio_mean": 1.0, "action_adv_abs_mean": 0.0}
        if "sampler/threshold_action" in ex and self.action_coef > 0:
            start = torch.where(commit < 0, comp, torch.full_like(comp, policy.mask_id))  # [N, L]: initial state
            position = int(ex["sampler/action_position"][0])
            full = position_logits(policy.logits, ids, pmask, start, position)  # [N, V]
            logq = torch.log_softmax(full.gather(1, ex["sampler/action_ids"].to(dev)), dim=-1)  # [N, K]
            action_logp = logq.gather(1, ex["sampler/threshold_action"].to(dev)[:, None]).squeeze(1)  # [N]
            adv = nfe_aware_advantages(batch.rewards, ex["sampler/row_nfe"], comp.shape[1], batch.group_size,
                                       nfe_penalty=float(self.nfe_penalty), eps=float(self.eps)).to(dev)  # [N]
            act_loss, act = threshold_action_loss(action_logp, ex["sampler/action_logp"].to(dev), adv, num_rows,
                                                  epsilon=float(self.epsilon), coef=float(self.action_coef))
            loss = loss + act_loss
            act_stats = {**act, "action_adv_abs_mean": float(adv.abs().mean())}
        if "sampler/row_nfe" in ex:
            act_stats["row_nfe_mean"] = float(ex["sampler/row_nfe"].float().mean())
        return loss, {"loss": float(loss.detach()), **stats, **act_stats}
