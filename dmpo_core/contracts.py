"""Backend-neutral contracts: what a dLLM policy, sampler, reward, weighting scheme,
objective, engine and task must provide.

They are ``typing.Protocol`` classes (structural: a plugin needs no base class, only the
methods) marked ``runtime_checkable`` so the registry can give a clear error when a
plugin's object lacks a method. Shapes use the letters of docs/concepts.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from dmpo_core.data import RolloutBatch, SampleOutput, WeightOutput

# ---- what a step must compute for a component (its ``needs``) ------------------------------------
LOG_RND = "log_rnd"
"""``log p_ref(x) - log p_old(x)`` of every completion at rollout time (DMPO's tilt). Right after
a reference sync it is exactly 0, and the loop knows it without estimating anything."""
LOG_P_OLD = "log_p_old"
"""``log p_old(x)`` itself, the rollout policy's sequence log-likelihood (DDO, unbiased baseline)."""
CURRENT_LOGP = "current_logp"
"""The current policy's likelihood at loss time: the objective evaluates it in its own forward
and passes it to the weighting scheme (``log_p_current``), which re-weights there."""
TRAJECTORY = "trajectory"
"""The sampler's record of each rollout, in ``batch.extras`` before ``prepare``: the per-token
log-probs ``sampler/token_logp [B*G, L]``, the decoding order ``sampler/commit_step [B*G, L]``
and the sampler's own per-row ``records`` as ``sampler/<name>`` (DiFFPO reads its intermediate
state and the chosen threshold there). Needs a sampler whose ``returns_logp`` is true."""
NEEDS: frozenset[str] = frozenset({LOG_RND, LOG_P_OLD, CURRENT_LOGP, TRAJECTORY})
"""Every value a ``needs`` set may hold; the loop computes exactly the union of its components'."""


@runtime_checkable
class LogitsFn(Protocol):
    """Anything that maps token ids to logits: a policy's ``logits`` or ``reference_logits``."""

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None
    ) -> torch.Tensor:
        """Logits ``[N, S', V]`` for ``input_ids [N, S]``; ``S' = last`` keeps only the last positions.

        Logits at position i predict the token at position i (a backend whose model
        predicts the next position, like Dream, shifts them before returning).
        """
        ...


@runtime_checkable
class KVCache(Protocol):
    """Keys and values of every layer for one batch of sequences ``[N, S]``, kept between forwards.

    What the samplers' block caches (Fast-dLLM's prefix and dual cache) run on. A forward
    recomputes a window of positions, writes their keys and values into the cache and reads
    every other position's from it; in a bidirectional model the cached ones are therefore
    stale (they have not seen the tokens committed since they were written): an approximation
    the caller opts into.
    """

    def forward(self, input_ids: torch.Tensor, *, start: int, stop: int, keep: tuple[int, int]) -> torch.Tensor:
        """Recompute positions ``[start, stop)`` of ``input_ids [N, S]`` and return the logits
        ``[N, b - a, V]`` of positions ``[a, b) = keep`` (inside the window; logits at i predict
        token i). Positions outside the window are read from the cache; the first call must
        cover the whole sequence (``start=0, stop=S``). A backend whose model predicts the next
        position (Dream) also recomputes position ``a - 1`` (its hidden state predicts token ``a``).
        """
        ...

    def select(self, rows: torch.Tensor) -> KVCache:
        """A cache of the rows ``rows [R]`` (sorted indices into this cache's batch), holding their
        keys and values as they are now; later forwards of it take ``input_ids [R, S]``. What lets
        a decoding loop stop running the rows that have finished (per-row early exit). This
        cache is left unchanged.
        """
        ...


@runtime_checkable
class CachingLogitsFn(LogitsFn, Protocol):
    """A :class:`LogitsFn` that can also keep a :class:`KVCache` (a backend's ``policy.logits``)."""

    def open_cache(self, attention_mask: torch.Tensor) -> KVCache:
        """An empty cache for sequences with ``attention_mask [N, S]`` (0 on left padding)."""
        ...


@runtime_checkable
class MaskedLogitsFn(LogitsFn, Protocol):
    """A :class:`LogitsFn` that also runs one forward under a custom attention pattern.

    What WINO's verification runs on: a "shadow" copy of the block, added to the sequence,
    whose positions attend to the sequence but not to their own counterparts, while the
    sequence does not attend to the shadow. A backend whose logits are shifted (position i's
    logits come from the hidden state of the position left of it, Dream) cannot offer it: a
    custom pattern has no "left neighbour"; it raises ``InvalidArgumentError``.
    """

    def masked_logits(self, input_ids: torch.Tensor, attention: torch.Tensor, position_ids: torch.Tensor,
                      keep: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, K', V]`` at the positions ``keep [K']`` of ``input_ids [N, T]``, where query
        ``q`` attends key ``k`` iff ``attention [N, T, T][n, q, k]`` (bool) and position ``t`` has
        the position id ``position_ids [N, T][n, t]``. Every query must attend at least one key.
        Logits at t predict the token at t."""
        ...


@runtime_checkable
class Policy(Protocol):
    """A masked diffusion LM being trained, with its frozen reference.

    ``attention_mask`` is ``[N, S]`` bool/int with 0 on left padding; attention is
    bidirectional among the unpadded positions.
    """

    mask_id: int
    """Id of the mask token ``M``."""
    eos_id: int
    """End-of-sequence id (instruct models pad answers with it)."""
    pad_id: int
    """Padding id used for left padding of prompts."""
    eot_id: int | None
    """End-of-turn id, when the tokenizer has one."""
    stop_ids: tuple[int, ...]
    """Every id that ends a completion: ``eos_id`` and each end-of-turn token of the tokenizer
    (LLaDA's ``<|eot_id|>``, Dream's ``<|im_end|>``). The text of a completion, in rollouts and
    evaluations alike, is what comes before the first of them."""
    tokenizer: Any
    """A ``transformers``-compatible tokenizer (``__call__``, ``decode``, ``apply_chat_template``)."""

    @property
    def device(self) -> torch.device:
        """Device of the trainable parameters."""
        ...

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None) -> torch.Tensor:
        """Current-policy logits ``[N, S or last, V]`` (with gradient in training mode)."""
        ...

    def reference_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None
    ) -> torch.Tensor:
        """Reference-policy logits ``[N, S or last, V]``, never with gradient."""
        ...

    def trainable_parameters(self) -> Iterator[torch.nn.Parameter]:
        """The parameters an optimizer updates (LoRA adapters only, when LoRA is on)."""
        ...

    def sync_reference(self) -> None:
        """Make the reference equal to the current policy."""
        ...

    def train(self, mode: bool = True) -> Any:
        """Switch dropout etc. on (``True``) or off."""
        ...

    def save(self, path: str, *, format: str | None = None) -> None:
        """Write a checkpoint folder that the backend (and ``transformers``) reloads."""
        ...


@runtime_checkable
class Sampler(Protocol):
    """A rollout policy: turns prompts into completions with the current model."""

    @property
    def returns_logp(self) -> bool:
        """True when every call returns ``token_logp`` and ``commit_step`` (the exact trajectory
        log-likelihood that ``scoring.method=exact`` reads); known before any model loads."""
        ...

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
        """Complete ``prompt_ids [N, P]`` (left padded, ``prompt_mask [N, P]``).

        ``prefill [N, L]`` (optional) holds ``mask_id`` at the positions to decode and fixed
        tokens elsewhere, which the sampler must keep (a task's given cells, say). Returns
        completions ``[N, L]``, the NFE and, when ``returns_logp``, per-token log-probs ``[N, L]``
        and the step that committed each token.
        """
        ...


@runtime_checkable
class Reward(Protocol):
    """A reward component: scores completions, ``None`` (or NaN) where it cannot."""

    def __call__(
        self, prompts: Sequence[str], completions: Sequence[str], items: Sequence[Mapping[str, Any]]
    ) -> list[float | None]:
        """One float (or None) per completion; ``items`` carry the task fields (e.g. the solution)."""
        ...


@runtime_checkable
class WeightingScheme(Protocol):
    """Maps rewards (and, when it needs them, likelihoods) of a rollout batch to advantages."""

    @property
    def needs(self) -> frozenset[str]:
        """What the step must compute for it, from :data:`NEEDS`: :data:`LOG_RND` to tilt toward
        the reference, :data:`LOG_P_OLD` for ``log_p_old``, :data:`CURRENT_LOGP` to be called
        again at loss time with the current policy's likelihood. Empty: rewards only."""
        ...

    @property
    def zero_sum(self) -> bool:
        """True when the advantages of every group sum to zero (checked by the public laws)."""
        ...

    def __call__(
        self,
        rewards: torch.Tensor,
        log_rnd: torch.Tensor | None,
        group_size: int,
        *,
        log_p_current: torch.Tensor | None = None,
        log_p_old: torch.Tensor | None = None,
    ) -> WeightOutput:
        """``rewards [B*G]`` (NaN = missing), ``log_rnd [B*G]`` (None unless needed) -> advantages
        ``[B*G]`` (0 on invalid rows), optionally importance weights and a baseline, and stats."""
        ...


@runtime_checkable
class Objective(Protocol):
    """A loss on a rollout batch, given the policy and the batch's advantages."""

    @property
    def needs(self) -> frozenset[str]:
        """Sequence-level values the step must compute for it, from :data:`NEEDS` (DDO needs
        :data:`LOG_P_OLD`); what it computes itself goes through :meth:`prepare`."""
        ...

    def prepare(
        self, policy: Policy, batch: RolloutBatch, *, num_iterations: int, generator: torch.Generator
    ) -> Mapping[str, torch.Tensor]:
        """Rollout-time data of the objective, computed once per rollout batch with the rollout
        (= old) policy and the reference, before any update: e.g. per-token old and reference
        log-probs under masks fixed for each of the ``num_iterations`` gradient steps. Every
        tensor's first dimension is the row ``[B*G, ...]`` (micro-batches slice it). The loop
        stores the result in ``batch.extras``. Return ``{}`` when nothing is needed, and draw
        nothing from ``generator`` then (runs stay reproducible)."""
        ...

    def __call__(
        self,
        policy: Policy,
        batch: RolloutBatch,
        weights: WeightOutput,
        *,
        num_groups: int,
        iteration: int = 0,
        weighting: WeightingScheme | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, Mapping[str, float]]:
        """Scalar loss (with gradient) on ``batch`` (possibly a group-aligned slice of a
        larger batch of ``num_groups`` groups; slice losses add up to the full loss) and its
        statistics as ``name -> number``. ``iteration`` counts the gradient steps taken on
        this rollout batch (0-based), for objectives whose masks are fixed per step."""
        ...


@runtime_checkable
class Engine(Protocol):
    """How parameters are updated: a single process, or several ranks (DeepSpeed ZeRO-3).

    The single-process engine is the ``world_size == 1`` case of the same contract; an engine
    with several ranks also has the members of :class:`Ranks`.
    """

    @property
    def device(self) -> torch.device:
        """Where batches must be placed."""
        ...

    @property
    def lr(self) -> float:
        """Learning rate the next optimizer step applies (logged with every step)."""
        ...

    @property
    def rank(self) -> int:
        """This process's rank, 0-based."""
        ...

    @property
    def world_size(self) -> int:
        """Number of ranks training together (1 for a single process)."""
        ...

    @property
    def is_main(self) -> bool:
        """True on the rank that writes metrics, progress and summaries."""
        ...

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate gradients of ``loss``. With several ranks, :meth:`step` applies the MEAN of the
        ranks' gradients (the loop scales each rank's loss by the world size, so the update is
        that of the whole step's loss)."""
        ...

    def step(self) -> float:
        """Clip, apply the optimizer and the LR schedule, zero the gradients; return the gradient norm.

        A non-finite gradient norm skips the update (gradients are dropped) and is returned as is.
        """
        ...

    def zero_grad(self) -> None:
        """Drop accumulated gradients without updating."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Optimizer and scheduler state, for checkpoints."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        ...


@runtime_checkable
class Ranks(Protocol):
    """What an :class:`Engine` with several ranks adds: sharding, gathers, whole parameters for
    generation, a shared reference sync and its own checkpoint files.

    An engine may leave them out: the loop then gives it the world-size-1 answers of
    :class:`dmpo_core.engine_base.SingleProcess` (which an engine can also inherit), so engines
    written before ranks existed keep working in one process.
    """

    @property
    def rng_mode(self) -> str:
        """``sequential`` (one generator threads a step) or ``keyed`` (each group's draws are keyed
        by seed, step, stage and global group index, so results do not depend on the rank split);
        see :data:`dmpo_core.engine_base.RNG_MODES`."""
        ...

    def shard(self, n: int) -> range:
        """The indices of ``n`` (groups of a step, held-out items) this rank owns: one contiguous
        range per rank, in rank order, covering ``range(n)`` over all ranks."""
        ...

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every rank's ``tensor`` (same shape on each) concatenated along dim 0, in rank order."""
        ...

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's picklable ``obj``, in rank order (on every rank)."""
        ...

    def barrier(self) -> None:
        """Wait until every rank reaches this point."""
        ...

    def full_parameters(self, policy: Any, *, writable: bool = False) -> Any:
        """A context manager inside which ``policy``'s weights (and its reference's) are whole on
        this rank and a forward needs no collective: generation with a data-dependent number of
        steps (threshold samplers) cannot hang sharded ranks, and saving reads whole tensors.
        With ``writable``, what this rank writes into the weights is kept on leaving."""
        ...

    def sync_reference(self, policy: Any) -> None:
        """Make ``policy``'s reference equal to its current weights (sharded references included)."""
        ...

    def save_state(self, folder: Path) -> None:
        """Write what :meth:`state_dict` does not hold (sharded optimizer state) under ``folder``;
        called on every rank with the same checkpoint folder."""
        ...

    def load_state(self, folder: Path) -> None:
        """Restore :meth:`save_state`'s files from a checkpoint ``folder``, on every rank."""
        ...


@runtime_checkable
class Task(Protocol):
    """A task plugin: data, prompts, rewards and metric.

    Items are plain dicts of task fields (e.g. ``{"puzzle": ..., "solution": ...}``).
    """

    name: str
    """Registered name, e.g. ``sudoku``."""

    def train_items(self) -> Sequence[Mapping[str, Any]]:
        """Training items; deterministic for a given task config."""
        ...

    def test_items(self) -> Sequence[Mapping[str, Any]]:
        """Held-out items, never overlapping the training items."""
        ...

    def prompt(self, item: Mapping[str, Any], tokenizer: Any) -> str:
        """The prompt text of ``item``, with the tokenizer's chat template applied when the
        task's prompt style uses it (the text is then tokenized without special tokens)."""
        ...

    def reward_components(self) -> Sequence[Any]:
        """The task's named, weighted reward components (``dmpo.tasks.base.RewardComponent``);
        the training reward is their weighted sum."""
        ...

    def extract_answer(self, completion: str) -> str | None:
        """The answer parsed from a completion (None when there is none), for audit logs."""
        ...

    def correctness(self, completion: str, item: Mapping[str, Any]) -> float:
        """Correctness of the answer in [0, 1], what the ``correct`` reward component reads
        (partial credit allowed, e.g. the fraction of Sudoku cells right)."""
        ...

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        """Evaluation score of one completion in [0, 1] (the metric averages it)."""
        ...

    def completion_prefill(self, item: Mapping[str, Any], tokenizer: Any, gen_length: int,
                           mask_id: int) -> Sequence[int] | None:
        """Token ids ``[L]`` a completion starts from, ``mask_id`` where the policy decodes
        (e.g. the given cells of a puzzle written in place), or None to decode everything."""
        ...

    def relevant_positions(self, item: Mapping[str, Any], length: int) -> Sequence[bool] | None:
        """Completion positions ``[L]`` the reward reads (for ``scoring.relevant_only``), or
        None when the reward may read any position."""
        ...

    def metric(self, completions: Sequence[str], items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Evaluation metric(s) of completions, e.g. ``{"accuracy": 0.42}``."""
        ...
