"""The shared machinery of the masked-diffusion samplers (docs/concepts.md section 5).

Every sampler here decodes the completion of length ``L`` in semi-autoregressive blocks
of ``block_length``: the completion starts as mask tokens (or from a ``prefill``), and
each step runs one forward of ``prompt + completion`` and commits some masked positions
of the current block. The samplers differ only in which positions a step commits:

* a fixed even schedule of ``k`` positions per step, the most confident ones or random
  ones (:func:`scheduled_decode`, used by ``low-confidence``, ``random-remask`` and ``roar``);
* an adaptive rule that looks at the confidences or entropies of the step
  (:func:`adaptive_decode`, used by ``fast-dllm`` and ``eb``).

Letters: ``N`` rows, ``P`` prompt length, ``L`` completion length, ``V`` vocabulary,
``K`` block length.

Randomness comes only from the ``generator`` passed in. When it lives on another device
than the model input (a CPU generator with a GPU model), one 63-bit seed is drawn from it
per call and seeds a generator on the model's device, so runs stay reproducible without
copying ``[N, K, V]`` noise across devices.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import torch

from dmpo_core.contracts import LogitsFn
from dmpo_core.data import SampleOutput
from dmpo_core.errors import InvalidArgumentError, ShapeError
from dmpo_core.samplers.cache import BlockLogits, full_logits

_TINY = torch.finfo(torch.float64).tiny


@attrs.frozen(kw_only=True)
class DecodeResult:
    """Everything a decoding loop knows about its trajectory (richer than SampleOutput)."""

    completion_ids: torch.Tensor  # [N, L] long
    nfe: int
    """Forwards of the model (one per step, whole batch)."""
    token_logp: torch.Tensor  # [N, L] float32: log-prob of each token when committed; 0 at prefilled positions
    commit_step: torch.Tensor  # [N, L] long: index of the forward whose step committed the token; -1 if prefilled
    row_forwards: int = 0
    """Rows run summed over the forwards (``N * nfe`` unless finished rows were left out)."""

    def to_sample_output(self, *, with_logp: bool) -> SampleOutput:
        """The contract's :class:`~dmpo_core.data.SampleOutput` (``token_logp`` only when asked)."""
        return SampleOutput(
            completion_ids=self.completion_ids,
            nfe=self.nfe,
            token_logp=self.token_logp if with_logp else None,
            commit_step=self.commit_step if with_logp else None,
        )


class DecodingSampler:
    """The :class:`~dmpo_core.contracts.Sampler` call shared by every sampler here.

    A subclass is a frozen attrs config with ``gen_length``, ``block_length`` and
    ``temperature`` fields and says in :meth:`decoder` which decoding loop it runs with which
    further settings; :meth:`decode` returns the full :class:`DecodeResult`, and calling the
    sampler returns the contract's :class:`~dmpo_core.data.SampleOutput`, with the per-token
    log-probs and the decoding order when ``returns_logp`` is true.
    """

    __slots__ = ()

    @property
    def returns_logp(self) -> bool:
        """Whether a call returns ``token_logp`` and ``commit_step``."""
        return False

    def decoder(self) -> tuple[Callable[..., DecodeResult], dict[str, Any]]:
        """The decoding loop (:func:`scheduled_decode` or :func:`adaptive_decode`) and its
        keyword settings beyond the lengths, temperature, generator and prefill."""
        raise NotImplementedError

    def decode(
        self,
        logits_fn: LogitsFn,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        *,
        mask_id: int,
        generator: torch.Generator | None = None,
        prefill: torch.Tensor | None = None,
    ) -> DecodeResult:
        """Decode and return the whole trajectory record (completions, NFE, log-probs, commit steps)."""
        run, settings = self.decoder()
        return run(
            logits_fn, prompt_ids, prompt_mask, mask_id=mask_id,
            gen_length=self.gen_length, block_length=self.block_length,  # type: ignore[attr-defined]
            temperature=float(self.temperature),  # type: ignore[attr-defined]
            generator=generator, prefill=prefill, **settings,
        )

    def common_problems(self) -> list[str | None]:
        """Problems of the shared fields (lengths and temperature), for ``__attrs_post_init__``."""
        from dmpo_core.samplers.config import block_problems, temperature_problem

        return [*block_problems(self.gen_length, self.block_length),  # type: ignore[attr-defined]
                temperature_problem(self.temperature)]  # type: ignore[attr-defined]

    def __call__(
        self,
        logits_fn: LogitsFn,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        *,
        mask_id: int,
        generator: torch.Generator | None = None,
        prefill: torch.Tensor | None = None,
    ) -> SampleOutput:
        """Complete ``prompt_ids [N, P]`` (left padded, ``prompt_mask [N, P]``) into ``[N, L]``.

        ``prefill [N, L]`` holds ``mask_id`` at the positions to decode and fixed tokens elsewhere.
        """
        result = self.decode(
            logits_fn, prompt_ids, prompt_mask, mask_id=mask_id, generator=generator, prefill=prefill
        )
        return result.to_sample_output(with_logp=self.returns_logp)


def num_transfer_schedule(masked_count: torch.Tensor, steps: int) -> torch.Tensor:
    """How many positions each step of a block commits: the count split as evenly as possible.

    ``masked_count [N]`` masked positions per row are spread over ``steps`` steps; the
    first ``masked_count % steps`` steps take one more (like LLaDA's schedule), so each
    row's schedule sums to its own count. Returns ``[N, steps]`` long.
    """
    base = torch.div(masked_count, steps, rounding_mode="floor")  # [N]
    rem = masked_count - base * steps  # [N]
    idx = torch.arange(steps, device=masked_count.device)  # [steps]
    return base[:, None] + (idx[None, :] < rem[:, None]).long()  # [N, steps]


def device_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator | None:
    """A generator on ``device`` whose stream is determined by ``generator``.

    Returns ``generator`` itself when it is already on ``device``; otherwise draws one
    seed from it and seeds a fresh generator on ``device``. ``None`` means the global RNG.
    """
    if generator is None:
        return None
    if torch.device(generator.device).type == device.type:
        return generator
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator))
    out = torch.Generator(device=device)
    out.manual_seed(seed)
    return out


def _check_inputs(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, prefill: torch.Tensor | None, gen_length: int, mask_id: int
) -> None:
    if not isinstance(prompt_ids, torch.Tensor) or prompt_ids.dim() != 2:
        raise ShapeError("prompt_ids", getattr(prompt_ids, "shape", prompt_ids), "pass a 2-D long tensor [N, P]")
    if not isinstance(prompt_mask, torch.Tensor) or tuple(prompt_mask.shape) != tuple(prompt_ids.shape):
        raise ShapeError(
            "prompt_mask", getattr(prompt_mask, "shape", prompt_mask), f"pass a tensor of shape {tuple(prompt_ids.shape)}"
        )
    if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id < 0:
        raise InvalidArgumentError("mask_id", mask_id, "pass the tokenizer's mask token id (an int >= 0)")
    if prefill is not None:
        want = (prompt_ids.shape[0], gen_length)
        if not isinstance(prefill, torch.Tensor) or tuple(prefill.shape) != want:
            raise ShapeError("prefill", getattr(prefill, "shape", prefill), f"pass a long tensor of shape {want} [N, L]")
        if prefill.dtype not in (torch.int64, torch.int32):
            raise ShapeError("prefill", prefill.dtype, "pass token ids as a long tensor, mask_id at free positions")


def predict(
    logits: torch.Tensor,
    candidates: torch.Tensor,
    *,
    mask_id: int,
    temperature: float,
    generator: torch.Generator | None,
    tempered_logp: bool = False,
    need_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Predict a token at every candidate position of ``logits [N, K, V]``, with its log-probability.

    Only the ``M`` positions where ``candidates [N, K]`` is True are computed (committed
    positions cost nothing). The mask token is never predicted (its logit is set to
    -inf). With ``temperature`` 0 the prediction is the argmax (computed in float32);
    otherwise a Gumbel-max draw in float64 from ``softmax(logits / temperature)``. The log-probability is that
    of the model at temperature 1 (how a reference is evaluated), or of the tempered
    sampling distribution when ``tempered_logp`` is set; the entropy (``need_entropy``)
    is the model's at temperature 1.

    Returns ``x0 [N, K]`` long (``mask_id`` off the candidates), ``logp [N, K]`` float64
    (-inf off the candidates) and ``entropy [N, K]`` float64 (+inf off them) or None.
    """
    rows, cols = candidates.nonzero(as_tuple=True)  # [M], [M]
    work = torch.float64 if temperature > 0 else torch.float32  # greedy needs no float64 noise
    scores = logits[rows, cols].to(work)  # [M, V] (indexing copies)
    scores[:, mask_id] = float("-inf")
    lse = torch.logsumexp(scores, dim=-1, keepdim=True)  # [M, 1]
    entropy_m = None
    if need_entropy:
        logq = scores - lse  # [M, V]
        entropy_m = -torch.where(torch.isfinite(logq), logq.exp() * logq, 0.0).sum(-1)  # [M]
        del logq
    if temperature == 0:
        x0_m = scores.argmax(dim=-1)  # [M]
    else:
        noise = torch.rand(scores.shape, generator=generator, device=scores.device, dtype=torch.float64)  # [M, V]
        noise.clamp_(min=_TINY).log_().neg_().log_().neg_()  # [M, V] standard Gumbel
        x0_m = noise.add_(scores, alpha=1.0 / temperature).argmax(dim=-1)  # [M]
        del noise
    chosen = scores.gather(-1, x0_m.unsqueeze(-1))  # [M, 1]
    if tempered_logp and temperature > 0:
        scaled = scores.div_(temperature)  # [M, V] (in place: scores is not needed any more)
        logp_m = chosen / temperature - torch.logsumexp(scaled, dim=-1, keepdim=True)  # [M, 1]
    else:
        logp_m = chosen - lse  # [M, 1]
    n, k = candidates.shape
    x0 = torch.full((n, k), mask_id, dtype=torch.long, device=logits.device)  # [N, K]
    x0[rows, cols] = x0_m
    logp = torch.full((n, k), float("-inf"), dtype=torch.float64, device=logits.device)  # [N, K]
    logp[rows, cols] = logp_m.squeeze(-1).to(torch.float64)
    entropy = None
    if entropy_m is not None:
        entropy = torch.full((n, k), float("inf"), dtype=torch.float64, device=logits.device)  # [N, K]
        entropy[rows, cols] = entropy_m.to(torch.float64)
    return x0, logp, entropy


def _rank_select(score: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Select, per row, the ``k[n]`` candidate positions of highest ``score``.

    ``score [N, K]`` float, ``candidates [N, K]`` bool, ``k [N]`` long (at most the row's
    candidate count). Ties keep the leftmost position. Returns ``[N, K]`` bool.
    """
    score = score.masked_fill(~candidates, float("-inf"))  # [N, K]
    order = score.argsort(dim=1, descending=True, stable=True)  # [N, K]
    rank = torch.empty_like(order)  # [N, K]
    rank.scatter_(1, order, torch.arange(score.shape[1], device=score.device).expand_as(order))
    return (rank < k[:, None]) & candidates  # [N, K]


def _initial_state(
    prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, prefill: torch.Tensor | None, gen_length: int, mask_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n = prompt_ids.shape[0]
    device = prompt_ids.device
    if prefill is None:
        completion = torch.full((n, gen_length), mask_id, dtype=torch.long, device=device)  # [N, L]
    else:
        completion = prefill.to(device=device, dtype=torch.long)  # [N, L]
    x = torch.cat([prompt_ids.long(), completion], dim=1)  # [N, P+L]
    ones = torch.ones((n, gen_length), dtype=torch.bool, device=device)  # [N, L]
    attn = torch.cat([prompt_mask.to(device=device, dtype=torch.bool), ones], dim=1)  # [N, P+L]
    return x, attn


def scheduled_decode(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    mask_id: int,
    gen_length: int,
    block_length: int,
    steps: int,
    temperature: float,
    remasking: str,
    generator: torch.Generator | None = None,
    prefill: torch.Tensor | None = None,
    tempered_logp: bool = False,
    cache: str = "none",
) -> DecodeResult:
    """Block-wise decoding with an even schedule of ``k`` commits per step (LLaDA).

    Each of the ``gen_length // block_length`` blocks gets ``steps // num_blocks`` steps;
    a row's masked positions in the block are split evenly over them
    (:func:`num_transfer_schedule`), so rows with different numbers of free positions
    (a ``prefill``) each follow their own schedule. A step predicts every masked position
    of the block (:func:`predict`) and commits the ``k`` most confident
    (``remasking="low_confidence"``, confidence = model probability of the predicted
    token) or ``k`` uniformly random ones (``remasking="random"``). Steps in which no row
    commits anything (possible only with a prefill) are skipped and cost no forward.

    With ``remasking="random"`` the committed set does not depend on the drawn tokens,
    so the sum of ``token_logp`` is the exact log-probability of the trajectory; with
    ``low_confidence`` it is not (the selection looks at the draws).

    ``cache`` says where a step's logits come from (:class:`~dmpo_core.samplers.cache.BlockLogits`:
    ``none``, ``prefix``, ``dual`` or ``refresh``).

    The caller validates the configuration (``block_length`` divides ``gen_length``,
    ``num_blocks`` divides ``steps``).
    """
    _check_inputs(prompt_ids, prompt_mask, prefill, gen_length, mask_id)
    n, p = prompt_ids.shape
    device = prompt_ids.device
    gen = device_generator(generator, device)
    x, attn = _initial_state(prompt_ids, prompt_mask, prefill, gen_length, mask_id)  # [N, P+L]
    token_logp = torch.zeros((n, gen_length), dtype=torch.float32, device=device)  # [N, L]
    commit_step = torch.full((n, gen_length), -1, dtype=torch.long, device=device)  # [N, L]
    num_blocks = gen_length // block_length
    steps_per_block = steps // num_blocks
    block_logits = BlockLogits(logits_fn, x, attn, prompt_len=p, gen_length=gen_length, mask_id=mask_id, cache=cache)
    nfe = 0
    for b in range(num_blocks):
        lo, hi = b * block_length, (b + 1) * block_length  # completion coordinates
        block = x[:, p + lo : p + hi]  # [N, K] view into x
        block_logits.begin(lo, hi)
        schedule = num_transfer_schedule((block == mask_id).sum(dim=1), steps_per_block)  # [N, S_b]
        active = schedule.any(dim=0).tolist()  # one sync per block
        for s in range(steps_per_block):
            if not active[s]:
                continue
            logits = block_logits()  # [N, K, V]
            candidates = block == mask_id  # [N, K]
            x0, logp, _ = predict(
                logits, candidates, mask_id=mask_id, temperature=temperature, generator=gen,
                tempered_logp=tempered_logp,
            )  # [N, K], [N, K]
            del logits
            if remasking == "low_confidence":
                score = logp  # [N, K] confidence (log-probability of the predicted token)
            else:
                score = torch.rand(candidates.shape, generator=gen, device=device, dtype=torch.float64)  # [N, K]
            select = _rank_select(score, candidates, schedule[:, s])  # [N, K]
            block.copy_(torch.where(select, x0, block))  # [N, K]
            token_logp[:, lo:hi] = torch.where(select, logp.float(), token_logp[:, lo:hi])  # [N, K]
            commit_step[:, lo:hi].masked_fill_(select, nfe)  # [N, K]
            nfe += 1
    return DecodeResult(completion_ids=x[:, p:].clone(), nfe=nfe, token_logp=token_logp, commit_step=commit_step,
                        row_forwards=n * nfe)


def adaptive_decode(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    mask_id: int,
    gen_length: int,
    block_length: int,
    temperature: float,
    rule: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor], torch.Tensor],
    need_entropy: bool = False,
    generator: torch.Generator | None = None,
    prefill: torch.Tensor | None = None,
    cache: str = "none",
    row_exit: bool = True,
) -> DecodeResult:
    """Block-wise decoding where each step commits the masked positions a ``rule`` picks.

    ``rule(logp [N, K], entropy [N, K] | None, candidates [N, K]) -> [N, K] bool`` must
    pick at least one candidate in every row that has one (this function also forces the
    most confident candidate of each such row, as a guard). A block is finished when no
    row has a masked position left in it, so a block costs at most ``block_length``
    forwards; the loop checks this once per step (one device sync).

    Per-row early exit (``row_exit``): a step runs the forward only on the rows that still
    have a masked position in the block, so a finished row costs nothing while the others
    finish; with a ``cache`` the cache is narrowed to those rows (their keys and values are
    the ones they would read in the whole batch). Each row's logits are those it gets in the
    full batch (rows do not see each other), and the Gumbel noise is drawn for the same
    candidates in the same order, so no row's tokens change; ``row_forwards`` counts the rows
    actually run. ``cache`` as in :func:`scheduled_decode`.
    """
    _check_inputs(prompt_ids, prompt_mask, prefill, gen_length, mask_id)
    n, p = prompt_ids.shape
    device = prompt_ids.device
    gen = device_generator(generator, device)
    x, attn = _initial_state(prompt_ids, prompt_mask, prefill, gen_length, mask_id)  # [N, P+L]
    token_logp = torch.zeros((n, gen_length), dtype=torch.float32, device=device)  # [N, L]
    commit_step = torch.full((n, gen_length), -1, dtype=torch.long, device=device)  # [N, L]
    block_logits = BlockLogits(logits_fn, x, attn, prompt_len=p, gen_length=gen_length, mask_id=mask_id, cache=cache)
    nfe = row_forwards = 0
    for lo in range(0, gen_length, block_length):
        hi = lo + block_length
        block = x[:, p + lo : p + hi]  # [N, K] view into x
        block_logits.begin(lo, hi)
        for _ in range(block_length):
            candidates = block == mask_id  # [N, K]
            has = candidates.any(dim=1)  # [N]
            rows = has.nonzero().squeeze(1) if row_exit else None  # [R]
            count = n if rows is None else int(rows.numel())  # one device sync per step
            if count == 0 or not bool(has.any()):
                break
            if rows is not None and count == n:
                rows = None  # every row runs: no gather
            logits = block_logits(rows)  # [R, K, V]
            sub = candidates if rows is None else candidates[rows]  # [R, K]
            x0, logp, entropy = predict(
                logits, sub, mask_id=mask_id, temperature=temperature, generator=gen, need_entropy=need_entropy
            )  # [R, K], [R, K], [R, K] or None
            del logits
            if rows is not None:
                x0, logp, entropy = _scatter_rows(rows, n, x0, logp, entropy, mask_id)  # [N, K] each
            select = rule(logp, entropy, candidates) & candidates  # [N, K]
            best = logp.masked_fill(~candidates, float("-inf")).argmax(dim=1)  # [N]
            select[torch.arange(n, device=device), best] |= has  # at least one per unfinished row
            block.copy_(torch.where(select, x0, block))  # [N, K]
            token_logp[:, lo:hi] = torch.where(select, logp.float(), token_logp[:, lo:hi])  # [N, K]
            commit_step[:, lo:hi].masked_fill_(select, nfe)  # [N, K]
            nfe += 1
            row_forwards += count
    return DecodeResult(completion_ids=x[:, p:].clone(), nfe=nfe, token_logp=token_logp, commit_step=commit_step,
                        row_forwards=row_forwards)


def _scatter_rows(
    rows: torch.Tensor, n: int, x0: torch.Tensor, logp: torch.Tensor, entropy: torch.Tensor | None, mask_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Put the predictions of ``rows [R]`` back into ``[N, K]`` tensors (the rest: nothing predicted)."""
    k = x0.shape[1]
    full_x0 = torch.full((n, k), mask_id, dtype=x0.dtype, device=x0.device).index_copy_(0, rows, x0)  # [N, K]
    full_logp = torch.full((n, k), float("-inf"), dtype=logp.dtype, device=logp.device).index_copy_(0, rows, logp)
    full_ent = None
    if entropy is not None:
        full_ent = torch.full((n, k), float("inf"), dtype=entropy.dtype, device=entropy.device)  # [N, K]
        full_ent.index_copy_(0, rows, entropy)
    return full_x0, full_logp, full_ent


def trajectory_logp(
    logits_fn: LogitsFn,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    commit_step: torch.Tensor,
    *,
    mask_id: int,
) -> torch.Tensor:
    """Per-token log-probs ``[N, L]`` of a recorded trajectory under another model.

    Replays the decoding order of ``commit_step [N, L]`` (from :class:`DecodeResult`; -1
    marks prefilled positions, which get 0): before step ``t`` every position committed at
    a step ``>= t`` is masked, one forward is run, and the log-probability (temperature 1,
    mask token excluded) of each token committed at step ``t`` is read. Evaluating the
    reference this way along a ROAR trajectory gives the exact ``log p_ref(x)``, and so
    the exact ``log_rnd``. Costs one forward per distinct step.
    """
    n = prompt_ids.shape[0]
    gen_length = completion_ids.shape[1]
    device = prompt_ids.device
    completion_ids = completion_ids.to(device)
    commit_step = commit_step.to(device)
    _, attn = _initial_state(prompt_ids, prompt_mask, None, gen_length, mask_id)  # [N, P+L]
    out = torch.zeros((n, gen_length), dtype=torch.float32, device=device)  # [N, L]
    for t in torch.unique(commit_step[commit_step >= 0]).tolist():
        completion = completion_ids.masked_fill(commit_step >= t, mask_id)  # [N, L]: the state before step t
        x = torch.cat([prompt_ids.long(), completion], dim=1)  # [N, P+L]
        logits = full_logits(logits_fn, x, attn, gen_length, mask_id)  # [N, L, V]
        rows, cols = (commit_step == t).nonzero(as_tuple=True)  # [M], [M]
        scores = logits[rows, cols].to(torch.float64)  # [M, V]
        del logits
        scores[:, mask_id] = float("-inf")
        chosen = scores.gather(-1, completion_ids[rows, cols].unsqueeze(-1)).squeeze(-1)  # [M]
        out[rows, cols] = (chosen - torch.logsumexp(scores, dim=-1)).float()  # [M]
    return out
