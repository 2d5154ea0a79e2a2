"""A dLLM policy run by a stock transformers model with bidirectional attention.

Both built-in backends (``llada``, ``dream``) load their checkpoints into a stock
``LlamaForCausalLM``/``Qwen2ForCausalLM`` built with ``is_causal=False``, without
``trust_remote_code``. This module and :mod:`dmpo.backends.hf_checkpoint` are
family-neutral: the per-family differences (config and tensor names, the logit shift of
Dream) come from a :class:`~dmpo.backends.family.Family`, defined in the family's own
module (:mod:`dmpo.backends.llada`, :mod:`dmpo.backends.dream`). The backend options of
every family are written once, as :class:`HFBackendOptions`. Importing this module does
not import transformers (plugins register cheaply); loading does.

Differences from the original remote code, on purpose:

* the attention mask is honoured: left padding is neither attended nor counted in the
  position ids (``cumsum(attention_mask) - 1``), so a left-padded row gives the logits it
  gives alone. The original LLaDA code ignores the mask (LLaDA issues 89/90), so on
  padded batches its logits differ from ours; unpadded batches agree.
* Dream's logits are shifted inside :meth:`HFPolicy.logits`, so callers always see
  "logits at i predict token i"; a row's first real token after left padding keeps its
  own logits (as position 0 does), where the original ``cat`` shift would give it the
  padding's (:func:`shift_logits`).

Reference policy: without LoRA it is a frozen deep copy of the model; with LoRA it is the
base model with the adapter disabled (no extra memory). ``sync_reference()`` with LoRA
keeps a frozen COPY of the adapter weights (small next to the base) and evaluates the
reference with that copy swapped in; it does not merge the adapter into the base, because
merging into bfloat16 base weights would round small updates away (the policy after a
sync would no longer equal the policy before it).
"""

from __future__ import annotations

import contextlib
import copy
import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import torch
from dmpo.backends.family import ALL_PROJECTIONS, FORMATS, Family
from dmpo.backends.kv_cache import PolicyLogits
from dmpo.backends.peft_adapter import load_adapter, save_adapter
from dmpo.backends.hf_checkpoint import (
    SpecialIds,
    check_tensors,
    expected_shapes,
    export_checkpoint,
    load_tokenizer,
    read_config,
    resolve_model_folder,
    resolve_special_ids,
    scan_weights,
)

from dmpo_core.config import build_config
from dmpo_core.errors import CheckpointError, ConfigError, InvalidArgumentError

DTYPES: Mapping[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flex_attention")
"""Attention kernels that honour ``is_causal=False`` in transformers 5 (flash-attention 2
reads the module's causal flag instead, so it would silently run causal attention)."""
LORA_PRESETS = ("papers", "all")
ADAPTER_FORMAT = "adapter"
"""The ``save`` format that writes the LoRA adapter alone (peft's layout)."""


# ---------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class LoraSettings:
    """LoRA adapter settings (defaults: the DMPO paper's r 128, alpha 64, dropout 0.05)."""

    preset: str = "papers"
    """``papers``: the modules the published recipes adapted (LLaDA: q, k, v, up; Dream:
    every projection, since its names are the ones the recipes list); ``all``: every
    projection (q, k, v, o, gate, up, down)."""
    r: int = 128
    """Adapter rank."""
    alpha: float = 64.0
    """Scale numerator (the update is scaled by ``alpha / r``)."""
    dropout: float = 0.05
    """Dropout on the adapter's input (training mode only)."""
    target_modules: tuple[str, ...] | None = attrs.field(
        default=None, converter=lambda v: None if v is None else tuple(v)
    )
    """Explicit module names; overrides ``preset`` when given."""

    def __attrs_post_init__(self) -> None:
        problems = []
        if self.preset not in LORA_PRESETS:
            problems.append(f"preset={self.preset!r}: use one of {', '.join(LORA_PRESETS)}")
        if not isinstance(self.r, int) or self.r < 1:
            problems.append(f"r={self.r!r}: use a positive integer")
        if not self.alpha > 0:
            problems.append(f"alpha={self.alpha!r}: use a positive number")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout={self.dropout!r}: use a value in [0, 1)")
        if self.target_modules is not None and not self.target_modules:
            problems.append("target_modules=(): name at least one module, or leave it None to use the preset")
        if problems:
            raise ConfigError(problems, source="LoRA settings")

    def targets(self, family: Family) -> tuple[str, ...]:
        """Module names to adapt on ``family``'s transformers model."""
        if self.target_modules is not None:
            return self.target_modules
        return family.papers_lora if self.preset == "papers" else ALL_PROJECTIONS


def _check(ok: Callable[[Any], bool], fix: str | Callable[[Any], str]) -> Callable[[Any, attrs.Attribute, Any], None]:
    """An attrs validator raising ``ValueError(fix)`` (the builder puts ``field=value:`` before it)."""

    def validate(_inst: Any, _attr: attrs.Attribute, value: Any) -> None:
        if not ok(value):
            raise ValueError(fix(value) if callable(fix) else fix)

    return validate


def _is_device(value: str | None) -> bool:
    try:
        return value is None or bool(torch.device(value))
    except (RuntimeError, TypeError):
        return False


def _attn_fix(value: Any) -> str:
    why = "it ignores is_causal=False and would run causal attention; " if "flash" in str(value) else ""
    return f"{why}use one of {', '.join(ATTN_IMPLEMENTATIONS)}"


def _optional(ok: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or ok(v)


_LORA_FORMS = "pass 'papers', 'all', a mapping of LoraSettings fields, LoraSettings or None"


@attrs.frozen(kw_only=True)
class HFBackendOptions:
    """The options of every Hugging Face backend (``llada``, ``dream``, a plugin's family),
    written once: the registry checks a user's options against these fields (with their
    dotted path) before anything loads, and ``dmpo plugins NAME`` lists them.

    Build it with :meth:`from_options` to get every problem at once; single-field checks
    are validators, the checks between fields run in ``__attrs_post_init__``.
    """

    dtype: str = attrs.field(
        default="float32", validator=_check(lambda v: v in DTYPES, f"use one of {', '.join(DTYPES)}")
    )
    """Weight dtype: ``float32``, ``bfloat16`` or ``float16``."""
    device: str | None = attrs.field(default=None, validator=_check(_is_device, "use e.g. 'cpu', 'cuda' or 'cuda:0'"))
    """Where to put the model (``cpu``, ``cuda``, ``cuda:1``...); None: cpu unless ``device_map``."""
    device_map: str | dict[str, Any] | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: isinstance(v, str | Mapping)), "pass a string or a mapping")
    )
    """A transformers/accelerate device map (``"auto"`` ...); excludes ``device``."""
    attn_implementation: str = attrs.field(
        default="sdpa", validator=_check(lambda v: v in ATTN_IMPLEMENTATIONS, _attn_fix)
    )
    """Attention kernel: ``sdpa``, ``eager`` or ``flex_attention`` (flash-attention 2 would run causal)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (saves memory, costs one more forward)."""
    lora: LoraSettings | str | Mapping[str, Any] | None = attrs.field(
        default=None,
        validator=_check(
            lambda v: v is None or v in LORA_PRESETS or isinstance(v, LoraSettings | Mapping),
            lambda v: f"use one of {', '.join(LORA_PRESETS)}" if isinstance(v, str) else _LORA_FORMS,
        ),
    )
    """LoRA adapter: ``"papers"`` (what the published recipes adapted on this family),
    ``"all"`` (every projection), a mapping of :class:`LoraSettings` fields, or None (train
    every parameter)."""
    lora_r: int | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: isinstance(v, int) and v >= 1), "use a positive integer")
    )
    """Overrides the adapter rank (default 128); needs ``lora``."""
    lora_alpha: float | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: v > 0), "use a positive number")
    )
    """Overrides the LoRA scale numerator (default 64); needs ``lora``."""
    lora_dropout: float | None = attrs.field(
        default=None, validator=_check(_optional(lambda v: 0.0 <= v < 1.0), "use a value in [0, 1)")
    )
    """Overrides the adapter dropout (default 0.05); needs ``lora``."""
    reference: bool = True
    """Keep a reference policy (without LoRA: a frozen deep copy, twice the memory)."""
    load_in_4bit: bool = False
    """Load the base weights in 4 bit (bitsandbytes, CUDA only; needs LoRA)."""
    revision: str | None = None
    """Hub revision, for hub ids."""
    adapter: str | None = None
    """A peft LoRA adapter folder (``adapter/`` of a LoRA run's checkpoint) applied to the
    loaded base model; a run trains it further. Excludes ``lora`` (the adapter brings its own
    settings)."""

    def __attrs_post_init__(self) -> None:
        problems = _cross_field_problems(attrs.asdict(self, recurse=False))
        if problems:
            raise ConfigError(problems, source="backend options")
        self.lora_settings()  # a mapping of bad LoRA fields is reported here, before anything loads

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> HFBackendOptions:
        """Build from keyword options, reporting every problem (fields and cross-field) at once.

        Raises:
            ConfigError: unknown, mistyped or invalid options.
        """
        # None is the default of every field that may be None; the builder reads None as "empty"
        # in a union of several types (lora, device_map), so leave those out
        none_default = {f.name for f in attrs.fields(cls) if f.default is None}
        given = {k: v for k, v in options.items() if v is not None or k not in none_default}
        try:
            return build_config(cls, given, source="backend options")
        except ConfigError as err:  # field problems stop the builder before the cross-field checks
            extra = [p for p in _cross_field_problems(options) if p not in err.problems]
            if not extra:
                raise
            raise ConfigError([*err.problems, *extra], source=err.source) from None

    def lora_settings(self) -> LoraSettings | None:
        """The adapter these options ask for (``lora`` with the ``lora_*`` overrides), or None."""
        overrides = {
            k: v for k, v in {"r": self.lora_r, "alpha": self.lora_alpha, "dropout": self.lora_dropout}.items()
            if v is not None
        }
        if self.lora is None:
            return None
        if isinstance(self.lora, str):
            return LoraSettings(preset=self.lora, **overrides)
        if isinstance(self.lora, LoraSettings):
            return attrs.evolve(self.lora, **overrides)
        return LoraSettings(**{**self.lora, **overrides})


def _cross_field_problems(values: Mapping[str, Any]) -> list[str]:
    """Problems between fields of :class:`HFBackendOptions` (``values``: its fields, maybe unchecked)."""
    problems = []
    if values.get("device") is not None and values.get("device_map") is not None:
        problems.append("device and device_map are both set: pass one of them")
    if values.get("adapter") is not None and values.get("lora") is not None:
        problems.append("adapter and lora are both set: an adapter brings its own LoRA settings; pass one of them")
    if values.get("lora") is None:
        problems += [
            f"{k}={values[k]!r} given but lora is off: also pass lora='papers' or 'all'"
            for k in ("lora_r", "lora_alpha", "lora_dropout") if values.get(k) is not None
        ]
        if values.get("load_in_4bit") and values.get("adapter") is None:
            problems.append("load_in_4bit=True needs LoRA (4-bit weights cannot be trained directly): set lora")
    return problems


# ---------------------------------------------------------------------------------------
# The policy
# ---------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class LoadedFrom:
    """Where a policy's weights came from."""

    model: str
    """What the user passed (folder or hub id)."""
    folder: Path
    """The local folder that was read."""
    format: str
    """``original`` or ``converted``."""
    raw_config: Mapping[str, Any]
    """The config.json as read."""


def _check_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor, last: int | None) -> tuple[int, int]:
    if input_ids.dim() != 2:
        raise InvalidArgumentError("input_ids", tuple(input_ids.shape), "pass a 2-D tensor [N, S] of token ids")
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise InvalidArgumentError(
            "attention_mask", tuple(attention_mask.shape), f"must have the shape of input_ids {tuple(input_ids.shape)}"
        )
    n, s = input_ids.shape
    if last is not None and not (isinstance(last, int) and 1 <= last <= s):
        raise InvalidArgumentError("last", last, f"pass None or an integer in [1, {s}] (the sequence length)")
    return n, s


def shift_logits(raw: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Dream's one-position shift: ``logits[i] = raw[i - 1]``, so logits at i predict token i.

    ``raw [N, K, V]`` are the model's logits of the LAST K positions of ``attention_mask
    [N, S]``. Returns ``[N, S, V]`` when K = S (position 0 keeps its own logits, as in
    ``cat([raw[:, :1], raw[:, :-1]], 1)``), else the last K - 1 positions ``[N, K-1, V]``.
    A row's first REAL position after left padding also keeps its own logits (its left
    neighbour is padding), so a left-padded row matches the same row alone.
    """
    k, s = raw.shape[1], attention_mask.shape[1]
    real = attention_mask[:, s - k :] != 0  # [N, K]
    first_real = real[:, 1:] & ~real[:, :-1]  # [N, K-1]: real token right after padding
    shifted = torch.where(first_real[..., None], raw[:, 1:], raw[:, :-1])  # [N, K-1, V]
    if k == s:
        shifted = torch.cat([raw[:, :1], shifted], dim=1)  # [N, S, V]
    return shifted


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    was_training = module.training
    module.train(False)
    try:
        yield
    finally:
        module.train(was_training)


class HFPolicy:
    """A masked diffusion LM (LLaDA, Dream ...) with its frozen reference; satisfies
    :class:`dmpo_core.contracts.Policy`.

    Attributes:
        model: the transformers model (a ``peft.PeftModel`` around it when LoRA is on).
        tokenizer: the checkpoint's own tokenizer.
        family: the checkpoint family (:class:`~dmpo.backends.family.Family`).
        options: the loading options.
        lora: the LoRA adapter settings (None without LoRA).
        source: where the weights came from.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        tokenizer: Any,
        family: Family,
        ids: SpecialIds,
        options: HFBackendOptions,
        source: LoadedFrom,
        reference_model: torch.nn.Module | None,
        lora: LoraSettings | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.family = family
        self.options = options
        self.source = source
        self.ids = ids
        self.mask_id: int = ids.mask
        self.eos_id: int = ids.eos
        self.pad_id: int = ids.pad
        self.eot_id: int | None = ids.eot
        self.stop_ids: tuple[int, ...] = ids.stops
        self.bos_id: int | None = ids.bos
        self.lora: LoraSettings | None = lora if lora is not None else options.lora_settings()
        self._lora = self.lora is not None
        self._trainable = [p for p in model.parameters() if p.requires_grad]
        self._reference_model = reference_model
        self._reference_adapter: list[torch.Tensor] | None = None
        self.model.train(False)

    def __repr__(self) -> str:
        lora = f", lora={self.lora.preset}(r={self.lora.r})" if self.lora else ""
        return f"HFPolicy({self.family.name}, {self.source.model!r}, {self.options.dtype}{lora})"

    # -- Policy contract -----------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Device of the input embedding (where batches go)."""
        return self.model.get_input_embeddings().weight.device

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding matrix (= the logits' last dimension ``V``)."""
        return int(self.model.get_input_embeddings().weight.shape[0])

    @property
    def logits(self) -> PolicyLogits:
        """The current policy's logits function: ``logits(input_ids, attention_mask, last=None)``
        as :meth:`current_logits`, which can also open a KV cache (``logits.open_cache``) for the
        samplers' block caches (:mod:`dmpo.backends.kv_cache`)."""
        return PolicyLogits(self)

    def current_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None
    ) -> torch.Tensor:
        """Logits ``[N, S or last, V]`` of ``input_ids [N, S]``; logits at i predict token i.

        ``attention_mask [N, S]`` is 0 on left padding. Gradient flows when autograd is on.
        """
        return self._forward(self.model, input_ids, attention_mask, last)

    @torch.no_grad()
    def reference_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None
    ) -> torch.Tensor:
        """Reference-policy logits ``[N, S or last, V]``, without gradient, in eval mode."""
        if self._reference_model is not None:
            return self._forward(self._reference_model, input_ids, attention_mask, last)
        if not self._lora:
            raise InvalidArgumentError(
                "reference", False, "this policy was loaded without a reference; load it with reference=True"
            )
        with _eval_mode(self.model):
            if self._reference_adapter is None:
                with self.model.disable_adapter():
                    return self._forward(self.model, input_ids, attention_mask, last)
            with self._swapped_adapter():
                return self._forward(self.model, input_ids, attention_mask, last)

    def trainable_parameters(self) -> Iterator[torch.nn.Parameter]:
        """All weights, or only the LoRA adapter's when LoRA is on."""
        return iter(self._trainable)

    @torch.no_grad()
    def sync_reference(self) -> None:
        """Make the reference equal to the current policy (LoRA: keep a copy of the adapter)."""
        if self._reference_model is not None:
            for ref, cur in zip(self._reference_model.parameters(), self.model.parameters(), strict=True):
                ref.data.copy_(cur.data)
        elif self._lora:
            self._reference_adapter = [p.detach().clone() for p in self._trainable]
        else:
            raise InvalidArgumentError(
                "reference", False, "this policy was loaded without a reference; load it with reference=True"
            )

    def train(self, mode: bool = True) -> HFPolicy:
        """Training (dropout on, gradient checkpointing active) or eval mode; the reference stays in eval."""
        self.model.train(mode)
        return self

    def eval(self) -> HFPolicy:
        """Same as ``train(False)``."""
        return self.train(False)

    def save(
        self, path: str, *, format: str | None = None, shards: int | None = None, max_shard_bytes: int | None = None
    ) -> None:
        """Write the current policy as a checkpoint folder, atomically (temp folder, then rename).

        Args:
            path: the folder to write (replaced when it exists).
            format: ``original`` (default; the family's published layout, loadable by its
                remote code), ``converted`` (stock transformers layout, ``is_causal: false``) or
                ``adapter`` (the LoRA adapter alone, in peft's format; LoRA policies only).
            shards: number of safetensors files (default: files of at most 5 GB).
            max_shard_bytes: size limit per file when ``shards`` is None.

        With LoRA the adapter is merged into the written weights (the live model is untouched).
        """
        fmt = format or "original"
        if fmt == ADAPTER_FORMAT:
            if not self._lora:
                raise InvalidArgumentError("format", fmt, "this policy has no LoRA adapter; save a full layout "
                                           f"({', '.join(FORMATS)})")
            save_adapter(self.model, path, base_model=self.source.model)
            return
        if fmt not in FORMATS:
            raise InvalidArgumentError("format", fmt, f"use one of {', '.join((*FORMATS, ADAPTER_FORMAT))}")
        if self.options.load_in_4bit:
            raise InvalidArgumentError(
                "load_in_4bit", True, "a 4-bit policy has no full-precision weights to save; save from a bf16 load"
            )
        base = self.model.get_base_model() if self._lora else self.model
        extra: list[Path] = []
        if fmt == "original" and self.source.format == "original":
            extra = sorted(self.source.folder.glob("*.py"))  # the original remote code, if shipped
            extra += [p for p in [self.source.folder / "generation_config.json"] if p.is_file()]
        kwargs = {} if max_shard_bytes is None else {"max_shard_bytes": max_shard_bytes}
        export_checkpoint(
            path,
            family=self.family,
            config=base.config,
            tensors=self._export_tensors(),
            ids=self.ids,
            fmt=fmt,
            template=self.source.raw_config if self.source.format == "original" else None,
            write_tokenizer=lambda folder: self.tokenizer.save_pretrained(str(folder)),
            extra_files=extra,
            shards=shards,
            **kwargs,
        )

    # -- helpers ---------------------------------------------------------------------------

    def _forward(
        self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, last: int | None
    ) -> torch.Tensor:
        _, s = _check_batch(input_ids, attention_mask, last)
        device = self.device
        ids = input_ids.to(device=device, dtype=torch.long)  # [N, S]
        mask = attention_mask.to(device=device, dtype=torch.long)  # [N, S]
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # [N, S]: 0 at the first real token
        shift = self.family.shift_logits
        keep = 0 if last is None else min(s, last + 1 if shift else last)  # 0 keeps every position
        out = model(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False, logits_to_keep=keep)
        logits = out.logits  # [N, keep or S, V]
        if shift:
            logits = shift_logits(logits, mask)  # [N, S or last, V]
        if last is not None:
            logits = logits[:, -last:]  # [N, last, V]
        return logits

    @contextlib.contextmanager
    def _swapped_adapter(self) -> Iterator[None]:
        """Temporarily load the reference copy into the adapter weights (``.data``, so
        autograd graphs built before stay valid; the values are restored afterwards)."""
        assert self._reference_adapter is not None
        saved = [p.data.clone() for p in self._trainable]
        for p, ref in zip(self._trainable, self._reference_adapter, strict=True):
            p.data.copy_(ref)
        try:
            yield
        finally:
            for p, cur in zip(self._trainable, saved, strict=True):
                p.data.copy_(cur)

    @torch.no_grad()
    def _export_tensors(self) -> dict[str, torch.Tensor]:
        """Current weights under transformers names, LoRA merged in, a tied head left out."""
        base = self.model.get_base_model() if self._lora else self.model
        deltas: dict[str, torch.Tensor] = {}
        if self._lora:
            from peft.tuners.lora import LoraLayer

            for name, module in base.named_modules():
                if isinstance(module, LoraLayer) and "default" in module.lora_A:
                    deltas[name] = module.get_delta_weight("default")
        tensors: dict[str, torch.Tensor] = {}
        for key, value in base.state_dict().items():
            if ".lora_" in key:
                continue
            if ".base_layer." in key:
                module_name, _, leaf = key.partition(".base_layer.")
                key = f"{module_name}.{leaf}"
                if leaf == "weight" and module_name in deltas:
                    value = (value.float() + deltas[module_name].float()).to(value.dtype)
            tensors[key] = value
        if base.config.tie_word_embeddings:
            tensors.pop("lm_head.weight", None)
        return tensors


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' progress bars and load report (we check the result ourselves)."""
    from transformers.utils import logging as hf_logging

    verbosity, bar = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def _quantization(options: HFBackendOptions) -> Any:
    if not options.load_in_4bit:
        return None
    device = torch.device(options.device or "cuda")
    if device.type != "cuda" or not torch.cuda.is_available():
        raise InvalidArgumentError(
            "load_in_4bit", True, "4-bit loading needs a CUDA GPU (bitsandbytes); on CPU load in bfloat16 or float32"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise InvalidArgumentError("load_in_4bit", True, "install bitsandbytes (pip install bitsandbytes)") from err
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=DTYPES[options.dtype]
    )


def check_chat_template(tokenizer: Any, folder: Path) -> None:
    """Render the tokenizer's chat template once on a probe turn, so that a template that fails
    (a jinja syntax error, or one the sandbox blocks) is a one-line error before any weight loads.

    Raises:
        InvalidArgumentError: naming the folder and the template's error.
    """
    if not getattr(tokenizer, "chat_template", None):
        return
    try:
        tokenizer.apply_chat_template([{"role": "user", "content": "probe"}], tokenize=False,
                                      add_generation_prompt=True)
    except Exception as err:  # noqa: BLE001 - a model's template is foreign code
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise InvalidArgumentError(
            "chat_template", str(folder), f"the tokenizer's chat template fails to render ({reason}); fix "
            "chat_template.jinja / tokenizer_config.json there, or remove the template and use task option "
            "prompt_style=compact") from err


def rank_device(device: str) -> str:
    """``cuda`` without an index means this rank's GPU under a launcher (``LOCAL_RANK``), so the
    same ``backend_options.device=cuda`` serves one process and every rank of a launch."""
    local = os.environ.get("LOCAL_RANK")
    if device == "cuda" and local is not None:
        return f"cuda:{int(local)}"
    return device


def load_hf_policy(family: Family, model: str, options: HFBackendOptions) -> HFPolicy:
    """Load ``model`` (a folder or hub id) of ``family`` as an :class:`HFPolicy`.

    Steps: resolve the folder; read config.json and convert it; check every tensor's name
    and shape against the config (headers only); load the tokenizer and special ids; load
    the weights with ``from_pretrained`` (renaming at load time); add LoRA or a frozen
    reference copy.

    Raises:
        CheckpointError: anything wrong with the folder (one message naming the file).
        InvalidArgumentError: 4-bit loading without a CUDA GPU.
    """
    quantization = _quantization(options)
    if options.device is not None and torch.device(options.device).type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("device", options.device, "CUDA is not available here; use device='cpu'")
    folder = resolve_model_folder(model, revision=options.revision)
    raw = read_config(folder)
    config, fmt = family.parse_config(raw, str(folder / "config.json"))
    check_tensors(folder, scan_weights(folder), expected_shapes(family, config), family, fmt)
    with _quiet_transformers():
        tokenizer = load_tokenizer(folder, config)
    check_chat_template(tokenizer, folder)  # before the weights: a broken template fails in a second
    ids = resolve_special_ids(folder, raw, tokenizer, family, int(config.vocab_size))
    for problem in family.known_id_mismatches(int(config.vocab_size), attrs.asdict(ids)):
        warnings.warn(f"{folder}: {problem} (see the {family.name} family's known_ids)", stacklevel=2)

    device_map = options.device_map
    if device_map is None and options.device is not None and torch.device(options.device).type != "cpu":
        device_map = {"": rank_device(options.device)}
    kwargs: dict[str, Any] = {
        "config": config,
        "dtype": DTYPES[options.dtype],
        "attn_implementation": options.attn_implementation,
        "local_files_only": True,
        "output_loading_info": True,
        "use_safetensors": True,
    }
    if device_map is not None:
        kwargs["device_map"] = device_map
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if fmt == "original" and family.key_mapping() is not None:
        kwargs["key_mapping"] = family.key_mapping()
    try:
        with _quiet_transformers():
            net, info = family.model_class.from_pretrained(str(folder), **kwargs)
    except Exception as err:  # noqa: BLE001 - the folder was checked; report whatever transformers still found
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise CheckpointError(
            str(folder), f"transformers could not load the weights ({type(err).__name__}: {first})"
        ) from err
    leftovers = {
        k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v
    }
    if leftovers:
        raise CheckpointError(str(folder), f"weights did not load cleanly: {leftovers}")
    net.config.use_cache = False
    if options.gradient_checkpointing:
        kwargs = {"use_reentrant": False}  # works with a frozen base (LoRA) without input grads
        if hasattr(net, "activation_checkpointing_enable"):  # transformers >= 5.x name
            net.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            net.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)

    reference_model = None
    lora = options.lora_settings()
    if options.adapter is not None:
        net, adapter_config = load_adapter(net, options.adapter, trainable=True)
        lora = lora_settings_of(adapter_config)
    elif lora is not None:
        from peft import LoraConfig, get_peft_model

        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.targets(family)),
            bias="none",
        )
        with warnings.catch_warnings():  # peft probes a deprecated transformers attribute
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            net = get_peft_model(net, peft_config)
    else:
        if options.reference:
            reference_model = copy.deepcopy(net).requires_grad_(False).train(False)
    source = LoadedFrom(model=model, folder=folder, format=fmt, raw_config=raw)
    policy = HFPolicy(model=net, tokenizer=tokenizer, family=family, ids=ids, options=options, source=source,
                      reference_model=reference_model, lora=lora)
    if options.adapter is not None and options.reference:
        policy.sync_reference()  # the reference is the loaded policy, not the bare base
    return policy


def lora_settings_of(adapter_config: Mapping[str, Any]) -> LoraSettings:
    """The :class:`LoraSettings` a peft ``adapter_config.json`` describes."""
    targets = adapter_config.get("target_modules")
    targets = [targets] if isinstance(targets, str) else sorted(targets or [])
    return LoraSettings(r=int(adapter_config.get("r", 8)), alpha=float(adapter_config.get("lora_alpha", 8)),
                        dropout=float(adapter_config.get("lora_dropout", 0.0)), target_modules=tuple(targets))


__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "DTYPES",
    "HFBackendOptions",
    "HFPolicy",
    "LoadedFrom",
    "LoraSettings",
    "load_hf_policy",
    "shift_logits",
]
