"""The ``dream`` backend: Dream checkpoints (Dream-org Dream-v0-Base/Instruct-7B).

Dream stores Qwen2 tensors (q/k/v biases, grouped key/value heads) under
``model_type "Dream"``; it runs here as a stock ``transformers.Qwen2ForCausalLM`` with
``is_causal=False`` (no remote code). Dream was initialised from an autoregressive model,
so the hidden state at i-1 predicts token i: the policy shifts the logits
(``cat([logits[:, :1], logits[:, :-1]], 1)``) so callers always see "logits at i predict
token i". Position ids are ``cumsum(attention_mask) - 1`` and the mask is honoured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dmpo_core

if TYPE_CHECKING:  # transformers is imported on the first load, not when plugins register
    from dmpo.backends.hf_policy import HFPolicy, LoraSettings


def load_dream_policy(
    model: str,
    *,
    dtype: str = "float32",
    device: str | None = None,
    device_map: str | dict[str, Any] | None = None,
    attn_implementation: str = "sdpa",
    gradient_checkpointing: bool = False,
    lora: LoraSettings | str | Mapping[str, Any] | None = None,
    lora_r: int | None = None,
    lora_alpha: float | None = None,
    lora_dropout: float | None = None,
    reference: bool = True,
    load_in_4bit: bool = False,
    revision: str | None = None,
) -> HFPolicy:
    """Load a Dream checkpoint (local folder or hub id) as a trainable policy.

    Options as :func:`dmpo.backends.llada.load_llada_policy`; LoRA ``"papers"`` adapts
    every projection here (Dream's names are the ones the published recipes list).

    Raises:
        CheckpointError: the folder is not a loadable Dream checkpoint (names the file).
        ConfigError: invalid options (all reported at once).
    """
    from dmpo.backends.formats import DREAM
    from dmpo.backends.hf_policy import load_hf_policy, make_options

    options = make_options(
        dtype=dtype,
        device=device,
        device_map=device_map,
        attn_implementation=attn_implementation,
        gradient_checkpointing=gradient_checkpointing,
        lora=lora,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        reference=reference,
        load_in_4bit=load_in_4bit,
        revision=revision,
    )
    return load_hf_policy(DREAM, model, options)


@dmpo_core.hookimpl
def register_backends(register):
    """Register the ``dream`` backend."""
    register("dream", load_dream_policy, help="Dream checkpoints as bidirectional Qwen2 (logits shifted)")
