"""Gradient checkpointing on the LLaDA and Dream backends, full fine-tuning and LoRA.

Peers' users hit "does not support gradient checkpointing" on these families (custom model
code); on the stock transformers classes it must switch on and leave every gradient as it was.
"""

from __future__ import annotations

import pytest
import torch
from dmpo.backends.dream import load_dream_policy
from dmpo.backends.llada import load_llada_policy

LOADERS = {"llada": load_llada_policy, "dream": load_dream_policy}


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(5, 40, (2, 12), generator=g)  # [2, 12]
    mask = torch.ones_like(ids, dtype=torch.bool)  # [2, 12]
    mask[0, :3] = False  # left padding in row 0
    return ids, mask


def _gradients(family: str, folder: str, *, checkpointing: bool, lora: str | None) -> torch.Tensor:
    torch.manual_seed(0)  # LoRA's random initialisation, the same in both runs
    policy = LOADERS[family](folder, gradient_checkpointing=checkpointing, reference=False, lora=lora,
                             **({"lora_dropout": 0.0} if lora else {})).train()
    net = policy.model.get_base_model() if lora else policy.model
    assert net.is_activation_checkpointing == checkpointing
    ids, mask = _batch()
    policy.logits(ids, mask).logsumexp(-1).mean().backward()
    params = list(policy.trainable_parameters())
    assert params and all(p.grad is not None for p in params)
    return torch.cat([p.grad.flatten() for p in params])  # [n_trainable]


@pytest.mark.parametrize("lora", [None, "all"], ids=["full", "lora"])
@pytest.mark.parametrize("family", ["llada", "dream"])
def test_checkpointing_keeps_the_gradients(family, lora, tiny_llada, tiny_dream):
    folder = str(tiny_llada if family == "llada" else tiny_dream)
    plain = _gradients(family, folder, checkpointing=False, lora=lora)
    recomputed = _gradients(family, folder, checkpointing=True, lora=lora)
    assert plain.abs().max() > 0
    assert (plain - recomputed).abs().max() < 1e-6
