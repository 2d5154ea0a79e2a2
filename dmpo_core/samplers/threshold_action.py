"""DiFFPO's jointly trained sampler: the policy picks its own entropy bound per prompt.

DiFFPO (arXiv 2510.02212) trains the sampler together with the model: the policy chooses,
for each prompt, the threshold of an entropy-bounded (EB) sampler from a small discrete set,
as an extra action trained by the same RL signal with a reward that counts the forwards
(NFE). The paper's full text was not available when this was written; this module's
reading of it (docs/baselines.md lists every interpretation):

* The action is read off the model itself, no new head: the logits at completion position
  ``action_position`` of ONE forward of the initial state (prompt + all-mask completion, or
  the task's prefill) restricted to ``K`` designated token ids ``action_token_ids`` (by
  default the last ``K`` ids of the vocabulary that are not the mask id, which a small
  character vocabulary and LLaDA's reserved range leave unused) give ``K`` action logits;
  action ``k`` selects ``gammas[k]``. This forward is counted in the NFE.
* At temperature 0 (evaluation) the action is the argmax; otherwise it is drawn from the
  softmax of the action logits at temperature 1, so the recorded ``action_logp`` is the
  log-probability of the action the policy actually took.
* Each row draws its own action (the ``G`` rows of a prompt may differ), so a group's
  advantages can tell the actions apart; ``per prompt`` means the choice is conditioned on
  the prompt.
* Decoding is :func:`~dmpo_core.samplers.common.adaptive_decode` with the EB rule of
  :mod:`~dmpo_core.samplers.adaptive` evaluated with each row's own ``gamma``.

The call returns the exact per-token log-probs and the decoding order (``returns_logp``:
the EB selection is a deterministic function of the state, so at temperature 1 the sum of
``token_logp`` is the trajectory's exact log-likelihood), and in ``records`` per row: the
action index ``threshold_action [N]``, its log-probability ``action_logp [N]``, the
action token ids ``action_ids [N, K]`` and ``action_position [N]`` (so the objective
recomputes the action's likelihood without knowing the sampler's options) and the row's own forward count
``row_nfe [N]`` (the forwards in which it still had masked positions, plus the action's).

Letters: ``N`` rows, ``P`` prompt length, ``L`` completion length, ``K`` actions.
"""

from __future__ import annotations

import math

import attrs
import torch

from dmpo_core.contracts import LogitsFn
from dmpo_core.data import SampleOutput
from dmpo_core.errors import InvalidArgumentError
from dmpo_core.samplers.common import DecodeResult, adaptive_decode, device_generator
from dmpo_core.samplers.config import block_problems, raise_problems, temperature_problem


def default_action_ids(vocab_size: int, count: int, mask_id: int) -> list[int]:
    """The last ``count`` token ids of the vocabulary other than ``mask_id``, ascending."""
    ids = [i for i in range(vocab_size - 1, -1, -1) if i != mask_id][:count]
    return sorted(ids)


def per_row_entropy_bound_rule(gamma: torch.Tensor):
    """The EB rule with one budget per row: ``gamma [N]`` nats (see ``entropy_bound_rule``)."""

    def rule(logp: torch.Tensor, entropy: torch.Tensor | None, candidates: torch.Tensor) -> torch.Tensor:
        assert entropy is not None
        ent = entropy.masked_fill(~candidates, float("inf"))  # [N, K]
        sorted_ent, order = ent.sort(dim=1, stable=True)  # [N, K]
        # sorted ascending: the prefix maximum is the current element; inf - inf = nan -> False
        keep = (sorted_ent.cumsum(dim=1) - sorted_ent) <= gamma.to(sorted_ent)[:, None]  # [N, K]
        return torch.zeros_like(candidates).scatter(1, order, keep) & candidates  # [N, K]

    return rule


def initial_completion(prefill: torch.Tensor | None, rows: int, gen_length: int, mask_id: int,
                       device: torch.device) -> torch.Tensor:
    """The completion a decode starts from ``[N, L]``: the prefill, or all mask tokens."""
    if prefill is None:
        return torch.full((rows, gen_length), mask_id, dtype=torch.long, device=device)  # [N, L]
    return prefill.to(device=device, dtype=torch.long)  # [N, L]


def position_logits(logits_fn: LogitsFn, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                    start: torch.Tensor, position: int) -> torch.Tensor:
    """Logits ``[N, V]`` (float32) at completion position ``position`` of ONE forward of
    ``prompt + start`` (``start [N, L]``, the initial state). The sampler reads its action
    logits here, and the objective scores the recorded action with the same call."""
    ids = torch.cat([prompt_ids.long(), start.long()], dim=1)  # [N, P+L]
    attn = torch.cat([prompt_mask.bool(), torch.ones_like(start, dtype=torch.bool)], dim=1)  # [N, P+L]
    return logits_fn(ids, attn, last=start.shape[1])[:, position].float()  # [N, V]


def row_forward_counts(commit_step: torch.Tensor, nfe: int) -> torch.Tensor:
    """Forwards in which each row committed something ``[N]`` long (its own NFE).

    An adaptive decode commits at least one token of every row that still has a masked
    position in the current block, so these are the forwards the row needed.
    """
    if nfe == 0:
        return torch.zeros(commit_step.shape[0], dtype=torch.long, device=commit_step.device)
    steps = torch.arange(nfe, device=commit_step.device)  # [T]
    hit = (commit_step[:, :, None] == steps[None, None, :]).any(dim=1)  # [N, T]
    return hit.sum(dim=1)  # [N]


@attrs.frozen(kw_only=True)
class ThresholdActionSampler:
    """Entropy-bounded decoding whose budget ``gamma`` the policy chooses per prompt (module docstring)."""

    gen_length: int = 128
    """Completion length ``L`` in tokens."""
    block_length: int = 32
    """Block length; must divide ``gen_length``."""
    temperature: float = 0.0
    """Sampling temperature of the tokens; 0 is greedy (and takes the most likely action)."""
    gammas: tuple[float, ...] = (0.01, 0.1, 0.5, 1.0)
    """The entropy budgets (nats) the policy chooses from, one per action; larger decodes faster."""
    action_token_ids: tuple[int, ...] = ()
    """Token ids whose logits are the actions, one per entry of ``gammas``; empty: the last
    ``len(gammas)`` ids of the vocabulary other than the mask id."""
    action_position: int = 0
    """Completion position whose logits give the action (0: the first completion token)."""

    def __attrs_post_init__(self) -> None:
        problems = [*block_problems(self.gen_length, self.block_length), temperature_problem(self.temperature)]
        gammas = self.gammas if isinstance(self.gammas, tuple) else ()
        if not gammas or not all(isinstance(g, (int, float)) and not isinstance(g, bool) and math.isfinite(g)
                                 and g >= 0 for g in gammas):
            problems.append(f"gammas={self.gammas!r}: pass a list of one or more finite budgets >= 0 (nats)")
        ids = self.action_token_ids
        if ids and (not isinstance(ids, tuple) or len(ids) != len(gammas) or len(set(ids)) != len(ids)
                    or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)):
            problems.append(f"action_token_ids={ids!r}: pass {len(gammas)} distinct token ids >= 0 "
                            "(one per gamma), or leave it empty")
        pos = self.action_position
        if isinstance(pos, bool) or not isinstance(pos, int) or pos < 0 or (
                isinstance(self.gen_length, int) and pos >= self.gen_length):
            problems.append(f"action_position={pos!r}: pass a completion position in [0, gen_length)")
        raise_problems(problems, "diffpo-eb")

    @property
    def returns_logp(self) -> bool:
        """Always: the objective reads the trajectory (token log-probs, decoding order, action)."""
        return True

    def decode(self, logits_fn: LogitsFn, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, mask_id: int,
               generator: torch.Generator | None = None, prefill: torch.Tensor | None = None,
               ) -> tuple[DecodeResult, dict[str, torch.Tensor]]:
        """Choose the actions, decode, and return the trajectory with the per-row records."""
        n = prompt_ids.shape[0]
        device = prompt_ids.device
        start = initial_completion(prefill, n, self.gen_length, mask_id, device)  # [N, L]
        full = position_logits(logits_fn, prompt_ids, prompt_mask, start, self.action_position)  # [N, V]
        ids = list(self.action_token_ids) or default_action_ids(full.shape[-1], len(self.gammas), mask_id)
        if max(ids) >= full.shape[-1] or mask_id in ids:
            raise InvalidArgumentError("action_token_ids", tuple(ids),
                                       f"pass ids below the vocabulary size {full.shape[-1]}, not the mask id")
        action_ids = torch.tensor(ids, dtype=torch.long, device=device)  # [K]
        logits = full.detach().index_select(-1, action_ids)  # [N, K]
        logq = torch.log_softmax(logits, dim=-1)  # [N, K]
        if self.temperature == 0:
            action = logq.argmax(dim=-1)  # [N]
        else:
            gen = device_generator(generator, device)
            u = torch.rand(logq.shape, generator=gen, device=device, dtype=torch.float64).clamp_min(1e-300)  # [N, K]
            action = (logq.double() - torch.log(-torch.log(u))).argmax(dim=-1)  # [N] Gumbel-max draw
        gamma = torch.tensor(self.gammas, dtype=torch.float64, device=device)[action]  # [N]
        result = adaptive_decode(
            logits_fn, prompt_ids, prompt_mask, mask_id=mask_id, gen_length=self.gen_length,
            block_length=self.block_length, temperature=float(self.temperature),
            rule=per_row_entropy_bound_rule(gamma), need_entropy=True, generator=generator, prefill=prefill,
        )
        result = attrs.evolve(result, nfe=result.nfe + 1)  # the action's forward
        records = {
            "threshold_action": action,  # [N]
            "action_logp": logq.gather(1, action[:, None]).squeeze(1),  # [N]
            "action_ids": action_ids.expand(n, -1).clone(),  # [N, K]
            "action_position": torch.full((n,), self.action_position, dtype=torch.long, device=device),  # [N]
            "row_nfe": (row_forward_counts(result.commit_step, result.nfe - 1) + 1).float(),  # [N]
        }
        return result, records

    def __call__(self, logits_fn: LogitsFn, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, *, mask_id: int,
                 generator: torch.Generator | None = None, prefill: torch.Tensor | None = None) -> SampleOutput:
        """Complete ``prompt_ids [N, P]`` into ``[N, L]`` with per-row chosen budgets (module docstring)."""
        result, records = self.decode(logits_fn, prompt_ids, prompt_mask, mask_id=mask_id, generator=generator,
                                      prefill=prefill)
        return SampleOutput(completion_ids=result.completion_ids, nfe=result.nfe, token_logp=result.token_logp,
                            commit_step=result.commit_step, records=records)
