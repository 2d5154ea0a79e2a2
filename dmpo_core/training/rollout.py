"""From task items to a scored rollout batch: prompts, sampling, rewards, log-likelihoods.

Each function is one stage of a training step, so the loop in :mod:`.loop` reads top to
bottom and the stages can be timed separately.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import attrs
import torch

from dmpo_core.contracts import Policy, Sampler, Task
from dmpo_core.data import RolloutBatch, SampleOutput
from dmpo_core.objective.estimators import paired_elbo
from dmpo_core.rewards import ComposedRewards, score_components


def encode_prompts(
    tokenizer: Any, texts: Sequence[str], pad_id: int, *, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize prompts (no added special tokens: a chat template already has them) and left pad.

    ``width`` pads to at least that many positions (a rank pads its groups to the width of
    the whole step's batch, so that every rank's rows have the shapes of one process's).

    Returns:
        ``ids [N, P]`` long and ``mask [N, P]`` bool (False on padding).
    """
    rows = [list(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    width = max([len(r) for r in rows] + [width or 0])
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # [N, P]
    mask = torch.zeros((len(rows), width), dtype=torch.bool)  # [N, P]
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[i, width - len(r):] = True
    return ids, mask


def decode_completions(tokenizer: Any, completion_ids: torch.Tensor, stop_ids: int | Collection[int]) -> list[str]:
    """Decode each completion ``[N, L]`` up to (not including) its first stop id, skipping special tokens.

    ``stop_ids`` is the policy's :attr:`~dmpo_core.contracts.Policy.stop_ids` (eos and every
    end-of-turn token), so text the model writes after ending its turn is never scored; a
    single id is accepted too.
    """
    stops = {stop_ids} if isinstance(stop_ids, int) else set(stop_ids)
    out = []
    for row in completion_ids.tolist():
        end = next((i for i, token in enumerate(row) if token in stops), len(row))
        out.append(tokenizer.decode(row[:end], skip_special_tokens=True))
    return out


def task_prefill(
    task: Task, items: Sequence[Mapping[str, Any]], tokenizer: Any, gen_length: int, mask_id: int
) -> torch.Tensor | None:
    """Pre-filled completions ``[N, L]`` (mask id at positions to decode) when the task provides them."""
    rows = [task.completion_prefill(item, tokenizer, gen_length, mask_id) for item in items]
    if all(r is None for r in rows):
        return None
    full = [list(r) if r is not None else [mask_id] * gen_length for r in rows]
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
    if relevant_only:
        rel = [task.relevant_positions(item, length) for item in items]
        if any(r is not None for r in rel):
            elig &= torch.tensor([list(r) if r is not None else [True] * length for r in rel], dtype=torch.bool)
    if truncate_at_eos:
        is_eos = completion_ids.cpu() == eos_id  # [N, L]
        before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long() == 0  # [N, L]: up to the first EOS
        elig &= before
    return elig


def rewards_tensor(scored: ComposedRewards) -> torch.Tensor:
    """Rewards ``[N]`` float32 with NaN where a completion got none."""
    return torch.tensor([math.nan if r is None else r for r in scored.total], dtype=torch.float32)  # [N]


@attrs.frozen(kw_only=True)
class GroupSamples:
    """G completions for each of B prompts (rows prompt-major ``[B*G]``), with what the sampler recorded."""

    prompt_ids: torch.Tensor  # [B*G, P] long, left padded
    prompt_mask: torch.Tensor  # [B*G, P] bool
    completion_ids: torch.Tensor  # [B*G, L] long
    prefill: torch.Tensor | None  # [B*G, L] long, mask id at decoded positions
    nfe: int
    texts: list[str]
    """Prompt text of each row."""
    items: list[Mapping[str, Any]]
    """Task item of each row."""
    token_logp: torch.Tensor | None = None  # [B*G, L] float32: exact per-token log-probs, when recorded
    commit_step: torch.Tensor | None = None  # [B*G, L] long: decoding order, when recorded
    records: dict[str, torch.Tensor] = attrs.field(factory=dict)
    """The sampler's own per-row records (``SampleOutput.records``), each ``[B*G, ...]``."""

    def trajectory(self) -> dict[str, torch.Tensor]:
        """What :data:`~dmpo_core.contracts.TRAJECTORY` puts in ``batch.extras``: ``sampler/token_logp``,
        ``sampler/commit_step`` and ``sampler/<name>`` for each record."""
        assert self.token_logp is not None and self.commit_step is not None
        out = {"sampler/token_logp": self.token_logp, "sampler/commit_step": self.commit_step}
        out.update({f"sampler/{k}": v for k, v in self.records.items()})
        return out


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
    generator: torch.Generator | Sequence[torch.Generator],
    width: int | None = None,
) -> GroupSamples:
    """Sample ``G`` completions for each of ``B`` items (rows prompt-major ``[B*G]``).

    ``generator`` is one generator for the whole batch (chunks of ``batch_rows`` rows), or one
    per item (keyed randomness: each group is sampled on its own, in chunks of at most
    ``batch_rows`` of its rows, with its own generator, so a group's completions do not depend
    on which other groups share its rank). ``width`` pads the prompts (:func:`encode_prompts`).
    """
    tok = policy.tokenizer
    texts = [task.prompt(item, tok) for item in items]
    ids, mask = encode_prompts(tok, texts, policy.pad_id, width=width)  # [B, P]
    row_items = [item for item in items for _ in range(group_size)]
    row_texts = [t for t in texts for _ in range(group_size)]
    ids = ids.repeat_interleave(group_size, dim=0)  # [B*G, P]
    mask = mask.repeat_interleave(group_size, dim=0)  # [B*G, P]
    prefill = task_prefill(task, row_items, tok, gen_length, policy.mask_id)  # [B*G, L] or None
    if isinstance(generator, torch.Generator):
        outs, nfe = _sample_in_chunks(policy, sampler, ids, mask, prefill, batch_rows, generator)
    else:
        if len(generator) != len(items):
            raise ValueError(f"{len(generator)} generators for {len(items)} groups")
        outs, nfe = [], 0
        for g, gen in enumerate(generator):
            rows = slice(g * group_size, (g + 1) * group_size)
            part, part_nfe = _sample_in_chunks(policy, sampler, ids[rows], mask[rows],
                                               None if prefill is None else prefill[rows],
                                               min(batch_rows or group_size, group_size), gen)
            outs.extend(part)
            nfe += part_nfe

    def joined(parts: list[torch.Tensor | None]) -> torch.Tensor | None:
        return None if any(p is None for p in parts) else torch.cat([p.cpu() for p in parts], dim=0)

    return GroupSamples(
        prompt_ids=ids, prompt_mask=mask, completion_ids=joined([o.completion_ids for o in outs]), prefill=prefill,
        nfe=nfe, texts=row_texts, items=row_items, token_logp=joined([o.token_logp for o in outs]),
        commit_step=joined([o.commit_step for o in outs]),
        records={k: torch.cat([o.records[k].cpu() for o in outs], dim=0) for k in outs[0].records},
    )


def _sample_in_chunks(
    policy: Policy,
    sampler: Sampler,
    ids: torch.Tensor,
    mask: torch.Tensor,
    prefill: torch.Tensor | None,
    batch_rows: int,
    generator: torch.Generator,
) -> tuple[list[SampleOutput], int]:
    device = policy.device
    n = ids.shape[0]
    step = batch_rows or n
    outs, nfe = [], 0
    for start in range(0, n, step):
        sl = slice(start, start + step)
        out = sampler(policy.logits, ids[sl].to(device), mask[sl].to(device), mask_id=policy.mask_id,
                      generator=generator, prefill=None if prefill is None else prefill[sl].to(device))
        outs.append(out)
        nfe += out.nfe
    return outs, nfe


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
    generator: torch.Generator | Sequence[torch.Generator],
    chunk_rows: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO estimates of ``log p_old(x)`` (current policy) and ``log p_ref(x)`` with shared masks.

    ``generator``: one for the batch (chunks of ``chunk_rows`` rows), or one per group (keyed
    randomness: each group is one chunk with its own masks). Returns two ``[B*G]`` float32 CPU tensors.
    """
    device = policy.device
    n = batch.num_rows
    if isinstance(generator, torch.Generator):
        step = chunk_rows or n
        chunks = [(slice(start, start + step), generator) for start in range(0, n, step)]
    else:
        g_rows = batch.group_size
        chunks = [(slice(g * g_rows, (g + 1) * g_rows), gen) for g, gen in enumerate(generator)]
    cur_parts, ref_parts = [], []
    for sl, gen in chunks:
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
            generator=gen,
        )
        cur_parts.append(cur.float().cpu())
        ref_parts.append(ref.float().cpu())
    return torch.cat(cur_parts), torch.cat(ref_parts)  # [B*G], [B*G]


@torch.no_grad()
def exact_log_likelihoods(
    policy: Policy, samples: GroupSamples, eligible: torch.Tensor, *, chunk_rows: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact ``log p_old(x)`` and ``log p_ref(x)`` along the recorded decoding order.

    For a random-order sampler (ROAR, random remasking) the order does not depend on the
    tokens drawn, so the recorded per-token log-probs sum to the exact trajectory
    log-likelihood under the rollout policy, and replaying the same order under the
    reference gives its exact counterpart (docs/concepts.md section 5). Sums run over the
    ``eligible [B*G, L]`` positions. Returns two ``[B*G]`` float32 CPU tensors.
    """
    from dmpo_core.samplers.common import trajectory_logp

    assert samples.token_logp is not None and samples.commit_step is not None
    elig = eligible.float()  # [B*G, L]
    log_old = (samples.token_logp.float() * elig).sum(dim=1)  # [B*G]
    device = policy.device
    n = samples.completion_ids.shape[0]
    step = chunk_rows or n
    parts = []
    for start in range(0, n, step):
        sl = slice(start, start + step)
        ref = trajectory_logp(
            policy.reference_logits, samples.prompt_ids[sl].to(device), samples.prompt_mask[sl].to(device),
            samples.completion_ids[sl].to(device), samples.commit_step[sl].to(device), mask_id=policy.mask_id,
        )  # [rows, L]
        parts.append(ref.float().cpu())
    log_ref = (torch.cat(parts, dim=0) * elig).sum(dim=1)  # [B*G]
    return log_old, log_ref
