"""Execution engines: how parameter updates are applied.

``local``: one process, CPU or one GPU. AdamW on the policy's trainable parameters,
gradient-norm clipping, linear warm-up then constant/linear/cosine decay. Gradient
accumulation is the caller's: ``backward`` adds up, ``step`` applies once.

``deepspeed``: several ranks under DeepSpeed ZeRO-3 or ZeRO-2
(:mod:`dmpo.backends.deepspeed_engine`, imported when the engine is built).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import torch

from dmpo.backends.deepspeed_engine import DeepSpeedOptions
from dmpo_core.engine_base import RNG_MODES, SingleProcess
from dmpo_core.hookspecs import hookimpl


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based)."""
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant" or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class LocalEngine(SingleProcess):
    """Single-process engine (satisfies :class:`dmpo_core.contracts.Engine`): the world-size-1
    case of the contract, whose rank members come from :class:`~dmpo_core.engine_base.SingleProcess`."""

    def __init__(
        self,
        policy: Any,
        *,
        lr: float = 1e-6,
        beta1: float = 0.9,
        beta2: float = 0.99,
        weight_decay: float = 0.1,
        grad_clip: float = 0.2,
        warmup_steps: int = 0,
        schedule: str = "constant",
        total_steps: int = 1,
        rng: str = "sequential",
    ) -> None:
        self.rng_mode = rng
        self.params = [p for p in policy.trainable_parameters() if p.requires_grad]
        if not self.params:
            from dmpo_core.errors import InvalidArgumentError

            raise InvalidArgumentError("policy", type(policy).__name__, "it has no trainable parameters")
        self._device = policy.device
        self.grad_clip = grad_clip
        self.optimizer = torch.optim.AdamW(
            self.params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay,
            foreach=self._device.type != "cpu" or None,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, warmup_steps=warmup_steps, total_steps=total_steps, schedule=schedule),
        )

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def lr(self) -> float:
        """Learning rate of the next step."""
        return float(self.optimizer.param_groups[0]["lr"])

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> float:
        max_norm = self.grad_clip if self.grad_clip > 0 else float("inf")
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, max_norm))
        if math.isfinite(norm):
            self.optimizer.step()
            self.scheduler.step()
        self.zero_grad()
        return norm

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


@attrs.frozen(kw_only=True)
class LocalEngineOptions:
    """``engine_options`` of the ``local`` engine (optimizer settings are ``optim.*``)."""

    rng: str = attrs.field(default="sequential", validator=attrs.validators.in_(RNG_MODES))
    """``sequential`` (one generator threads each step; the demo's figures) or ``keyed`` (each
    group's draws keyed by seed, step and group: the numbers a multi-rank run gives)."""


@hookimpl
def register_engines(register):
    register("local", LocalEngine, options=LocalEngineOptions, help="one process, CPU or one GPU: AdamW, clipping, warm-up schedule")
    from dmpo.backends.ddp_engine import DataParallelEngine, DataParallelOptions

    register("ddp", DataParallelEngine, options=DataParallelOptions,
             help="data parallel under torchrun: whole weights per rank, gradients averaged (gloo on CPU, nccl on GPU)")
    register("deepspeed", deepspeed_engine, options=DeepSpeedOptions,
             help="several ranks (torchrun, deepspeed launcher): DeepSpeed ZeRO-3 or ZeRO-2, optional CPU offload")


def deepspeed_engine(policy: Any, **options: Any) -> Any:
    """Build the ``deepspeed`` engine (:mod:`dmpo.backends.deepspeed_engine`; deepspeed is
    imported only here, so listing plugins needs no deepspeed installed)."""
    from dmpo.backends.deepspeed_engine import DeepSpeedEngine

    return DeepSpeedEngine(policy, **options)
