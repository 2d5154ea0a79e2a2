"""What a model family is, as the shared Hugging Face loader sees it: a neutral description.

A family (LLaDA, Dream, a plugin's) maps its ORIGINAL checkpoint layout (the one it is
published in) onto a stock transformers model class run with ``is_causal=False``. Each
family lives in one module of its own (``backends/llada.py``, ``backends/dream.py``) that
builds a :class:`Family` from its tables, hands it to :func:`register_family` and registers
its backend; :mod:`dmpo.backends.hf_checkpoint` and :mod:`dmpo.backends.hf_policy` know no
family by name. Two layouts are read and written:

* ``original``: the published layout (LLaDA: ``d_model``/``n_layers`` keys and tensors
  ``model.transformer.blocks.N.*``; Dream: Qwen2 names under ``model_type "Dream"``);
* ``converted``: the transformers layout (``model_type "llama"``/``"qwen2"`` ...) that the
  stock class loads, with ``is_causal: false``.

This module imports neither transformers nor the families: a family module can build its
:class:`Family` when plugins register, and the model classes are imported on first use.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from dmpo_core.errors import CheckpointError, InvalidArgumentError

FORMATS = ("original", "converted")
"""Checkpoint layouts a backend reads and writes (``original`` is the default for saving)."""

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear projection of a Llama/Qwen2 block (LoRA preset ``all``), by its transformers name."""


@attrs.frozen(kw_only=True)
class SpecialTokenNames:
    """Token strings that identify special ids in a family's tokenizer, tried in order."""

    mask: tuple[str, ...]
    """Mask-token strings (used when the tokenizer does not declare ``mask_token``)."""
    eot: tuple[str, ...]
    """End-of-turn token strings (``None`` id when none is in the vocabulary)."""


# ---------------------------------------------------------------------------------------
# Tensor-name tables
# ---------------------------------------------------------------------------------------


def _template_regex(template: str) -> str:
    return "^" + re.escape(template).replace(r"\{i\}", r"(\d+)") + "$"


@functools.cache
def _compiled(pairs: tuple[tuple[str, str], ...], backward: bool) -> list[tuple[re.Pattern[str], str]]:
    if backward:
        return [(re.compile(_template_regex(c)), o) for o, c in pairs]
    return [(re.compile(_template_regex(o)), c) for o, c in pairs]


def _rename(name: str, table: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, target in table:
        match = pattern.match(name)
        if match:
            return target.format(i=match.group(1)) if match.groups() else target
    return None


@attrs.frozen
class TensorNames:
    """A table of ``(original name, transformers name)`` pairs; ``{i}`` stands for a block index."""

    pairs: tuple[tuple[str, str], ...]

    def to_converted(self, name: str) -> str | None:
        """The transformers name of an original tensor name (None: not in the table)."""
        return _rename(name, _compiled(self.pairs, False))

    def to_original(self, name: str) -> str | None:
        """The original name of a transformers tensor name (None: no original counterpart)."""
        return _rename(name, _compiled(self.pairs, True))

    def key_mapping(self) -> dict[str, str]:
        """Regex renames for ``from_pretrained(key_mapping=...)``: original -> transformers names.

        transformers' renaming allows one capture group per pattern, so each pattern
        captures only the block index.
        """
        mapping = {}
        for original, converted in self.pairs:
            source = _template_regex(original.removesuffix(".weight") + ".").removesuffix("$")
            mapping[source] = converted.removesuffix(".weight").replace("{i}", r"\1") + "."
        return mapping


def stock_converted_config(config: Any) -> dict[str, Any]:
    """The converted-layout ``config.json`` dict of ``config``: its own ``to_dict()``."""
    return config.to_dict()


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------------------------
# The family
# ---------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Family:
    """How one dLLM family's checkpoints map onto a transformers model class."""

    name: str
    """Backend name (``llada``, ``dream``)."""
    original_model_types: tuple[str, ...]
    """``model_type`` values of the original layout."""
    converted_model_type: str
    """``model_type`` of the transformers layout (``llama``, ``qwen2``)."""
    model_class_path: str
    """``"module:Class"`` of the transformers model class that runs it (with ``is_causal=False``);
    imported on first use, so describing a family costs no transformers import."""
    config_class_path: str
    """``"module:Class"`` of its transformers config class."""
    converted_architecture: str
    """The stock transformers class a converted checkpoint names in ``architectures``."""
    shift_logits: bool
    """True when position i's logits predict token i+1 (Dream): the policy shifts them back."""
    tokens: SpecialTokenNames
    papers_lora: tuple[str, ...]
    """LoRA targets the published recipes adapted on this family's original checkpoint."""
    to_config: Callable[[Mapping[str, Any], str], Any]
    """Original config dict, its file path (for errors) -> bidirectional transformers config."""
    from_config: Callable[[Any, Mapping[str, Any] | None, str], dict[str, Any]]
    """transformers config, original template, dtype name -> original config dict."""
    tensor_names: TensorNames | None = None
    """Original <-> transformers tensor names; None when the original names are transformers'."""
    converted_config: Callable[[Any], dict[str, Any]] = stock_converted_config
    """transformers config -> converted-layout config.json dict; raises InvalidArgumentError
    for a model no stock class can run (LLaDA's absolute positions)."""
    known_ids: Mapping[str, int] = attrs.field(factory=dict)
    """Special ids of the published checkpoint (reference data only: ids are always read
    from the checkpoint; :meth:`known_id_mismatches` compares against these)."""
    known_vocab: int | None = None
    """Embedding rows of the published checkpoint (identifies it for :meth:`known_id_mismatches`)."""

    @property
    def model_class(self) -> type:
        """The transformers model class (imported now)."""
        return _import(self.model_class_path)

    @property
    def config_class(self) -> type:
        """The transformers config class (imported now)."""
        return _import(self.config_class_path)

    def to_converted_name(self, name: str) -> str | None:
        """Original tensor name -> transformers name (None: unknown)."""
        return name if self.tensor_names is None else self.tensor_names.to_converted(name)

    def to_original_name(self, name: str) -> str | None:
        """transformers tensor name -> original name (None: no original counterpart)."""
        return name if self.tensor_names is None else self.tensor_names.to_original(name)

    def key_mapping(self) -> dict[str, str] | None:
        """Regex renames for ``from_pretrained`` (None when the names already match)."""
        return None if self.tensor_names is None else self.tensor_names.key_mapping()

    def detect_format(self, raw: Mapping[str, Any], where: str) -> str:
        """``original`` or ``converted`` from ``model_type``; a clear error (naming the
        backend that reads it, if any) for anything else."""
        model_type = raw.get("model_type")
        if model_type in self.original_model_types:
            return "original"
        if model_type == self.converted_model_type:
            return "converted"
        hint = ""
        for other in known_families().values():
            if other.name != self.name and model_type in (*other.original_model_types, other.converted_model_type):
                hint = f"; this looks like a {other.name} checkpoint: use the {other.name!r} backend"
        accepted = ", ".join(repr(t) for t in (*self.original_model_types, self.converted_model_type))
        raise CheckpointError(
            where, f"unknown model_type {model_type!r} for the {self.name} backend (expected {accepted}){hint}"
        )

    def parse_config(self, raw: Mapping[str, Any], where: str) -> tuple[Any, str]:
        """The bidirectional transformers config of ``raw`` and its format."""
        fmt = self.detect_format(raw, where)
        if fmt == "original":
            return self.to_config(raw, where), fmt
        try:
            config = self.config_class.from_dict(dict(raw))
        except Exception as err:  # noqa: BLE001 - transformers raises several types for bad configs
            raise CheckpointError(where, f"invalid {self.converted_model_type} config: {err}".splitlines()[0]) from err
        config.is_causal = False
        config.use_cache = False
        if getattr(config, "use_sliding_window", False):
            raise CheckpointError(where, "use_sliding_window=true is not supported (attention is bidirectional)")
        return config, fmt

    def known_id_mismatches(self, vocab_rows: int, ids: Mapping[str, int | None]) -> list[str]:
        """Differences between resolved ids and the documented ids of the published checkpoint
        of the same vocabulary size (empty for other checkpoints); the loader warns about them."""
        if vocab_rows != self.known_vocab:
            return []
        return [
            f"{k} id {ids[k]} differs from the documented {v}"
            for k, v in self.known_ids.items()
            if k in ids and ids[k] is not None and ids[k] != v
        ]


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make ``family`` known (for the "use the other backend" hint) and return it.

    Raises:
        InvalidArgumentError: another family already has that name.
    """
    other = _FAMILIES.setdefault(family.name, family)
    if other is not family:
        raise InvalidArgumentError("family", family.name, "a family of that name is already registered; rename it")
    return family


def known_families() -> Mapping[str, Family]:
    """Every registered family, by name (the installed backend plugins are loaded first)."""
    from dmpo_core.registry import get_registry

    get_registry()  # imports the family modules of every installed backend plugin (lazy, once)
    return dict(_FAMILIES)
