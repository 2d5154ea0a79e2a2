"""The ``llada`` backend: LLaDA checkpoints (GSAI-ML LLaDA-8B-Base/Instruct, LLaDA-1.5).

Everything the project knows about LLaDA is in this file: special ids, config conversion,
tensor names, layout quirks, the loader and its registration. It reads the ORIGINAL layout
(config.json with ``d_model``, ``n_layers`` ...; tensors ``model.transformer.blocks.N.*``)
or one already converted to the Llama layout, renames config and tensors at load time and
runs the model as a stock ``transformers.LlamaForCausalLM`` with ``is_causal=False``: no
remote code. Unlike the original code it honours the attention mask (left padding), see
:mod:`dmpo.backends.hf_policy`. LLaDA's ``rope: false`` variant (learned absolute
positions, which the built-in tiny model uses) runs on a small subclass, the model class
of :mod:`dmpo.backends.llada_model`.

Values marked (unverified) come from third-party copies of the real checkpoints
(docs/models.md); they are used only where a checkpoint does not state them itself.
This module imports no transformers when it is imported (plugins register cheaply).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dmpo_core
from dmpo.backends import builtin
from dmpo.backends.family import Family, SpecialTokenNames, TensorNames, register_family
from dmpo.backends.hf_policy import HFBackendOptions, load_hf_policy

from dmpo_core.errors import CheckpointError, InvalidArgumentError

if TYPE_CHECKING:  # transformers is imported on the first load, not when plugins register
    from dmpo.backends.hf_policy import HFPolicy
    from transformers import LlamaConfig

# ---------------------------------------------------------------------------------------
# Ids and constants
# ---------------------------------------------------------------------------------------

TOKENS = SpecialTokenNames(mask=("<|mdm_mask|>",), eot=("<|eot_id|>",))

LLADA_8B_IDS: Mapping[str, int] = {"mask": 126336, "eos": 126081, "pad": 126081, "bos": 126080, "eot": 126348}
"""Special ids of LLaDA-8B (bos unverified). Reference data only: ids are always read from
the checkpoint's config and tokenizer."""
LLADA_8B_VOCAB = 126464

DEFAULT_ROPE_THETA = 500000.0
"""(unverified) RoPE base used only when an original config.json lacks ``rope_theta``."""
DEFAULT_RMS_EPS = 1e-5
ARCHITECTURE = "LLaDAModelLM"

PAPERS_LORA = ("q_proj", "k_proj", "v_proj", "up_proj")
"""What the published LoRA list (``q,k,v,o,up,down,gate_proj``) actually matched in LLaDA's
ORIGINAL naming: only q, k, v and up exist there (``attn_out``, ``ff_proj``, ``ff_out`` were
never adapted). After renaming to Llama names the same list would adapt every projection,
so ``papers`` keeps these four."""

# ---------------------------------------------------------------------------------------
# Absolute positions (rope: false)
# ---------------------------------------------------------------------------------------

POSITION_EMBEDDING_TYPES = ("rope", "absolute")
"""Values of the ``position_embedding_type`` attribute of the converted config."""
ABSOLUTE = "absolute"


def position_embedding_type(config: Any) -> str:
    """``"rope"`` (the default, also for a config without the attribute) or ``"absolute"``."""
    return getattr(config, "position_embedding_type", None) or "rope"


# ---------------------------------------------------------------------------------------
# Tensor names and config
# ---------------------------------------------------------------------------------------

TENSOR_NAMES = TensorNames(
    (
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
)

CONFIG_DEFAULTS: Mapping[str, Any] = {
    # Keys of an original LLaDA config.json that the conversion does not derive; written when
    # a converted checkpoint is saved in the original layout (values as in the 8B configs).
    "model_type": "llada",
    "architectures": [ARCHITECTURE],
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

# config key -> the only values the conversion supports (anything else is a clear error)
_REQUIRED_VALUES: Mapping[str, tuple[Any, ...]] = {
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
    for key, allowed in _REQUIRED_VALUES.items():
        if key in raw and raw[key] not in allowed:
            problems.append(_unsupported(key, raw[key], " or ".join(repr(a) for a in allowed)))
    if problems:
        raise CheckpointError(where, "; ".join(problems))
    d_model, n_heads = int(raw["d_model"]), int(raw["n_heads"])
    n_kv = raw.get("n_kv_heads") or (1 if raw.get("multi_query_attention") else n_heads)
    hidden = raw.get("mlp_hidden_size") or int(raw.get("mlp_ratio", 4)) * d_model  # mlp_hidden_size wins
    if d_model % n_heads:
        raise CheckpointError(where, f"d_model={d_model} is not a multiple of n_heads={n_heads}")
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=int(raw.get("embedding_size") or raw["vocab_size"]),  # rows of wte / ff_out
        hidden_size=d_model,
        intermediate_size=int(hidden),
        num_hidden_layers=int(raw["n_layers"]),
        num_attention_heads=n_heads,
        num_key_value_heads=int(n_kv),
        hidden_act="silu",
        max_position_embeddings=int(raw.get("max_sequence_length", 4096)),
        rms_norm_eps=float(raw.get("rms_norm_eps", DEFAULT_RMS_EPS)),
        rope_parameters={"rope_type": "default", "rope_theta": float(raw.get("rope_theta", DEFAULT_ROPE_THETA))},
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
    out: dict[str, Any] = {**CONFIG_DEFAULTS, **(template or {})}
    vocab = int(config.vocab_size)
    keep_vocab = template is not None and int(template.get("vocab_size", vocab + 1)) <= vocab
    out.update(
        model_type="llada",
        architectures=[ARCHITECTURE],
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
        rope_theta=float(rope.get("rope_theta", DEFAULT_ROPE_THETA)),
        weight_tying=bool(config.tie_word_embeddings),
        attention_dropout=float(config.attention_dropout or 0.0),
        torch_dtype=dtype,
    )
    return out


def llama_converted_config(config: LlamaConfig) -> dict[str, Any]:
    """The Llama-layout config.json dict of ``config``; refused for absolute positions.

    Raises:
        InvalidArgumentError: the model has learned absolute positions (``rope: false``),
            which no stock transformers class has.
    """
    if position_embedding_type(config) == ABSOLUTE:
        raise InvalidArgumentError(
            "format", "converted", "the model has learned absolute positions (LLaDA rope: false), which no stock "
            "transformers class has; save with format='original'"
        )
    raw = config.to_dict()
    raw.pop("position_embedding_type", None)  # "rope": what a stock Llama does anyway
    return raw


LLADA = register_family(
    Family(
        name="llada",
        original_model_types=("llada", "LLaDA"),
        converted_model_type="llama",
        model_class_path="dmpo.backends.llada_model:LLaDALlamaForCausalLM",  # stock Llama unless rope: false
        config_class_path="transformers:LlamaConfig",
        converted_architecture="LlamaForCausalLM",
        shift_logits=False,
        tokens=TOKENS,
        papers_lora=PAPERS_LORA,
        to_config=llada_config_to_llama,
        from_config=llama_config_to_llada,
        tensor_names=TENSOR_NAMES,
        converted_config=llama_converted_config,
        known_ids=LLADA_8B_IDS,
        known_vocab=LLADA_8B_VOCAB,
    )
)

# ---------------------------------------------------------------------------------------
# Loader and registration
# ---------------------------------------------------------------------------------------


def load_llada_policy(model: str, **options: Any) -> HFPolicy:
    """Load a LLaDA checkpoint (local folder or hub id) as a trainable policy.

    ``options`` are the fields of :class:`~dmpo.backends.hf_policy.HFBackendOptions`
    (``dtype``, ``device``, ``lora`` ...). LoRA ``"papers"`` adapts q, k, v and up (what the
    published recipes adapted on LLaDA), ``"all"`` every projection.

    Raises:
        CheckpointError: the folder is not a loadable LLaDA checkpoint (names the file).
        ConfigError: invalid options (all reported at once).
    """
    return load_hf_policy(LLADA, model, HFBackendOptions.from_options(options))


@dmpo_core.hookimpl
def register_backends(register: Any) -> None:
    """Register the ``llada`` backend."""
    register("llada", load_llada_policy, options=HFBackendOptions, resolve_model=builtin.resolve,
             help="LLaDA checkpoints (original or Llama layout) as bidirectional Llama")
