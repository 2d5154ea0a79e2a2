"""The ``dream`` backend: Dream checkpoints (Dream-org Dream-v0-Base/Instruct-7B).

Everything the project knows about Dream is in this file. Dream stores Qwen2 tensors
(q/k/v biases, grouped key/value heads) under ``model_type "Dream"``; it runs here as a
stock ``transformers.Qwen2ForCausalLM`` with ``is_causal=False`` (no remote code). Dream
was initialised from an autoregressive model, so the hidden state at i-1 predicts token i:
the policy shifts the logits (``cat([logits[:, :1], logits[:, :-1]], 1)``) so callers always
see "logits at i predict token i". Position ids are ``cumsum(attention_mask) - 1`` and the
mask is honoured. This module imports no transformers when it is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dmpo_core
from dmpo.backends import builtin
from dmpo.backends.family import ALL_PROJECTIONS, Family, SpecialTokenNames, register_family
from dmpo.backends.hf_policy import HFBackendOptions, load_hf_policy

from dmpo_core.errors import CheckpointError

if TYPE_CHECKING:  # transformers is imported on the first load, not when plugins register
    from dmpo.backends.hf_policy import HFPolicy
    from transformers import Qwen2Config

TOKENS = SpecialTokenNames(mask=("<|mask|>", "<|mdm_mask|>"), eot=("<|im_end|>", "<|eot_id|>"))

DREAM_7B_IDS: Mapping[str, int] = {"mask": 151666, "eos": 151643, "pad": 151643}
"""Special ids of Dream-v0-7B (unverified for the instruct checkpoint). Reference data only."""
DREAM_7B_VOCAB = 152064

DEFAULT_ROPE_THETA = 1_000_000.0
"""RoPE base used only when a Dream config.json states neither ``rope_theta`` nor ``rope_parameters``."""
DEFAULT_RMS_EPS = 1e-6
ARCHITECTURE = "DreamModel"
MODEL_TYPES = ("Dream", "dream")

_KEYS = (
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
"""Config keys Dream shares with Qwen2 (copied both ways)."""


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
    from transformers import Qwen2Config

    kwargs = {k: raw[k] for k in _KEYS if k in raw}
    kwargs.setdefault("rms_norm_eps", DEFAULT_RMS_EPS)
    rope = raw.get("rope_parameters") or {
        "rope_type": "default",
        "rope_theta": float(raw.get("rope_theta", DEFAULT_ROPE_THETA)),
    }
    return Qwen2Config(**kwargs, rope_parameters=dict(rope), use_sliding_window=False, use_cache=False, is_causal=False)


def qwen2_config_to_dream(config: Qwen2Config, template: Mapping[str, Any] | None, dtype: str) -> dict[str, Any]:
    """A Dream ``config.json`` dict for ``config`` (inverse of :func:`dream_config_to_qwen2`)."""
    rope = dict(config.rope_parameters or {})
    out: dict[str, Any] = dict(template or {})
    out.update({k: getattr(config, k) for k in _KEYS})
    out.update(
        model_type="Dream",
        architectures=[ARCHITECTURE],
        rope_theta=float(rope.get("rope_theta", DEFAULT_ROPE_THETA)),
        use_sliding_window=False,
        use_cache=False,
        torch_dtype=dtype,
    )
    out.pop("rope_parameters", None)
    return out


DREAM = register_family(
    Family(
        name="dream",
        original_model_types=MODEL_TYPES,
        converted_model_type="qwen2",
        model_class_path="transformers:Qwen2ForCausalLM",
        config_class_path="transformers:Qwen2Config",
        converted_architecture="Qwen2ForCausalLM",
        shift_logits=True,
        tokens=TOKENS,
        # Dream's tensor names are Qwen2's, so the published target list matches every projection.
        papers_lora=ALL_PROJECTIONS,
        to_config=dream_config_to_qwen2,
        from_config=qwen2_config_to_dream,
        known_ids=DREAM_7B_IDS,
        known_vocab=DREAM_7B_VOCAB,
    )
)


def load_dream_policy(model: str, **options: Any) -> HFPolicy:
    """Load a Dream checkpoint (local folder or hub id) as a trainable policy.

    ``options`` are the fields of :class:`~dmpo.backends.hf_policy.HFBackendOptions`; LoRA
    ``"papers"`` adapts every projection here (Dream's names are the ones the published
    recipes list).

    Raises:
        CheckpointError: the folder is not a loadable Dream checkpoint (names the file).
        ConfigError: invalid options (all reported at once).
    """
    return load_hf_policy(DREAM, model, HFBackendOptions.from_options(options))


@dmpo_core.hookimpl
def register_backends(register: Any) -> None:
    """Register the ``dream`` backend."""
    register("dream", load_dream_policy, options=HFBackendOptions, resolve_model=builtin.resolve,
             help="Dream checkpoints as bidirectional Qwen2 (logits shifted)")
