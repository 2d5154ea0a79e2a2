"""Backend-neutral contracts: what a dLLM policy, sampler, reward, weighting scheme,
objective, engine and task must provide.

They are ``typing.Protocol`` classes (structural: a plugin needs no base class, only the
methods) marked ``runtime_checkable`` so the registry can give a clear error when a
plugin's object lacks a method. Shapes use the letters of ALGORITHM.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from dmpo_core.data import LossStats, RolloutBatch, SampleOutput, WeightOutput


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

    def __call__(
        self,
        logits_fn: LogitsFn,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        *,
        mask_id: int,
        generator: torch.Generator | None = None,
    ) -> SampleOutput:
        """Complete ``prompt_ids [N, P]`` (left padded, ``prompt_mask [N, P]``).

        Returns completions ``[N, L]``, the NFE and, for samplers that know them
        exactly, per-token log-probs ``[N, L]``.
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
    """Maps rewards and log-RNDs of a rollout batch to weights, baseline and advantages."""

    @property
    def requires_current_logp(self) -> bool:
        """True when ``__call__`` needs ``log_p_current`` (evaluated at loss time)."""
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
        """``rewards [B*G]`` (NaN = missing), ``log_rnd [B*G]`` -> weights/advantages ``[B*G]`` + stats."""
        ...


@runtime_checkable
class Objective(Protocol):
    """A loss on a rollout batch, given the policy and the batch's weights."""

    def __call__(
        self,
        policy: Policy,
        batch: RolloutBatch,
        weights: WeightOutput,
        *,
        num_groups: int,
        weighting: WeightingScheme | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, LossStats]:
        """Scalar loss (with gradient) on ``batch`` (possibly a group-aligned slice of a
        larger batch of ``num_groups`` groups; slice losses add up to the full loss)."""
        ...


@runtime_checkable
class Engine(Protocol):
    """How parameters are updated: a single process now, DeepSpeed ZeRO-3 later."""

    @property
    def device(self) -> torch.device:
        """Where batches must be placed."""
        ...

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate gradients of ``loss``."""
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

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        """Evaluation score of one completion in [0, 1] (the metric averages it)."""
        ...

    def metric(self, completions: Sequence[str], items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        """Evaluation metric(s) of completions, e.g. ``{"accuracy": 0.42}``."""
        ...
