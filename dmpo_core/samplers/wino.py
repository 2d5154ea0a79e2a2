"""WINO: wide-in, narrow-out revokable decoding (Hong et al., 2025), with its shadow block.

Each step of a block runs ONE forward of the sequence with a "shadow" copy of the current
block added to it (:class:`~dmpo_core.contracts.MaskedLogitsFn`, a custom attention pattern):

* the shadow holds mask tokens at the block's position ids; shadow position ``j`` attends to
  the whole (unpadded) sequence except its own counterpart, block position ``j``, and to
  itself; the sequence does not attend to the shadow, so its logits are those of a plain
  forward. The shadow's prediction at ``j`` is the model's distribution of token ``j`` given
  everything else as it stands now: the verification of a drafted token (exactly so in a
  one-layer model; in a deeper one the other positions' later-layer states, which the shadow
  reads, have themselves seen token ``j``);
* wide in: every masked position of the block whose predicted token has probability above
  ``threshold`` (low, 0.6) is drafted (at least the most confident one);
* narrow out: every token drafted in an earlier step of the block whose verification
  probability (the shadow's, at temperature 1, mask token excluded) is below
  ``verify_threshold`` (high, 0.9) is masked again. Drafts stay revokable until their block
  has no mask left; then the block is final.

Our choices where the paper leaves room (written down, as the project requires):

* guard: a step re-masks at most ``drafted - 1`` tokens of a row (its lowest verification
  probabilities first), so every step makes net progress and a block costs at most
  ``block_length`` forwards;
* the verification reads the step's own forward, i.e. the drafts of the previous steps are
  checked against a context that already holds the drafts of those steps; tokens drafted in
  the current step are checked from the next step on;
* the shadow is placed before the sequence in the model input (positions carry explicit
  position ids, so the order does not matter to the model; the sequence keeps its usual
  place at the end of the input, where every logits function of this project has it);
* no KV cache: each step is one full forward of ``P + L + K`` positions (the NFE counts it
  as one forward; its extra cost is the ``K`` shadow positions, which the benchmark's
  tokens/s includes).

A backend whose logits are shifted (Dream) cannot run a custom attention pattern; WINO then
raises the backend's one-line error. Letters: ``N`` rows, ``P`` prompt, ``L`` completion,
``K`` block, ``S = P + L``, ``T = K + S``, ``V`` vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import torch

from dmpo_core.contracts import LogitsFn, MaskedLogitsFn
from dmpo_core.errors import InvalidArgumentError
from dmpo_core.samplers.common import (
    DecodeResult,
    DecodingSampler,
    _check_inputs,
    _initial_state,
    _scatter_rows,
    device_generator,
    predict,
)
from dmpo_core.samplers.config import raise_problems


def shadow_inputs(x: torch.Tensor, attn: torch.Tensor, a: int, b: int, mask_id: int
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The model input of one WINO step: ``[shadow | x]`` with its attention and position ids.

    ``x [N, S]`` is the decoding state, ``attn [N, S]`` 0 on left padding, ``[a, b)`` the
    block in sequence coordinates. Returns ``ids [N, T]``, ``attention [N, T, T]`` bool and
    ``position_ids [N, T]`` (``T = K + S``, ``K = b - a``).
    """
    n, s = x.shape
    k = b - a
    device = x.device
    valid = attn.bool()  # [N, S]
    pos = (attn.long().cumsum(-1) - 1).clamp(min=0)  # [N, S]
    ids = torch.cat([torch.full((n, k), mask_id, dtype=x.dtype, device=device), x], dim=1)  # [N, T]
    position_ids = torch.cat([pos[:, a:b], pos], dim=1)  # [N, T]
    t = k + s
    attention = torch.zeros((n, t, t), dtype=torch.bool, device=device)  # [N, T, T]
    attention[:, k:, k:] = valid[:, None, :]  # the sequence attends to its unpadded positions only
    attention[:, :k, k:] = valid[:, None, :]  # the shadow attends to the sequence ...
    eye = torch.eye(k, dtype=torch.bool, device=device)  # [K, K]
    attention[:, :k, k + a : k + b] &= ~eye  # ... except its own counterpart in the block
    attention[:, :k, :k] = eye  # and to itself
    diagonal = torch.arange(t, device=device)
    attention[:, diagonal, diagonal] = True  # a padded query attends to itself (its output is unused)
    return ids, attention, position_ids


def wino_decode(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    mask_id: int,
    gen_length: int,
    block_length: int,
    temperature: float,
    threshold: float,
    verify_threshold: float,
    generator: torch.Generator | None = None,
    prefill: torch.Tensor | None = None,
) -> DecodeResult:
    """Block-wise WINO decoding (module docstring). Rows whose block has no mask left are not
    run (per-row early exit); ``row_forwards`` counts the rows run, ``nfe`` the forwards.

    Raises:
        InvalidArgumentError: ``logits_fn`` offers no custom-attention forward.
    """
    if not isinstance(logits_fn, MaskedLogitsFn):
        raise InvalidArgumentError("logits_fn", type(logits_fn).__name__,
                                   "wino needs a model whose logits function has masked_logits (a custom attention "
                                   "pattern for its shadow block)")
    _check_inputs(prompt_ids, prompt_mask, prefill, gen_length, mask_id)
    n, p = prompt_ids.shape
    device = prompt_ids.device
    gen = device_generator(generator, device)
    x, attn = _initial_state(prompt_ids, prompt_mask, prefill, gen_length, mask_id)  # [N, S]
    token_logp = torch.zeros((n, gen_length), dtype=torch.float32, device=device)  # [N, L]
    commit_step = torch.full((n, gen_length), -1, dtype=torch.long, device=device)  # [N, L]
    log_draft, log_verify = math.log(threshold), math.log(verify_threshold)
    nfe = row_forwards = 0
    for lo in range(0, gen_length, block_length):
        hi = lo + block_length
        a, b = p + lo, p + hi  # the block in sequence coordinates
        block = x[:, a:b]  # [N, K] view into x
        drafted = torch.zeros_like(block, dtype=torch.bool)  # [N, K]: committed by us in this block, revokable
        for _ in range(block_length):
            candidates = block == mask_id  # [N, K]
            has = candidates.any(dim=1)  # [N]
            rows = has.nonzero().squeeze(1)  # [R]
            count = int(rows.numel())  # one device sync per step
            if count == 0:
                break
            ids, attention, position_ids = shadow_inputs(x[rows], attn[rows], a, b, mask_id)  # [R, T], ...
            k = b - a
            keep = torch.cat([torch.arange(k, device=device), torch.arange(k + a, k + b, device=device)])  # [2K]
            logits = logits_fn.masked_logits(ids, attention, position_ids, keep)  # [R, 2K, V]
            shadow, real = logits[:, :k], logits[:, k:]  # [R, K, V] each
            sub = candidates[rows]  # [R, K]
            x0, logp, _ = predict(real, sub, mask_id=mask_id, temperature=temperature, generator=gen)  # [R, K] each
            verify = _verification_logp(shadow, block[rows], drafted[rows], mask_id)  # [R, K], -inf off drafts
            del logits, shadow, real
            x0, logp, _ = _scatter_rows(rows, n, x0, logp, None, mask_id)  # [N, K] each
            verify = torch.full((n, k), float("inf"), dtype=verify.dtype, device=device).index_copy_(0, rows, verify)
            # wide in: every candidate above the low threshold, at least the most confident one
            select = candidates & (logp > log_draft)  # [N, K]
            best = logp.masked_fill(~candidates, float("-inf")).argmax(dim=1)  # [N]
            select[torch.arange(n, device=device), best] |= has
            # narrow out: earlier drafts under the high threshold, at most (drafted now - 1) per row
            remask = _capped_remask(verify, drafted & (verify < log_verify), select.sum(dim=1) - 1)  # [N, K]
            block.copy_(torch.where(select, x0, torch.where(remask, torch.full_like(block, mask_id), block)))
            token_logp[:, lo:hi] = torch.where(select, logp.float(), token_logp[:, lo:hi].masked_fill(remask, 0.0))
            commit_step[:, lo:hi] = torch.where(select, nfe, commit_step[:, lo:hi].masked_fill(remask, -1))
            drafted = (drafted & ~remask) | select
            nfe += 1
            row_forwards += count
    return DecodeResult(completion_ids=x[:, p:].clone(), nfe=nfe, token_logp=token_logp, commit_step=commit_step,
                        row_forwards=row_forwards)


def _verification_logp(shadow: torch.Tensor, block: torch.Tensor, drafted: torch.Tensor, mask_id: int) -> torch.Tensor:
    """Log-probability ``[R, K]`` (float64) of each drafted token under the shadow's logits
    ``[R, K, V]`` at temperature 1 with the mask token excluded; ``-inf`` elsewhere (unused)."""
    rows, cols = drafted.nonzero(as_tuple=True)  # [M], [M]
    out = torch.full(block.shape, float("-inf"), dtype=torch.float64, device=block.device)  # [R, K]
    scores = shadow[rows, cols].to(torch.float64)  # [M, V]
    scores[:, mask_id] = float("-inf")
    chosen = scores.gather(-1, block[rows, cols].unsqueeze(-1)).squeeze(-1)  # [M]
    out[rows, cols] = chosen - torch.logsumexp(scores, dim=-1)  # [M]
    return out


def _capped_remask(verify: torch.Tensor, failing: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """The ``cap [N]`` lowest-``verify`` positions of ``failing [N, K]`` per row (all when fewer)."""
    score = verify.masked_fill(~failing, float("inf"))  # [N, K]
    order = score.argsort(dim=1, stable=True)  # [N, K] ascending
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(score.shape[1], device=score.device).expand_as(order))
    return failing & (rank < cap.clamp(min=0)[:, None])  # [N, K]


@attrs.frozen(kw_only=True)
class WinoSampler(DecodingSampler):
    """WINO: draft wide at ``threshold``, re-mask drafts whose verification falls under
    ``verify_threshold`` (the shadow block; see the module docstring).

    Callable as the :class:`~dmpo_core.contracts.Sampler` contract says, with the extra
    keyword ``prefill``. Needs a model whose logits function is a
    :class:`~dmpo_core.contracts.MaskedLogitsFn` (LLaDA-family backends; not Dream).
    """

    gen_length: int = 128
    """Completion length ``L`` in tokens."""
    block_length: int = 32
    """Block length; must divide ``gen_length``."""
    temperature: float = 0.0
    """Sampling temperature of the drafts; 0 is greedy."""
    threshold: float = 0.6
    """Wide in: draft every masked position whose predicted token's probability exceeds this, in (0, 1]
    (at least one per step; 1.0 drafts one per step and so never re-masks)."""
    verify_threshold: float = 0.9
    """Narrow out: re-mask an earlier draft whose probability given the rest falls under this, in (0, 1]."""

    def __attrs_post_init__(self) -> None:
        problems = list(self.common_problems())
        for name in ("threshold", "verify_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
                problems.append(f"{name}={value!r}: pass a probability in (0, 1] (WINO's: threshold 0.6, "
                                "verify_threshold 0.9)")
        raise_problems(problems, "wino")

    def decoder(self) -> tuple[Callable[..., DecodeResult], dict[str, Any]]:
        """WINO decoding with the two thresholds."""
        return wino_decode, {"threshold": float(self.threshold), "verify_threshold": float(self.verify_threshold)}
