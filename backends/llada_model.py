"""The model class of the ``llada`` backend: a bidirectional transformers Llama, plus the
learned absolute position embeddings that LLaDA's config schema defines for ``rope: false``.

LLaDA's model code (inherited from OLMo) builds ``transformer.wpe``, an embedding of
``max_sequence_length`` rows added to the token embeddings before the first block, when
both ``rope`` and ``alibi`` are false. Its forward then asserts ``rope``, so the released
checkpoints and LLaDA's own code always use RoPE; here both work:

* ``position_embedding_type == "rope"`` (every released LLaDA): exactly the stock
  ``LlamaForCausalLM``; a checkpoint saved in the converted layout loads in it.
* ``"absolute"`` (``rope: false``): no rotation, ``wpe(position_ids)`` added to the token
  embeddings. Tiny models trained from scratch on grid puzzles learn several times faster
  with it (docs/results.md); no stock transformers class has it, so such a model is
  saved in the original LLaDA layout only.

Position ids are ``cumsum(attention_mask) - 1`` (set by the policy), so a left-padded row
sees the same positions as the unpadded one; LLaDA's code counts from the first column.
The position-embedding names (``ABSOLUTE`` ...) live in :mod:`dmpo.backends.llada`, which
imports no transformers; they are re-exported here.
"""

from __future__ import annotations

from typing import Any

import torch
from dmpo.backends.llada import ABSOLUTE, POSITION_EMBEDDING_TYPES, position_embedding_type
from transformers import LlamaConfig, LlamaForCausalLM

from dmpo_core.errors import InvalidArgumentError

__all__ = ["ABSOLUTE", "POSITION_EMBEDDING_TYPES", "LLaDALlamaForCausalLM", "NoRotation", "position_embedding_type"]


class NoRotation(torch.nn.Module):
    """Stands in for Llama's rotary embedding: ``cos = 1``, ``sin = 0`` (q and k unchanged)."""

    def __init__(self, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (*position_ids.shape, self.head_dim)  # [N or 1, S, Dh]
        ones = torch.ones(shape, dtype=x.dtype, device=x.device)
        return ones, torch.zeros_like(ones)


class LLaDALlamaForCausalLM(LlamaForCausalLM):
    """``LlamaForCausalLM`` (run with ``is_causal=False``) that also supports LLaDA's
    learned absolute position embeddings (``model.wpe [max_position_embeddings, d]``)."""

    config_class = LlamaConfig

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        kind = position_embedding_type(config)
        if kind not in POSITION_EMBEDDING_TYPES:
            raise InvalidArgumentError("position_embedding_type", kind, f"use one of {', '.join(POSITION_EMBEDDING_TYPES)}")
        if kind == ABSOLUTE:
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
            self.model.wpe = torch.nn.Embedding(config.max_position_embeddings, config.hidden_size)
            self.model.rotary_emb = NoRotation(head_dim)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        """Llama's forward; with absolute positions the token embeddings ``[N, S, d]`` get
        ``wpe(position_ids)`` added first (positions ``0..S-1`` when none are given)."""
        if position_embedding_type(self.config) == ABSOLUTE:
            if inputs_embeds is None:
                inputs_embeds = self.model.embed_tokens(input_ids)  # [N, S, d]
                input_ids = None
            s = inputs_embeds.shape[1]
            if position_ids is None:
                position_ids = torch.arange(s, device=inputs_embeds.device)[None]  # [1, S]
            rows = self.model.wpe.num_embeddings
            if s > rows:
                raise InvalidArgumentError(
                    "input_ids", f"{s} positions", f"this model has absolute position embeddings for {rows} (max_sequence_length)"
                )
            inputs_embeds = inputs_embeds + self.model.wpe(position_ids)  # [N, S, d]
        return super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            **kwargs,
        )
