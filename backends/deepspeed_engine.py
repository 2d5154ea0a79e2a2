"""The ``deepspeed`` engine: several ranks train one policy under DeepSpeed ZeRO stage 2 or 3.

The only module that imports deepspeed, and only when an engine is built: ``dmpo plugins``
and ``dmpo train --help`` work without it installed; building the engine without it is one
line naming ``pip install 'dllm-dmpo[deepspeed]'``.

What it does, and why:

* Ranks come from the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, which
  ``torchrun`` single- and multi-node and the ``deepspeed`` launcher all set); one process
  without a launcher is world size 1. The process group is nccl on CUDA, gloo on CPU (with
  ``DS_ACCELERATOR=cpu``, which DeepSpeed reads to run on CPU).
* The DeepSpeed config is generated from the run's own keys (:func:`deepspeed_config`):
  AdamW with ``optim.lr``/betas/weight decay, clipping at ``optim.grad_clip``, the warm-up
  schedule of the local engine (:func:`~dmpo.backends.engines.lr_factor`) as a client
  scheduler, and ``managed_gradient_accumulation: false``: the loop calls ``backward`` once
  per micro-batch, a number DeepSpeed cannot know, then ``step`` once, and in that mode every
  ``step()`` is the accumulation boundary. Gradients are averaged over ranks (DeepSpeed's
  data-parallel mean), which is what the loop's per-rank loss normalisation expects.
* ZeRO-3 partitions every weight; :meth:`DeepSpeedEngine.full_parameters` gathers them whole
  for generation and removes DeepSpeed's module hooks meanwhile, so a forward needs no
  collective and a sampler whose number of forwards depends on the data cannot hang ranks.
* The reference: with LoRA it is the adapter-disabled base, and the adapter weights stay
  whole on every rank (ZeRO-3's persistence threshold is raised to the largest adapter
  tensor, and the adapter is pinned after every step, since DeepSpeed still releases a
  persistent tensor after a forward that records its prefetch trace), so the policy's own copy
  of the adapter (``sync_reference``) and its swap for reference forwards read and write whole
  tensors. Without LoRA the frozen copy is wrapped
  by DeepSpeed without an optimizer (ZeRO-3: sharded like the policy; ZeRO-2: whole on
  each rank), and :meth:`DeepSpeedEngine.sync_reference` copies it tensor by tensor inside
  gathers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch

from dmpo.backends.process_group import ProcessGroupRanks, rank_range
from dmpo_core.config import deep_merge
from dmpo_core.errors import ConfigError, InvalidArgumentError

INSTALL_HINT = "pip install 'dllm-dmpo[deepspeed]'"
ZERO_STAGES = (2, 3)
OFFLOAD_DEVICES = ("none", "cpu")
DEFAULT_PERSISTENCE = 100_000
"""DeepSpeed's own ``stage3_param_persistence_threshold``: tensors of at most this many elements
stay whole on every rank under ZeRO-3 (norms, biases)."""
ENGINE_FOLDER = "engine"
"""Where :meth:`DeepSpeedEngine.save_state` writes DeepSpeed's sharded state in a checkpoint folder."""
OWNED_KEYS = ("scheduler", "train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
              "managed_gradient_accumulation")
"""Keys of a user's DeepSpeed JSON that the engine sets itself (the loop owns the step boundary
and the schedule); a ``config_file`` holding one is refused with the option to use instead."""
OWNED_FIX = {"scheduler": "use optim.warmup_steps and optim.schedule",
             "zero_optimization.stage": "use engine_options.zero_stage"}
ZERO_FIX = "the engine sets it (one step() per update; see docs/distributed.md)"


# ---------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------


def _one_of(choices: tuple[Any, ...]) -> Any:
    def check(_inst: Any, _attr: attrs.Attribute, value: Any) -> None:
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            raise ValueError(f"use one of {', '.join(map(str, choices))}")

    return check


def _threshold(_inst: Any, _attr: attrs.Attribute, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError("use a whole number of elements >= 0, or leave it unset for DeepSpeed's 100000")


def read_config_file(path: str) -> dict[str, Any]:
    """A user's DeepSpeed JSON as a dict.

    Raises:
        InvalidArgumentError: missing, unreadable, not JSON, not an object, or setting a key
            the engine owns (:data:`OWNED_KEYS`, ``zero_optimization.stage``).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise InvalidArgumentError("config_file", path, "no such file; pass a DeepSpeed JSON config")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InvalidArgumentError("config_file", path, f"not a readable JSON file ({first})") from err
    if not isinstance(data, dict):
        raise InvalidArgumentError("config_file", path, "must hold a JSON object of DeepSpeed keys")
    owned = [k for k in OWNED_KEYS if k in data]
    if isinstance(data.get("zero_optimization"), dict) and "stage" in data["zero_optimization"]:
        owned.append("zero_optimization.stage")
    if owned:
        key = owned[0]
        raise InvalidArgumentError("config_file", path, f"sets {key}, which {OWNED_FIX.get(key, ZERO_FIX)}: "
                                   "remove it from the file")
    return data


@attrs.frozen(kw_only=True)
class DeepSpeedOptions:
    """``engine_options`` of the ``deepspeed`` engine (optimizer settings are ``optim.*``).

    Every field is checked before any model loads; the file of ``config_file`` is read then too.
    """

    zero_stage: int = attrs.field(default=3, validator=_one_of(ZERO_STAGES))
    """ZeRO stage: 3 partitions weights, gradients and optimizer state over the ranks; 2 keeps
    the weights whole on every rank and partitions gradients and optimizer state."""
    bf16: bool | None = attrs.field(default=None, validator=attrs.validators.optional(
        attrs.validators.instance_of(bool)))
    """Train in bfloat16 with fp32 master weights in the optimizer; unset: on when the policy
    was loaded in bfloat16 (``backend_options.dtype``), off otherwise."""
    offload_optimizer: str = attrs.field(default="none", validator=_one_of(OFFLOAD_DEVICES))
    """``cpu``: keep the optimizer state (fp32 master weights, AdamW moments) in CPU memory and
    step there (DeepSpeed's CPU Adam); ``none``: on the device."""
    offload_parameters: str = attrs.field(default="none", validator=_one_of(OFFLOAD_DEVICES))
    """``cpu``: keep the partitioned weights in CPU memory between uses (ZeRO-3 only)."""
    persistence_threshold: int | None = attrs.field(default=None, validator=_threshold)
    """ZeRO-3: tensors of at most this many elements stay whole on every rank (fewer, smaller
    gathers); unset: DeepSpeed's 100000. LoRA adapter tensors always stay whole."""
    config_file: str | None = None
    """A DeepSpeed JSON file merged over the generated config (its values win; a changed
    learning rate, betas, weight decay or clipping is said once). It may not set the keys the
    engine owns: the scheduler, batch sizes, accumulation and the ZeRO stage."""

    def __attrs_post_init__(self) -> None:
        problems = []
        if self.offload_parameters != "none" and self.zero_stage != 3:
            problems.append(f"offload_parameters={self.offload_parameters!r}: only ZeRO-3 partitions weights; "
                            "also set zero_stage=3, or offload_parameters='none'")
        if self.persistence_threshold is not None and self.zero_stage != 3:
            problems.append(f"persistence_threshold={self.persistence_threshold!r}: a ZeRO-3 setting; also set "
                            "zero_stage=3, or leave it unset")
        if self.config_file is not None:
            try:
                read_config_file(self.config_file)
            except InvalidArgumentError as err:
                problems.append(str(err))
        if problems:
            raise ConfigError(problems, source="deepspeed engine options")


# ---------------------------------------------------------------------------------------
# The generated config
# ---------------------------------------------------------------------------------------


def deepspeed_config(
    options: DeepSpeedOptions,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    grad_clip: float,
    world_size: int,
    bf16: bool,
    on_cpu: bool,
    adapter_numel: int = 0,
    user: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The DeepSpeed config of a run, and a notice for each of our keys ``user`` overrides.

    ``adapter_numel`` is the largest LoRA adapter tensor (0 without LoRA): ZeRO-3 keeps
    tensors up to that size whole, so the adapter is never partitioned. On CPU without
    optimizer offload the optimizer is ``torch.optim.AdamW`` (DeepSpeed's fused kernel needs
    a GPU); with offload it is DeepSpeed's CPU Adam in AdamW mode.
    """
    zero: dict[str, Any] = {"stage": options.zero_stage, "overlap_comm": False, "contiguous_gradients": True}
    if options.zero_stage == 3:
        base = DEFAULT_PERSISTENCE if options.persistence_threshold is None else options.persistence_threshold
        zero["stage3_param_persistence_threshold"] = max(base, adapter_numel)
        zero["stage3_gather_16bit_weights_on_model_save"] = False
    if options.offload_optimizer != "none":
        zero["offload_optimizer"] = {"device": options.offload_optimizer, "pin_memory": not on_cpu}
    if options.offload_parameters != "none":
        zero["offload_param"] = {"device": options.offload_parameters, "pin_memory": not on_cpu}
    optimizer_params: dict[str, Any] = {"lr": lr, "betas": [beta1, beta2], "weight_decay": weight_decay, "eps": 1e-8}
    if on_cpu and options.offload_optimizer == "none":
        optimizer_params["torch_adam"] = True
    generated: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": 1,
        "train_batch_size": world_size,
        "managed_gradient_accumulation": False,  # every step() is the boundary: the loop owns it
        "gradient_clipping": float(grad_clip) if grad_clip > 0 else 0.0,
        "optimizer": {"type": "AdamW", "params": optimizer_params},
        "bf16": {"enabled": bool(bf16)},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**62,  # DeepSpeed's own progress lines: never
        "wall_clock_breakdown": False,
    }
    if not user:
        return generated, []
    merged = deep_merge(generated, user)
    ours = {"optimizer.params.lr": "optim.lr", "optimizer.params.betas": "optim.beta1/beta2",
            "optimizer.params.weight_decay": "optim.weight_decay", "gradient_clipping": "optim.grad_clip",
            "bf16.enabled": "engine_options.bf16"}
    notices = []
    for dotted, source in ours.items():
        before, after = _dig(generated, dotted), _dig(merged, dotted)
        if before != after:
            notices.append(f"config_file sets {dotted}={after!r}, which replaces {before!r} from {source}")
    return merged, notices


def _dig(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


# ---------------------------------------------------------------------------------------
# Ranks
# ---------------------------------------------------------------------------------------


shard_range = rank_range
"""The contiguous share of ``range(n)`` owned by ``rank`` (:func:`dmpo.backends.process_group.rank_range`)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def import_deepspeed() -> Any:
    """``deepspeed``, imported for the accelerator this process has.

    Without CUDA, ``DS_ACCELERATOR=cpu`` is set (DeepSpeed reads it at its first accelerator
    query); a value naming another accelerator there is refused.

    Raises:
        InvalidArgumentError: deepspeed is not installed, or DS_ACCELERATOR contradicts the machine.
    """
    if not torch.cuda.is_available():
        chosen = os.environ.setdefault("DS_ACCELERATOR", "cpu")
        if chosen != "cpu":
            raise InvalidArgumentError("DS_ACCELERATOR", chosen, "this machine has no CUDA device; unset it or "
                                       "set DS_ACCELERATOR=cpu")
    try:
        import deepspeed
    except ImportError as err:
        raise InvalidArgumentError("engine", "deepspeed", f"deepspeed is not installed: {INSTALL_HINT}") from err
    from deepspeed.runtime import constants

    if not hasattr(constants, "MANAGED_GRADIENT_ACCUMULATION"):
        raise InvalidArgumentError("engine", "deepspeed", f"deepspeed {deepspeed.__version__} lacks "
                                   "managed_gradient_accumulation (one step() per update); upgrade: "
                                   f"pip install -U 'deepspeed>=0.19.8'")
    return deepspeed


def init_process_group(deepspeed: Any) -> tuple[int, int, int]:
    """Join (or start) the process group from the launcher's environment; ``(rank, world_size,
    local_rank)``. One process without a launcher gets a group of one on a free local port."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo", verbose=False)
    return torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank


# ---------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------


class DeepSpeedEngine(ProcessGroupRanks):
    """Satisfies :class:`dmpo_core.contracts.Engine` with DeepSpeed ZeRO-2/3 over every rank.

    ``stats`` holds seconds and counts of what the engine itself communicates (the gathers of
    :meth:`full_parameters`, the reference sync, the optimizer step), for benchmarks.
    """

    rng_mode = "keyed"

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
        zero_stage: int = 3,
        bf16: bool | None = None,
        offload_optimizer: str = "none",
        offload_parameters: str = "none",
        persistence_threshold: int | None = None,
        config_file: str | None = None,
    ) -> None:
        from dmpo.backends.engines import lr_factor

        options = DeepSpeedOptions(zero_stage=zero_stage, bf16=bf16, offload_optimizer=offload_optimizer,
                                   offload_parameters=offload_parameters,
                                   persistence_threshold=persistence_threshold, config_file=config_file)
        ds = import_deepspeed()
        self._ds_module = ds
        self._rank, self._world, local_rank = init_process_group(ds)
        self._device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
        self.stage = options.zero_stage
        self._inside = False  # within full_parameters (a nested one gathers nothing more)
        self.stats: dict[str, float] = {"gather_seconds": 0.0, "gathers": 0, "sync_seconds": 0.0,
                                        "step_seconds": 0.0, "steps": 0}
        trainable = [p for p in policy.trainable_parameters() if p.requires_grad]
        if not trainable:
            raise InvalidArgumentError("policy", type(policy).__name__, "it has no trainable parameters")
        lora = getattr(policy, "lora", None) is not None
        use_bf16 = bool(options.bf16) if options.bf16 is not None else trainable[0].dtype == torch.bfloat16
        user = read_config_file(options.config_file) if options.config_file else None
        self.config, notices = deepspeed_config(
            options, lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay, grad_clip=grad_clip,
            world_size=self._world, bf16=use_bf16, on_cpu=self._device.type == "cpu",
            adapter_numel=max(p.numel() for p in trainable) if lora else 0, user=user,
        )
        if self._rank == 0:
            for notice in notices:
                warnings.warn(notice, stacklevel=2)

        def scheduler(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda s: lr_factor(s, warmup_steps=warmup_steps, total_steps=total_steps,
                                               schedule=schedule))

        if lora and self._world > 1:  # a fresh adapter is drawn from each rank's own RNG: take rank 0's
            with torch.no_grad():
                for p in trainable:
                    torch.distributed.broadcast(p.data, src=0)
        self.ds, _, _, self.scheduler = ds.initialize(model=policy.model, model_parameters=trainable,
                                                      config=self.config, lr_scheduler=scheduler,
                                                      dist_init_required=False)
        self._pinned = trainable if lora and self.stage == 3 else []  # the adapter, whole on every rank
        _pin(self._pinned)
        self.reference_ds = None
        reference = getattr(policy, "_reference_model", None)
        if reference is not None:
            if self.stage == 3:  # sharded like the policy, no optimizer
                ref_config = {k: v for k, v in self.config.items() if k not in ("optimizer", "gradient_clipping")}
                ref_config["zero_optimization"] = {k: v for k, v in self.config["zero_optimization"].items()
                                                   if k != "offload_optimizer"}
                self.reference_ds, *_ = ds.initialize(model=reference, config=ref_config, dist_init_required=False)
                self.reference_ds.eval()
            else:
                reference.to(device=self._device, dtype=torch.bfloat16 if use_bf16 else None)

    # -- contract: updates ---------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """This rank's device (``cuda:LOCAL_RANK``, or the CPU)."""
        return self._device

    @property
    def lr(self) -> float:
        """Learning rate the next optimizer step applies."""
        return float(self.scheduler.get_last_lr()[0])

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradients of ``loss`` (this rank's share of the step's loss).

        The policy's forwards call the module, not DeepSpeed's ``engine.forward``, so what that
        forward would have prepared for the backward is done here: closing the previous
        micro-batch (without it ZeRO-3 overwrites accumulated gradients instead of adding)
        and entering the backward context.
        """
        self.ds.optimizer.clear_backward_seen_flag()
        self.ds._backward_prologue()
        self.ds.backward(loss, scale_wrt_gas=False)

    def step(self) -> float:
        """Reduce the accumulated gradients over ranks, clip, step AdamW and the schedule; return
        the global gradient norm (before clipping). DeepSpeed skips an update whose norm is not
        finite (and the schedule with it); the norm is then returned as infinite or NaN."""
        t0 = time.perf_counter()
        self.ds.step()
        _pin(self._pinned)  # the step partitioned every weight
        norm = self.ds.get_global_grad_norm()
        norm = math.nan if norm is None else float(norm)
        if not self.ds.was_step_applied() and math.isfinite(norm):
            norm = math.inf
        self.stats["step_seconds"] += time.perf_counter() - t0
        self.stats["steps"] += 1
        return norm

    def zero_grad(self) -> None:
        """Drop the gradients accumulated since the last step, reduced ones included.

        ZeRO-3's ``zero_grad`` restarts its micro-step count, so the next backward overwrites the
        reduced gradient shards. ZeRO-2's keeps the shards it has accumulated since the step
        (they would be added to the next step's gradients): they are dropped here, with the
        micro-step count, as its ``step`` does."""
        optimizer = self.ds.optimizer
        optimizer.zero_grad(set_to_none=True)
        if self.stage == 2:
            from deepspeed.runtime.zero.stage_1_and_2 import INITIAL_MICRO_STEP_ID

            for i in range(len(optimizer.bit16_groups)):
                optimizer.all_grad_tensors[i] = None  # accumulated reduced gradients (fp32 training)
                optimizer.averaged_gradients[i] = None  # the compact fp32 buffer (bf16 training)
            getattr(optimizer, "accumulated_grads_in_cpu", {}).clear()  # with the optimizer offloaded
            optimizer.micro_step_id = INITIAL_MICRO_STEP_ID

    def state_dict(self) -> dict[str, Any]:
        """The small part: the schedule's step count (the rest is :meth:`save_state`'s files)."""
        return {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.scheduler.load_state_dict(state["scheduler"])

    # -- contract: ranks -----------------------------------------------------------------------

    # -- contract: whole parameters --------------------------------------------------------------

    @contextlib.contextmanager
    def full_parameters(self, policy: Any, *, writable: bool = False) -> Iterator[None]:
        """Inside, ``policy``'s weights and its reference's are whole on this rank and a forward
        runs no collective (ZeRO-3: one gather on entry, DeepSpeed's module hooks removed until
        exit; ZeRO-2: the weights are whole already).

        With ``writable``, weights written inside are kept: every rank must write the same
        values (rank 0's are the ones re-partitioned), and the optimizer's fp32 master weights
        are refreshed from them on exit, so the next step continues from what was written.
        Nested in another ``full_parameters`` it gathers nothing more (then only the outermost
        one's ``writable`` counts).
        """
        if self.stage != 3 or self._inside:  # whole already (ZeRO-2, or an enclosing gather)
            yield
            if writable and not self._inside:
                self.ds.optimizer.refresh_fp32_params()
            return
        engines = [e for e in (self.ds, self.reference_ds) if e is not None]
        params = [p for e in engines for p in e.module.parameters()]
        # Persistent tensors (small ones, the LoRA adapter) stay whole outside forwards once
        # fetched: gather those not fetched yet, and never partition them on exit (a gather's
        # exit would); with writable they are re-partitioned so the write reaches their
        # shard, then fetched again.
        persistent = [p for p in params if getattr(p, "ds_persist", False)]
        if writable:
            _unpin(self._pinned)  # re-partitioned on exit, pinned again after
        t0 = time.perf_counter()
        _fetch(persistent)
        gathered = params if writable else [p for p in params if not getattr(p, "ds_persist", False)]
        with self._ds_module.zero.GatheredParameters(gathered, modifier_rank=0 if writable else None):
            self.stats["gather_seconds"] += time.perf_counter() - t0
            self.stats["gathers"] += 1
            offloads = [_offload_of(e) for e in engines]
            starts = [_remove_hooks(offload) for offload in offloads]
            self._inside = True
            try:
                yield
            finally:
                self._inside = False
                for offload, start in zip(offloads, starts, strict=True):
                    _restore_hooks(offload, start)
        if writable:
            _fetch(persistent)
            _pin(self._pinned)
            self.ds.optimizer.refresh_fp32_params()

    @torch.no_grad()
    def sync_reference(self, policy: Any) -> None:
        """Make the reference equal to the current policy.

        LoRA (adapter tensors whole on every rank) and ZeRO-2 (whole weights): the policy's own
        ``sync_reference``. ZeRO-3 full fine-tuning: tensor by tensor, the current weight and
        the reference's are gathered, copied, and the reference re-partitioned.
        """
        t0 = time.perf_counter()
        if self.reference_ds is None:
            _pin(self._pinned)  # LoRA under ZeRO-3: the adapter is whole (and already pinned)
            policy.sync_reference()
        else:
            gathered = self._ds_module.zero.GatheredParameters
            pairs = zip(self.reference_ds.module.parameters(), self.ds.module.parameters(), strict=True)
            for ref, cur in pairs:
                with gathered([cur]), gathered([ref], modifier_rank=0):
                    ref.data.copy_(cur.data)
        self.stats["sync_seconds"] += time.perf_counter() - t0

    # -- contract: checkpoints ---------------------------------------------------------------------

    def save_state(self, folder: Path) -> None:
        """Write DeepSpeed's sharded state (fp32 master weights, AdamW moments, schedule) under
        ``folder/engine``; every rank writes its own shard."""
        self.ds.save_checkpoint(str(Path(folder) / ENGINE_FOLDER), tag="state", save_latest=False)

    def load_state(self, folder: Path) -> None:
        """Restore :meth:`save_state`'s files from ``folder`` (weights, optimizer, schedule), on every rank."""
        _unpin(self._pinned)  # loading re-partitions every weight
        path, _ = self.ds.load_checkpoint(str(Path(folder) / ENGINE_FOLDER), tag="state",
                                          load_optimizer_states=True, load_lr_scheduler_states=True)
        if path is None:
            from dmpo_core.errors import CheckpointError

            raise CheckpointError(str(Path(folder) / ENGINE_FOLDER), "holds no DeepSpeed state of this run")
        _pin(self._pinned)


def _fetch(params: list[torch.nn.Parameter]) -> None:
    """All-gather the ZeRO-3 ``params`` that are partitioned now (every rank passes the same list)."""
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    missing = [p for p in params if p.ds_status == ZeroParamStatus.NOT_AVAILABLE]  # the same on every rank
    if missing:
        missing[0].all_gather(param_list=missing)


PIN = -1
"""A module id no module has: while a ZeRO-3 parameter lists it among its active modules,
DeepSpeed's hooks never release (partition) it after a forward."""


def _pin(params: list[torch.nn.Parameter]) -> None:
    """Make ``params`` whole on this rank and keep them whole until the next optimizer step
    partitions everything (collective: every rank passes the same list).

    What keeps the LoRA adapter whole: a persistent ZeRO-3 tensor alone is still released after
    a forward that records DeepSpeed's prefetch trace (the first after hooks are registered)."""
    _fetch(params)
    for p in params:
        p.ds_active_sub_modules.add(PIN)


def _unpin(params: list[torch.nn.Parameter]) -> None:
    """Undo :func:`_pin`, before something partitions ``params`` (a write, a checkpoint load)."""
    for p in params:
        p.ds_active_sub_modules.discard(PIN)


def _offload_of(engine: Any) -> Any:
    """The object holding a ZeRO-3 engine's module hooks (the optimizer's parameter offload;
    an engine without an optimizer holds it as its ``optimizer``)."""
    optimizer = engine.optimizer
    return getattr(optimizer, "parameter_offload", None) or optimizer


def _remove_hooks(offload: Any) -> Any:
    """Remove the hooks ZeRO-3 runs around forwards; return the root's start-of-forward hook.

    The per-module hooks fetch and release partitioned weights; the root's start-of-forward
    hook resets the prefetch trace, which checks with a collective that every rank is at the
    same point. Left in place, either makes a data-dependent number of forwards hang.
    """
    for hook in [*offload.forward_hooks, *offload.backward_hooks]:
        hook.remove()
    offload.forward_hooks, offload.backward_hooks = [], []
    handle = getattr(offload, "fwd_pre_hook", None)
    start = offload.module._forward_pre_hooks.get(handle.id) if handle is not None else None
    if handle is not None:
        handle.remove()
    return start


def _restore_hooks(offload: Any, start: Any) -> None:
    """Register again what :func:`_remove_hooks` removed."""
    if start is not None:
        offload.fwd_pre_hook = offload.module.register_forward_pre_hook(start)
    offload._register_deepspeed_module(offload.module)
