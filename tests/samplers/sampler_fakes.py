"""Fake LogitsFn models for the sampler tests (no network, no real model).

Letters: N rows, P prompt length, L completion length, V vocabulary.
"""

from __future__ import annotations

import torch


class TableLogits:
    """Logits that ignore the input: a fixed ``table [L, V]`` for every row.

    Records every call's inputs, so tests can replay the decoding step by step.
    """

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table  # [L, V]
        self.inputs: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.lasts: list[int | None] = []

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None) -> torch.Tensor:
        self.inputs.append(input_ids.clone())  # [N, P+L]
        self.masks.append(attention_mask.clone())  # [N, P+L]
        self.lasts.append(last)
        n = input_ids.shape[0]
        return self.table.expand(n, *self.table.shape).clone()  # [N, L, V]


def answer_table(answer: list[int], vocab: int, *, margin: float = 6.0, confidence: list[float] | None = None) -> torch.Tensor:
    """A table ``[L, V]`` whose argmax at position i is ``answer[i]``.

    ``confidence[i]`` (optional) scales the margin of position i, so the positions'
    confidences are ordered like ``confidence``.
    """
    length = len(answer)
    table = torch.zeros(length, vocab)  # [L, V]
    for i, tok in enumerate(answer):
        table[i, tok] = margin * (confidence[i] if confidence else 1.0)
    return table


class ContextLogits:
    """Logits that depend on the input: ``W[i] + U * (committed completion tokens in the row)``.

    Used where the log-probability of a token must depend on the state it was decoded in.
    """

    def __init__(self, length: int, vocab: int, mask_id: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(length, vocab, generator=g)  # [L, V]
        self.u = torch.randn(vocab, generator=g) * 0.5  # [V]
        self.length = length
        self.mask_id = mask_id
        self.calls = 0

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None) -> torch.Tensor:
        self.calls += 1
        completion = input_ids[:, -self.length :]  # [N, L]
        done = (completion != self.mask_id).sum(dim=1).float()  # [N]
        return self.w[None] + done[:, None, None] * self.u[None, None]  # [N, L, V]


def prompt(n: int, p: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt ids ``[N, P]`` (token 0) with the first position of odd rows padded."""
    ids = torch.zeros(n, p, dtype=torch.long)  # [N, P]
    mask = torch.ones(n, p, dtype=torch.bool)  # [N, P]
    mask[1::2, 0] = False
    return ids, mask


def commits_per_step(fake: TableLogits, final: torch.Tensor, mask_id: int) -> list[torch.Tensor]:
    """New commits ``[N, L]`` bool of each step, from the recorded inputs and the final completion."""
    length = final.shape[1]
    states = [x[:, -length:] for x in fake.inputs] + [final]  # each [N, L]
    return [(states[s] == mask_id) & (states[s + 1] != mask_id) for s in range(len(states) - 1)]
