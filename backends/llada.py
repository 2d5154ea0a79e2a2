"""The ``llada`` backend: LLaDA checkpoints (GSAI-ML LLaDA-8B-Base/Instruct, LLaDA-1.5).

Reads the ORIGINAL layout (config.json with ``d_model``, ``n_layers`` ...; tensors
``model.transformer.blocks.N.*``) or one already converted to the Llama layout, renames
config and tensors at load time (tables in :mod:`dmpo.backends.formats`) and runs the
model as a stock ``transformers.LlamaForCausalLM`` with ``is_causal=False``: no remote
code. Unlike the original code it honours the attention mask (left padding), see
:mod:`dmpo.backends.hf_policy`. LLaDA's ``rope: false`` variant (learned absolute
positions, which the built-in tiny model uses) runs on a small subclass, see
:mod:`dmpo.backends.llada_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dmpo_core

if TYPE_CHECKING:  # transformers is imported on the first load, not when plugins register
    from dmpo.backends.hf_policy import HFPolicy, LoraSettings


def load_llada_policy(
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
    """Load a LLaDA checkpoint (local folder or hub id) as a trainable policy.

    Args:
        model: checkpoint folder (original or converted layout) or hub id.
        dtype: ``float32``, ``bfloat16`` or ``float16``.
        device: ``cpu`` (default), ``cuda``, ``cuda:1`` ...; excludes ``device_map``.
        device_map: a transformers device map such as ``"auto"``.
        attn_implementation: ``sdpa`` (default), ``eager`` or ``flex_attention``.
        gradient_checkpointing: recompute activations in backward.
        lora: ``"papers"`` (q, k, v, up: what the published recipes adapted on LLaDA),
            ``"all"`` (every projection), a mapping of :class:`LoraSettings` fields, or None.
        lora_r, lora_alpha, lora_dropout: override the LoRA defaults (128, 64, 0.05).
        reference: keep a reference policy (a frozen copy when LoRA is off).
        load_in_4bit: 4-bit base weights (CUDA + bitsandbytes, with LoRA only).
        revision: hub revision for hub ids.

    Raises:
        CheckpointError: the folder is not a loadable LLaDA checkpoint (names the file).
        ConfigError: invalid options (all reported at once).
    """
    from dmpo.backends.formats import LLADA
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
    return load_hf_policy(LLADA, model, options)


@dmpo_core.hookimpl
def register_backends(register):
    """Register the ``llada`` backend."""
    register("llada", load_llada_policy, help="LLaDA checkpoints (original or Llama layout) as bidirectional Llama")
