"""From task items to a scored rollout batch: prompts, sampling, rewards, log-likelihoods.

Each function is one stage of a training step, so the loop in :mod:`.loop` reads top to
bottom and the stages can be timed separately.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from dmpo_core.contracts import Policy, Sampler, Task
from dmpo_core.data import RolloutBatch
from dmpo_core.objective.estimators import paired_elbo
from dmpo_core.rewards import ComposedRewards, score_components


def encode_prompts(tokenizer: Any, texts: Sequence[str], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize prompts (no added special tokens: a chat template already has them) and left pad.

    Returns:
        ``ids [N, P]`` long and ``mask [N, P]`` bool (False on padding).
    """
    rows = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [N, P]
    mask = torch.zeros((len(rows), width), dtype=torch.bool)  # [N, P]
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = True
    return ids, mask


def decode_completions(tokenizer: Any, completion_ids: torch.Tensor, eos_id: int) -> list[str]:
    """Decode each completion up to (not including) its first EOS, skipping special tokens."""
    out = []
    for row in completion_ids.tolist():
        if eos_id in row:
            row = row[: row.index(eos_id)]
        out.append(tokenizer.decode(row, skip_special_tokens=True))
    return out


def task_prefill(
    task: Task, items: Sequence[Mapping[str, Any]], tokenizer: Any, gen_length: int, mask_id: int
) -> torch.Tensor | None:
    """Pre-filled completions ``[N, L]`` (mask id at positions to decode) when the task provides them."""
    fn = getattr(task, "completion_prefill", None)
    if fn is None:
        return None
    rows = [fn(item, tokenizer, gen_length, mask_id) for item in items]
    if all(r is None for r in rows):
        return None
    full = [r if r is not None else [mask_id] * gen_length for r in rows]
    return torch.tensor(full, dtype=torch.long)  # [N, L]


def eligible_positions(
    task: Task,
    items: Sequence[Mapping[str, Any]],
    completion_ids: torch.Tensor,
    prefill: torch.Tensor | None,
    *,
    mask_id: int,
    eos_id: int,
    relevant_only: bool,
    truncate_at_eos: bool,
) -> torch.Tensor:
    """Positions that losses and ELBOs may mask ``[N, L]`` bool.

    Pre-filled positions are never eligible (the policy did not choose them);
    ``relevant_only`` keeps the positions the task's reward reads; ``truncate_at_eos``
    keeps positions up to and including the first EOS.
    """
    n, length = completion_ids.shape
    elig = torch.ones(n, length, dtype=torch.bool)  # [N, L]
    if prefill is not None:
        elig &= prefill.cpu() == mask_id  # [N, L]
    fn = getattr(task, "relevant_positions", None)
    if relevant_only and fn is not None:
        rel = [fn(item, length) for item in items]
        if any(r is not None for r in rel):
            elig &= torch.tensor([r if r is not None else [True] * length for r in rel], dtype=torch.bool)
    if truncate_at_eos:
        is_eos = completion_ids.cpu() == eos_id  # [N, L]
        before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long() == 0  # [N, L]: up to the first EOS
        elig &= before
    return elig


def rewards_tensor(scored: ComposedRewards) -> torch.Tensor:
    """Rewards ``[N]`` float32 with NaN where a completion got none."""
    return torch.tensor([math.nan if r is None else r for r in scored.total], dtype=torch.float32)  # [N]


@torch.no_grad()
def sample_group_batch(
    policy: Policy,
    sampler: Sampler,
    task: Task,
    items: Sequence[Mapping[str, Any]],
    *,
    group_size: int,
    gen_length: int,
    batch_rows: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, int, list[str], list[Mapping[str, Any]]]:
    """Sample ``G`` completions for each of ``B`` items (rows prompt-major ``[B*G]``).

    Returns prompt ids ``[B*G, P]``, prompt mask ``[B*G, P]``, completions ``[B*G, L]``,
    the prefill ``[B*G, L]`` or None, the NFE, the prompt texts and the items per row.
    """
    tok = policy.tokenizer
    texts = [task.prompt(item, tok) for item in items]
    ids, mask = encode_prompts(tok, texts, policy.pad_id)  # [B, P]
    row_items = [item for item in items for _ in range(group_size)]
    row_texts = [t for t in texts for _ in range(group_size)]
    ids = ids.repeat_interleave(group_size, dim=0)  # [B*G, P]
    mask = mask.repeat_interleave(group_size, dim=0)  # [B*G, P]
    prefill = task_prefill(task, row_items, tok, gen_length, policy.mask_id)  # [B*G, L] or None
    completions, nfe = _sample_in_chunks(policy, sampler, ids, mask, prefill, batch_rows, generator)
    return ids, mask, completions, prefill, nfe, row_texts, row_items


def _sample_in_chunks(
    policy: Policy,
    sampler: Sampler,
    ids: torch.Tensor,
    mask: torch.Tensor,
    prefill: torch.Tensor | None,
    batch_rows: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, int]:
    device = policy.device
    n = ids.shape[0]
    step = batch_rows or n
    outs, nfe = [], 0
    for start in range(0, n, step):
        sl = slice(start, start + step)
        kwargs = {"prefill": prefill[sl].to(device)} if prefill is not None else {}
        out = sampler(policy.logits, ids[sl].to(device), mask[sl].to(device), mask_id=policy.mask_id,
                      generator=generator, **kwargs)
        outs.append(out.completion_ids.cpu())
        nfe += out.nfe
    return torch.cat(outs, dim=0), nfe  # [N, L]


def score_rewards(
    task: Task, prompts: Sequence[str], completions: Sequence[str], items: Sequence[Mapping[str, Any]]
) -> ComposedRewards:
    """Rewards of every completion from the task's components (failures become None)."""
    return score_components(list(task.reward_components()), prompts, completions, items)


@torch.no_grad()
def estimate_log_likelihoods(
    policy: Policy,
    batch: RolloutBatch,
    *,
    replicates: int,
    antithetic: bool,
    generator: torch.Generator,
    chunk_rows: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO estimates of ``log p_old(x)`` (current policy) and ``log p_ref(x)`` with shared masks.

    Returns two ``[B*G]`` float32 CPU tensors.
    """
    device = policy.device
    n = batch.num_rows
    step = chunk_rows or n
    cur_parts, ref_parts = [], []
    for start in range(0, n, step):
        sl = slice(start, start + step)
        cur, ref = paired_elbo(
            policy.logits,
            policy.reference_logits,
            batch.prompt_ids[sl].to(device),
            batch.prompt_mask[sl].to(device),
            batch.completion_ids[sl].to(device),
            batch.eligible[sl].to(device),
            policy.mask_id,
            replicates=replicates,
            antithetic=antithetic,
            generator=generator,
        )
        cur_parts.append(cur.float().cpu())
        ref_parts.append(ref.float().cpu())
    return torch.cat(cur_parts), torch.cat(ref_parts)  # [B*G], [B*G]
