"""Checkpoint formats of the dLLM families, in ONE place.

Every table that maps an original checkpoint (config keys, tensor names, special tokens,
constants taken from third-party copies) onto transformers' stock model classes lives
here, so a wrong value is fixed in one line. Loading converts at load time and never
writes into the user's folder; saving can write either layout:

* ``original``: the layout the published checkpoint ships in (LLaDA: ``config.json``
  with ``d_model``/``n_layers``... and tensors ``model.transformer.blocks.N.*``; Dream:
  Qwen2 tensor names with ``model_type "Dream"``);
* ``converted``: the transformers layout (``model_type "llama"``/``"qwen2"``) that a
  stock ``LlamaForCausalLM``/``Qwen2ForCausalLM`` loads, with ``is_causal: false``.

Values marked (unverified) come from third-party copies of the real checkpoints
(see docs/MODELS.md); they are used only where a checkpoint does not state them itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from dmpo.backends.llada_model import ABSOLUTE, LLaDALlamaForCausalLM, position_embedding_type
from transformers import LlamaConfig, PreTrainedConfig, Qwen2Config, Qwen2ForCausalLM

from dmpo_core.errors import CheckpointError, InvalidArgumentError

FORMATS = ("original", "converted")
"""Checkpoint layouts a backend reads and writes (``original`` is the default for saving)."""

# ---------------------------------------------------------------------------------------
# LoRA presets (converted tensor names)
# ---------------------------------------------------------------------------------------

ALL_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""Every linear projection of a Llama/Qwen2 block."""

PUBLISHED_LORA_TARGETS = ALL_PROJECTIONS
"""The ``target_modules`` list of the published recipes (d1, DMPO), by name."""

LLADA_PAPERS_LORA = ("q_proj", "k_proj", "v_proj", "up_proj")
"""What the published list actually matched in LLaDA's ORIGINAL naming: only q, k, v and
up exist there (``attn_out``, ``ff_proj``, ``ff_out`` were never adapted). After renaming to
Llama names the same list would adapt every projection, so ``papers`` keeps these four."""

# ---------------------------------------------------------------------------------------
# Special tokens
# ---------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class SpecialTokenNames:
    """Token strings that identify special ids in a family's tokenizer, tried in order."""

    mask: tuple[str, ...]
    """Mask-token strings (used when the tokenizer does not declare ``mask_token``)."""
    eot: tuple[str, ...]
    """End-of-turn token strings (``None`` id when none is in the vocabulary)."""


LLADA_TOKENS = SpecialTokenNames(mask=("<|mdm_mask|>",), eot=("<|eot_id|>",))
DREAM_TOKENS = SpecialTokenNames(mask=("<|mask|>", "<|mdm_mask|>"), eot=("<|im_end|>", "<|eot_id|>"))

LLADA_8B_IDS: Mapping[str, int] = {"mask": 126336, "eos": 126081, "pad": 126081, "bos": 126080, "eot": 126348}
"""Special ids of LLaDA-8B (bos unverified). Reference data only: ids are always read from
the checkpoint's config and tokenizer; :func:`known_id_mismatches` compares against these."""
LLADA_8B_VOCAB = 126464

DREAM_7B_IDS: Mapping[str, int] = {"mask": 151666, "eos": 151643, "pad": 151643}
"""Special ids of Dream-v0-7B (unverified for the instruct checkpoint). Reference data only."""
DREAM_7B_VOCAB = 152064

# ---------------------------------------------------------------------------------------
# LLaDA
# ---------------------------------------------------------------------------------------

LLADA_DEFAULT_ROPE_THETA = 500000.0
"""(unverified) RoPE base used only when an original config.json lacks ``rope_theta``."""
LLADA_DEFAULT_RMS_EPS = 1e-5
LLADA_ARCHITECTURE = "LLaDAModelLM"

LLADA_TENSOR_NAMES: tuple[tuple[str, str], ...] = (
    # (original LLaDA name, transformers Llama name); "{i}" is the block index
    ("model.transformer.wte.weight", "model.embed_tokens.weight"),
    ("model.transformer.wpe.weight", "model.wpe.weight"),  # only with rope: false (absolute positions)
    ("model.transformer.ln_f.weight", "model.norm.weight"),
    ("model.transformer.ff_out.weight", "lm_head.weight"),
    ("model.transformer.blocks.{i}.attn_norm.weight", "model.layers.{i}.input_layernorm.weight"),
    ("model.transformer.blocks.{i}.q_proj.weight", "model.layers.{i}.self_attn.q_proj.weight"),
    ("model.transformer.blocks.{i}.k_proj.weight", "model.layers.{i}.self_attn.k_proj.weight"),
    ("model.transformer.blocks.{i}.v_proj.weight", "model.layers.{i}.self_attn.v_proj.weight"),
    ("model.transformer.blocks.{i}.attn_out.weight", "model.layers.{i}.self_attn.o_proj.weight"),
    ("model.transformer.blocks.{i}.ff_norm.weight", "model.layers.{i}.post_attention_layernorm.weight"),
    ("model.transformer.blocks.{i}.ff_proj.weight", "model.layers.{i}.mlp.gate_proj.weight"),  # the GATE
    ("model.transformer.blocks.{i}.up_proj.weight", "model.layers.{i}.mlp.up_proj.weight"),
    ("model.transformer.blocks.{i}.ff_out.weight", "model.layers.{i}.mlp.down_proj.weight"),
)

LLADA_CONFIG_DEFAULTS: Mapping[str, Any] = {
    # Keys of an original LLaDA config.json that the conversion does not derive; written when
    # a converted checkpoint is saved in the original layout (values as in the 8B configs).
    "model_type": "llada",
    "architectures": [LLADA_ARCHITECTURE],
    "block_type": "llama",
    "activation_type": "silu",
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "bias_for_layer_norm": False,
    "include_bias": False,
    "include_qkv_bias": False,
    "attention_layer_norm": False,
    "input_emb_norm": False,
    "rope": True,
    "rope_full_precision": True,
    "alibi": False,
    "alibi_bias_max": 8.0,
    "multi_query_attention": None,
    "flash_attention": False,
    "attention_dropout": 0.0,
    "residual_dropout": 0.0,
    "embedding_dropout": 0.0,
    "scale_logits": False,
    "weight_tying": False,
    "block_group_size": 1,
    "use_cache": False,
}

# config key -> the only value the conversion supports (anything else is a clear error)
_LLADA_REQUIRED_VALUES: Mapping[str, tuple[Any, ...]] = {
    "block_type": ("llama",),
    "activation_type": ("silu",),
    "layer_norm_type": ("rms",),
    "layer_norm_with_affine": (True,),
    "bias_for_layer_norm": (False, None),
    "include_bias": (False,),
    "include_qkv_bias": (False,),
    "attention_layer_norm": (False,),
    "input_emb_norm": (False,),
    "rope": (True, False),  # false: learned absolute positions (transformer.wpe), see llada_model.py
    "alibi": (False,),
    "scale_logits": (False,),
    "clip_qkv": (None,),
}


def _template_regex(template: str) -> str:
    return "^" + re.escape(template).replace(r"\{i\}", r"(\d+)") + "$"


_LLADA_FORWARD = [(re.compile(_template_regex(o)), c) for o, c in LLADA_TENSOR_NAMES]
_LLADA_BACKWARD = [(re.compile(_template_regex(c)), o) for o, c in LLADA_TENSOR_NAMES]


def _rename(name: str, table: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, target in table:
        match = pattern.match(name)
        if match:
            return target.format(i=match.group(1)) if match.groups() else target
    return None


def llada_to_llama_name(name: str) -> str | None:
    """The Llama name of an original LLaDA tensor name (None: not a LLaDA tensor)."""
    return _rename(name, _LLADA_FORWARD)


def llama_to_llada_name(name: str) -> str | None:
    """The original LLaDA name of a Llama tensor name (None: no LLaDA counterpart)."""
    return _rename(name, _LLADA_BACKWARD)


def llada_key_mapping() -> dict[str, str]:
    """Regex renames for ``from_pretrained(key_mapping=...)``: original -> Llama names.

    transformers' renaming allows one capture group per pattern, so each pattern
    captures only the block index.
    """
    mapping = {}
    for original, converted in LLADA_TENSOR_NAMES:
        source = _template_regex(original.removesuffix(".weight") + ".").removesuffix("$")
        mapping[source] = converted.removesuffix(".weight").replace("{i}", r"\1") + "."
    return mapping


def _unsupported(key: str, value: Any, expected: Any) -> str:
    return f"{key}={value!r} is not supported (expected {expected}); only the Llama-block LLaDA layout converts"


def llada_config_to_llama(raw: Mapping[str, Any], where: str) -> LlamaConfig:
    """Convert an original LLaDA ``config.json`` dict into a bidirectional ``LlamaConfig``.

    Args:
        raw: the parsed config.json.
        where: the config file's path, for error messages.

    Raises:
        CheckpointError: a required key is missing or the config uses a feature with no
            Llama equivalent (all problems at once). Residual and embedding dropout of the
            original are not represented (0 in the released checkpoints).
    """
    problems = [f"missing key {k!r}" for k in ("d_model", "n_layers", "n_heads", "vocab_size") if k not in raw]
    for key, allowed in _LLADA_REQUIRED_VALUES.items():
        if key in raw and raw[key] not in allowed:
            problems.append(_unsupported(key, raw[key], " or ".join(repr(a) for a in allowed)))
    if problems:
        raise CheckpointError(where, "; ".join(problems))
    d_model, n_heads = int(raw["d_model"]), int(raw["n_heads"])
    n_kv = raw.get("n_kv_heads") or (1 if raw.get("multi_query_attention") else n_heads)
    hidden = raw.get("mlp_hidden_size") or int(raw.get("mlp_ratio", 4)) * d_model  # mlp_hidden_size wins
    if d_model % n_heads:
        raise CheckpointError(where, f"d_model={d_model} is not a multiple of n_heads={n_heads}")
    return LlamaConfig(
        vocab_size=int(raw.get("embedding_size") or raw["vocab_size"]),  # rows of wte / ff_out
        hidden_size=d_model,
        intermediate_size=int(hidden),
        num_hidden_layers=int(raw["n_layers"]),
        num_attention_heads=n_heads,
        num_key_value_heads=int(n_kv),
        hidden_act="silu",
        max_position_embeddings=int(raw.get("max_sequence_length", 4096)),
        rms_norm_eps=float(raw.get("rms_norm_eps", LLADA_DEFAULT_RMS_EPS)),
        rope_parameters={"rope_type": "default", "rope_theta": float(raw.get("rope_theta", LLADA_DEFAULT_ROPE_THETA))},
        attention_bias=False,
        mlp_bias=False,
        attention_dropout=float(raw.get("attention_dropout", 0.0) or 0.0),
        tie_word_embeddings=bool(raw.get("weight_tying", False)),
        pad_token_id=raw.get("pad_token_id"),
        bos_token_id=raw.get("bos_token_id"),
        eos_token_id=raw.get("eos_token_id"),
        use_cache=False,
        is_causal=False,
        position_embedding_type="rope" if raw.get("rope", True) else ABSOLUTE,
    )


def llama_config_to_llada(config: LlamaConfig, template: Mapping[str, Any] | None, dtype: str) -> dict[str, Any]:
    """An original LLaDA ``config.json`` dict for ``config`` (inverse of :func:`llada_config_to_llama`).

    ``template`` (the original config the model was loaded from, if any) keeps keys the
    conversion does not touch (``auto_map``, special ids ...).

    Raises:
        InvalidArgumentError: the model uses a Llama feature the LLaDA layout cannot express.
    """
    rope = dict(config.rope_parameters or {})
    bad = []
    if config.attention_bias or getattr(config, "mlp_bias", False):
        bad.append("biases")
    if config.hidden_act != "silu":
        bad.append(f"hidden_act {config.hidden_act!r}")
    if rope.get("rope_type", "default") != "default":
        bad.append(f"rope_type {rope.get('rope_type')!r}")
    if bad:
        raise InvalidArgumentError(
            "format", "original", f"the model has {', '.join(bad)}; save with format='converted'"
        )
    out: dict[str, Any] = {**LLADA_CONFIG_DEFAULTS, **(template or {})}
    vocab = int(config.vocab_size)
    keep_vocab = template is not None and int(template.get("vocab_size", vocab + 1)) <= vocab
    out.update(
        model_type="llada",
        architectures=[LLADA_ARCHITECTURE],
        d_model=config.hidden_size,
        n_layers=config.num_hidden_layers,
        n_heads=config.num_attention_heads,
        n_kv_heads=config.num_key_value_heads,
        mlp_hidden_size=config.intermediate_size,
        mlp_ratio=out.get("mlp_ratio") or max(1, config.intermediate_size // config.hidden_size),
        vocab_size=int(template["vocab_size"]) if keep_vocab else vocab,
        embedding_size=vocab,
        max_sequence_length=config.max_position_embeddings,
        rms_norm_eps=config.rms_norm_eps,
        rope=position_embedding_type(config) != ABSOLUTE,
        rope_theta=float(rope.get("rope_theta", LLADA_DEFAULT_ROPE_THETA)),
        weight_tying=bool(config.tie_word_embeddings),
        attention_dropout=float(config.attention_dropout or 0.0),
        torch_dtype=dtype,
    )
    return out


# ---------------------------------------------------------------------------------------
# Dream
# ---------------------------------------------------------------------------------------

DREAM_DEFAULT_ROPE_THETA = 1_000_000.0
"""RoPE base used only when a Dream config.json states neither ``rope_theta`` nor ``rope_parameters``."""
DREAM_DEFAULT_RMS_EPS = 1e-6
DREAM_ARCHITECTURE = "DreamModel"
DREAM_MODEL_TYPES = ("Dream", "dream")

_DREAM_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "rms_norm_eps",
    "tie_word_embeddings",
    "attention_dropout",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "initializer_range",
)


def dream_config_to_qwen2(raw: Mapping[str, Any], where: str) -> Qwen2Config:
    """Convert a Dream ``config.json`` dict (Qwen2 keys, ``model_type "Dream"``) into a
    bidirectional ``Qwen2Config`` (q/k/v biases and grouped key/value heads are Qwen2's own).

    Raises:
        CheckpointError: a required key is missing or sliding-window attention / RoPE
            scaling is on (all problems at once).
    """
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    problems = [f"missing key {k!r}" for k in required if k not in raw]
    if raw.get("use_sliding_window"):
        problems.append("use_sliding_window=true is not supported (Dream attends to the whole sequence)")
    if raw.get("rope_scaling"):
        problems.append(f"rope_scaling={raw['rope_scaling']!r} is not supported")
    if raw.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={raw['hidden_act']!r} is not supported (expected 'silu')")
    if problems:
        raise CheckpointError(where, "; ".join(problems))
    kwargs = {k: raw[k] for k in _DREAM_KEYS if k in raw}
    kwargs.setdefault("rms_norm_eps", DREAM_DEFAULT_RMS_EPS)
    rope = raw.get("rope_parameters") or {
        "rope_type": "default",
        "rope_theta": float(raw.get("rope_theta", DREAM_DEFAULT_ROPE_THETA)),
    }
    return Qwen2Config(**kwargs, rope_parameters=dict(rope), use_sliding_window=False, use_cache=False, is_causal=False)


def qwen2_config_to_dream(config: Qwen2Config, template: Mapping[str, Any] | None, dtype: str) -> dict[str, Any]:
    """A Dream ``config.json`` dict for ``config`` (inverse of :func:`dream_config_to_qwen2`)."""
    rope = dict(config.rope_parameters or {})
    out: dict[str, Any] = dict(template or {})
    out.update({k: getattr(config, k) for k in _DREAM_KEYS})
    out.update(
        model_type="Dream",
        architectures=[DREAM_ARCHITECTURE],
        rope_theta=float(rope.get("rope_theta", DREAM_DEFAULT_ROPE_THETA)),
        use_sliding_window=False,
        use_cache=False,
        torch_dtype=dtype,
    )
    out.pop("rope_parameters", None)
    return out


# ---------------------------------------------------------------------------------------
# Families
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
    model_class: type
    """The transformers class that runs it (with ``is_causal=False``)."""
    converted_architecture: str
    """The stock transformers class a converted checkpoint names in ``architectures``."""
    config_class: type
    shift_logits: bool
    """True when position i's logits predict token i+1 (Dream): the policy shifts them back."""
    tokens: SpecialTokenNames
    papers_lora: tuple[str, ...]
    """LoRA targets the published recipes adapted on this family's original checkpoint."""
    to_config: Callable[[Mapping[str, Any], str], PreTrainedConfig]
    """Original config dict -> transformers config."""
    from_config: Callable[[Any, Mapping[str, Any] | None, str], dict[str, Any]]
    """transformers config, original template, dtype name -> original config dict."""
    to_converted_name: Callable[[str], str | None]
    """Original tensor name -> transformers name (None: unknown)."""
    to_original_name: Callable[[str], str | None]
    """transformers tensor name -> original name."""
    key_mapping: Callable[[], dict[str, str] | None]
    """Regex renames for ``from_pretrained`` (None when names already match)."""
    known_ids: Mapping[str, int]
    known_vocab: int

    def detect_format(self, raw: Mapping[str, Any], where: str) -> str:
        """``original`` or ``converted`` from ``model_type``; a clear error for anything else."""
        model_type = raw.get("model_type")
        if model_type in self.original_model_types:
            return "original"
        if model_type == self.converted_model_type:
            return "converted"
        hint = ""
        for other in FAMILIES.values():
            if other is not self and model_type in (*other.original_model_types, other.converted_model_type):
                hint = f"; this looks like a {other.name} checkpoint: use the {other.name!r} backend"
        accepted = ", ".join(repr(t) for t in (*self.original_model_types, self.converted_model_type))
        raise CheckpointError(
            where, f"unknown model_type {model_type!r} for the {self.name} backend (expected {accepted}){hint}"
        )

    def parse_config(self, raw: Mapping[str, Any], where: str) -> tuple[PreTrainedConfig, str]:
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


def _identity(name: str) -> str:
    return name


LLADA = Family(
    name="llada",
    original_model_types=("llada", "LLaDA"),
    converted_model_type="llama",
    model_class=LLaDALlamaForCausalLM,  # stock LlamaForCausalLM unless rope: false
    converted_architecture="LlamaForCausalLM",
    config_class=LlamaConfig,
    shift_logits=False,
    tokens=LLADA_TOKENS,
    papers_lora=LLADA_PAPERS_LORA,
    to_config=llada_config_to_llama,
    from_config=llama_config_to_llada,
    to_converted_name=llada_to_llama_name,
    to_original_name=llama_to_llada_name,
    key_mapping=llada_key_mapping,
    known_ids=LLADA_8B_IDS,
    known_vocab=LLADA_8B_VOCAB,
)

DREAM = Family(
    name="dream",
    original_model_types=DREAM_MODEL_TYPES,
    converted_model_type="qwen2",
    model_class=Qwen2ForCausalLM,
    converted_architecture="Qwen2ForCausalLM",
    config_class=Qwen2Config,
    shift_logits=True,
    tokens=DREAM_TOKENS,
    # Dream's tensor names are Qwen2's, so the published target list matches every projection.
    papers_lora=PUBLISHED_LORA_TARGETS,
    to_config=dream_config_to_qwen2,
    from_config=qwen2_config_to_dream,
    to_converted_name=_identity,
    to_original_name=_identity,
    key_mapping=lambda: None,
    known_ids=DREAM_7B_IDS,
    known_vocab=DREAM_7B_VOCAB,
)

FAMILIES: Mapping[str, Family] = {"llada": LLADA, "dream": DREAM}


def known_id_mismatches(family: Family, vocab_rows: int, ids: Mapping[str, int | None]) -> list[str]:
    """Differences between resolved ids and the documented ids of the real checkpoint of the
    same vocabulary size (empty for other checkpoints); the loader warns about them."""
    if vocab_rows != family.known_vocab:
        return []
    return [
        f"{k} id {ids[k]} differs from the documented {v}"
        for k, v in family.known_ids.items()
        if k in ids and ids[k] is not None and ids[k] != v
    ]
