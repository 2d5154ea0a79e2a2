"""Hyperparameters of a training run, as frozen attrs configs with validation.

Defaults follow the DMPO paper's released configuration (docs/concepts.md section 7) where
it applies to any model; a built-in model or a YAML file overrides them. Build from a
dict with :func:`TrainConfig.from_dict`, which reports every problem at once.
"""

from __future__ import annotations

from typing import Any

import attrs

from dmpo_core.config import at_least, build_config, cross_checks, in_range, non_negative, one_of, positive, to_dict


@attrs.frozen(kw_only=True)
class RolloutConfig:
    """How completions are sampled (the rollout policy)."""

    sampler: str = "low-confidence"
    """Registered sampler name (``dmpo plugins --kind sampler``)."""
    prompts_per_step: int = attrs.field(default=8, validator=positive())
    """``B``: prompts per rollout batch."""
    group_size: int = attrs.field(default=16, validator=at_least(2))
    """``G``: completions per prompt (at least 2: weights compare completions of a prompt)."""
    gen_length: int = attrs.field(default=256, validator=positive())
    """``L``: completion length in tokens."""
    block_length: int = attrs.field(default=32, validator=positive())
    """Semi-autoregressive block length; must divide ``gen_length``."""
    steps: int = attrs.field(default=128, validator=positive())
    """Denoising steps for the whole completion; a multiple of the number of blocks."""
    temperature: float = attrs.field(default=0.2, validator=non_negative())
    """Sampling temperature (0 = greedy)."""
    sampler_options: dict[str, Any] = attrs.field(factory=dict)
    """Further options of the sampler, e.g. ``{remasking: random}`` or ``{threshold: 0.9}``."""
    batch_rows: int = attrs.field(default=0, validator=non_negative())
    """Rows per sampler call (0 = all ``B*G`` at once); lower it to save memory."""

    def __attrs_post_init__(self) -> None:
        ok_div = self.gen_length % self.block_length == 0
        cross_checks(
            [
                (ok_div, f"gen_length={self.gen_length}: must be a multiple of rollout.block_length={self.block_length}"),
                (
                    not ok_div or self.steps % (self.gen_length // self.block_length) == 0,
                    f"steps={self.steps}: must be a multiple of the number of blocks "
                    f"({self.gen_length // max(self.block_length, 1)})",
                ),
            ]
        )


@attrs.frozen(kw_only=True)
class ScoringConfig:
    """How log p_old(x) and log p_ref(x) are estimated: ELBO with shared masks, or exact."""

    method: str = attrs.field(default="auto", validator=one_of("auto", "elbo", "exact"))
    """``elbo``: estimate both with shared masks (any sampler). ``exact``: sum the per-token
    log-probs the sampler recorded and replay its order under the reference (random-order
    samplers: ``roar``, ``random-remask`` with ``record_logp``). ``auto``: exact when the
    sampler records them, else elbo."""

    replicates: int = attrs.field(default=4, validator=positive())
    """Masking replicates of the ELBO estimate."""
    antithetic: bool = True
    """Antithetic mask pairs (then ``replicates`` must be even)."""
    relevant_only: bool = False
    """Mask (in ELBO and loss) only the positions the task's reward reads, when the task says which."""
    truncate_at_eos: bool = False
    """Mask (in ELBO and loss) only positions up to and including the first EOS."""

    def __attrs_post_init__(self) -> None:
        cross_checks(
            [(not self.antithetic or self.replicates % 2 == 0,
              f"replicates={self.replicates}: antithetic masks come in pairs; use an even number")]
        )


@attrs.frozen(kw_only=True)
class WeightingConfig:
    """Which weighting scheme turns rewards into weights, and its options."""

    scheme: str = "dmpo"
    """Registered weighting scheme (dmpo, dmpo-mean, dmpo-none, dmpo-unbiased, or a plugin's)."""
    options: dict[str, Any] = attrs.field(factory=dict)
    """Keyword options of the scheme (for DMPO: alpha, coeff, adaptive, ess_threshold, lam); what is
    not given takes the scheme's own default (DMPO's alpha 0.04): ``dmpo plugins SCHEME`` lists them."""


@attrs.frozen(kw_only=True)
class LossConfig:
    """The objective and how each rollout batch is reused."""

    objective: str = "wdce"
    """Registered objective (wdce, ddo, or a plugin's)."""
    options: dict[str, Any] = attrs.field(factory=dict)
    """Keyword options of the objective; what is not given takes the objective's own default
    (WDCE: replicates 4, antithetic, clamped): ``dmpo plugins OBJECTIVE`` lists them."""
    num_iterations: int = attrs.field(default=8, validator=positive())
    """Gradient steps on each rollout batch (weights are held fixed across them)."""
    micro_batch_groups: int = attrs.field(default=0, validator=non_negative())
    """Groups per forward/backward (0 = all); gradients accumulate over micro-batches."""


@attrs.frozen(kw_only=True)
class OptimConfig:
    """AdamW, gradient clipping and the learning-rate schedule."""

    lr: float = attrs.field(default=1e-6, validator=in_range(0.0, 1.0, low_open=True))
    """Peak learning rate, in (0, 1] (AdamW steps move each weight by about ``lr``; 1e-6 to 1e-3 is usual)."""
    beta1: float = attrs.field(default=0.9, validator=in_range(0.0, 1.0))
    """AdamW's decay rate of the gradient's running mean, in [0, 1]."""
    beta2: float = attrs.field(default=0.99, validator=in_range(0.0, 1.0))
    """AdamW's decay rate of the squared gradient's running mean, in [0, 1]."""
    weight_decay: float = attrs.field(default=0.1, validator=non_negative())
    """AdamW's decoupled weight decay (0 = none)."""
    grad_clip: float = attrs.field(default=0.2, validator=non_negative())
    """Max gradient norm (0 = no clipping)."""
    warmup_steps: int = attrs.field(default=0, validator=non_negative())
    """Optimizer steps of linear warm-up from 0 to ``lr``."""
    schedule: str = attrs.field(default="constant", validator=one_of("constant", "linear", "cosine"))
    """Decay after warm-up."""


PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
"""The compute precisions a stage may run in (``precision.*``)."""


@attrs.frozen(kw_only=True)
class PrecisionConfig:
    """Compute precision of each stage of a step: ``float32``, or ``bfloat16`` autocast.

    ``bfloat16`` runs the stage's forwards under ``torch.autocast`` (on the policy's device,
    CPU or GPU): matrix products in bf16, reductions and the weights themselves in float32,
    so the optimizer keeps float32 master weights and float32 state. This differs from
    ``backend_options.dtype=bfloat16``, which stores the weights (and AdamW's) in bf16.
    Per stage, because the speed-up depends on the model: on a small model autocast's casts
    can cost more than they save (``bench/precision.py`` measures both, docs/precision.md).
    ``float32`` (the default) runs no autocast at all: results are those of a run without
    this section."""

    rollout: str = attrs.field(default="float32", validator=one_of(*PRECISIONS))
    """The sampler's forwards of the training rollouts."""
    logp: str = attrs.field(default="float32", validator=one_of(*PRECISIONS))
    """The log-likelihood estimates of the rollouts under the rollout and reference policies
    (ELBO or exact replay) and the objective's own rollout-time forwards (``prepare``)."""
    loss: str = attrs.field(default="float32", validator=one_of(*PRECISIONS))
    """The objective's forward at each gradient step (the backward follows the forward's dtypes)."""
    evaluation: str = attrs.field(default="float32", validator=one_of(*PRECISIONS))
    """The held-out evaluations' decodes (kept apart from ``rollout`` so that accuracy can be
    measured in float32 while rollouts run in bf16)."""


def _layouts_valid(_inst: Any, _attr: attrs.Attribute, value: list[str]) -> None:
    """``checkpoint_layouts``: a non-empty list of distinct names among ``original`` and ``hf``."""
    if not value or len(set(value)) != len(value) or not set(value) <= {"original", "hf"}:
        raise ValueError("list one or both of original, hf (each once)")


@attrs.frozen(kw_only=True)
class TrainConfig:
    """A whole training run."""

    backend: str = "llada"
    """Registered backend (``dmpo plugins --kind backend``)."""
    model: str = "builtin:sudoku-tiny"
    """Checkpoint folder, hub id, or ``builtin:NAME``."""
    backend_options: dict[str, Any] = attrs.field(factory=dict)
    """Keyword options of the backend (dtype, device, lora ...)."""
    task: str = "sudoku"
    """Registered task."""
    task_options: dict[str, Any] = attrs.field(factory=dict)
    """Keyword options of the task."""
    engine: str = "local"
    """Registered engine (``local``: one process, CPU or one GPU)."""
    engine_options: dict[str, Any] = attrs.field(factory=dict)
    """Keyword options of the engine, checked against its options class (``dmpo plugins ENGINE``)."""
    seed: int = attrs.field(default=0, validator=in_range(0, 2**63 - 1))
    """Seed of every random draw (data order, sampling, masks), in [0, 2^63 - 1]; a run is reproducible on CPU."""
    total_steps: int = attrs.field(default=100, validator=positive())
    """Rollout batches to train on."""
    ref_sync_every: int = attrs.field(default=0, validator=non_negative())
    """Copy the policy into the reference every K steps (0 = keep the initial reference)."""
    eval_every: int = attrs.field(default=0, validator=non_negative())
    """Evaluate on held-out items every K steps (0 = only at the start and the end)."""
    eval_size: int = attrs.field(default=64, validator=non_negative())
    """Held-out items per evaluation (0 = skip evaluation)."""
    eval_batch_size: int = attrs.field(default=64, validator=positive())
    """Held-out items decoded per sampler call (lower it to save memory)."""
    eval_sampler: str | None = None
    """Registered sampler of the evaluations, always greedy (None = ``rollout.sampler``). Lets a run
    roll out with a random-order sampler (exact likelihoods) yet evaluate with the decoder it deploys."""
    eval_sampler_options: dict[str, Any] | None = None
    """Options of ``eval_sampler`` (None = ``rollout.sampler_options`` when ``eval_sampler`` is None,
    else none); ``gen_length``, ``block_length`` and ``steps`` come from ``rollout``."""
    save_every: int = attrs.field(default=50, validator=non_negative())
    """Checkpoint every K steps (0 = only at the end)."""
    keep_checkpoints: int = attrs.field(default=2, validator=positive())
    """Most recent checkpoints kept on disk."""
    checkpoint_layouts: list[str] = attrs.field(
        factory=lambda: ["original"], converter=list,  # a list: config.json holds it as one (--resume compares)
        validator=_layouts_valid)
    """Layouts of the policy in each checkpoint: ``original`` (``policy/``, the family's published
    layout) and/or ``hf`` (``policy-hf/``, the stock transformers layout that ``from_pretrained``
    loads without dmpo). A LoRA run also writes ``adapter/`` (a peft adapter). ``dmpo export``
    converts a saved policy later (docs/checkpoints.md)."""
    max_bad_steps: int = attrs.field(default=5, validator=positive())
    """Stop after this many bad steps in a row: a non-finite loss or gradient norm (the update is skipped)."""
    max_minutes: float | None = attrs.field(default=None, validator=attrs.validators.optional(positive()))
    """Wall-clock budget of one invocation, in minutes (None = none). When the next step plus a
    final evaluation would not fit, the run stops early, evaluates, checkpoints and says so;
    ``--resume`` continues it toward ``total_steps``. The steps it does take are the same as
    without a budget, so only where it stops depends on the machine's speed."""
    rollout: RolloutConfig = attrs.field(factory=RolloutConfig)
    """How completions are sampled."""
    scoring: ScoringConfig = attrs.field(factory=ScoringConfig)
    """How the log-likelihoods of completions are estimated."""
    weighting: WeightingConfig = attrs.field(factory=WeightingConfig)
    """How rewards become weights and advantages."""
    loss: LossConfig = attrs.field(factory=LossConfig)
    """The objective and the reuse of each rollout batch."""
    optim: OptimConfig = attrs.field(factory=OptimConfig)
    """The optimizer and its schedule."""
    precision: PrecisionConfig = attrs.field(factory=PrecisionConfig)
    """Compute precision (float32 or bf16 autocast) of rollout, log-probs, loss and evaluation."""

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, source: str = "config") -> TrainConfig:
        """Build from a nested dict (YAML), reporting all problems at once."""
        return build_config(cls, data, source=source)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for the run folder's config file)."""
        return to_dict(self)
