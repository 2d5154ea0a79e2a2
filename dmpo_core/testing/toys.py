"""A toy backend and a toy task, small enough to train a plugin's component for a few steps
on a CPU in about a second: what the contract suites of :mod:`dmpo_core.testing.plugin_kit`
run a new sampler, weighting scheme, objective, engine or task against.

* :class:`ByteTokenizer`: one token per UTF-8 byte (any task's text encodes), plus the
  mask, end-of-text and padding tokens.
* :class:`ToyPolicy`: a bidirectional one-layer model (byte and position embeddings, a
  mean-pooled context, a linear head) that satisfies :class:`dmpo_core.contracts.Policy`.
* :class:`CopyDigitsTask`: copy the prompt's digits; the reward and the metric are the
  fraction of digits copied.

:data:`TOY_PLUGIN` registers both (backend ``toy``, task ``toy-copy``), for
:func:`dmpo_core.registry.build_registry` (``plugins=[("toy", TOY_PLUGIN)]``).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import torch

from dmpo_core.hookspecs import hookimpl
from dmpo_core.rewards import RewardComponent

MASK_ID, EOS_ID, PAD_ID = 256, 257, 258
VOCAB = 259


class ByteTokenizer:
    """UTF-8 bytes as tokens 0-255; ids 256-258 are mask, end of text and padding."""

    chat_template = None
    mask_token_id, eos_token_id, pad_token_id = MASK_ID, EOS_ID, PAD_ID

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict[str, list[int]]:
        return {"input_ids": list(text.encode("utf-8"))}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", errors="replace")


class ToyNet(torch.nn.Module):
    """Embeddings, a mean-pooled context over the attended positions, a linear head."""

    def __init__(self, dim: int = 16, positions: int = 64) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, dim)
        self.pos = torch.nn.Embedding(positions, dim)
        self.mix = torch.nn.Linear(2 * dim, dim)
        self.head = torch.nn.Linear(dim, VOCAB)

    def forward(self, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        where = (attn.long().cumsum(1) - 1).clamp_min(0) % self.pos.num_embeddings  # [N, S]: left padding skipped
        h = self.emb(ids) + self.pos(where)  # [N, S, D]
        w = attn.float()[..., None]  # [N, S, 1]
        ctx = (h * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1)  # [N, 1, D]
        h = torch.tanh(self.mix(torch.cat([h, ctx.expand_as(h)], dim=-1)))  # [N, S, D]
        return self.head(h)  # [N, S, V]


class ToyPolicy:
    """A :class:`~dmpo_core.contracts.Policy` around :class:`ToyNet` and a frozen copy (the reference)."""

    mask_id, eos_id, pad_id, eot_id = MASK_ID, EOS_ID, PAD_ID, None
    stop_ids = (EOS_ID,)  # eos ends a completion (add the end-of-turn id when the tokenizer has one)

    def __init__(self, seed: int = 0) -> None:
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        self.model = ToyNet()
        torch.random.set_rng_state(gen_state)  # building a toy leaves the caller's global RNG alone
        self.ref = copy.deepcopy(self.model).requires_grad_(False)
        self.tokenizer = ByteTokenizer()

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, last: int | None = None) -> torch.Tensor:
        out = self.model(input_ids, attention_mask)  # [N, S, V]
        return out[:, -last:] if last else out

    @torch.no_grad()
    def reference_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                         last: int | None = None) -> torch.Tensor:
        out = self.ref(input_ids, attention_mask)  # [N, S, V]
        return out[:, -last:] if last else out

    def trainable_parameters(self) -> Iterator[torch.nn.Parameter]:
        return iter(self.model.parameters())

    def sync_reference(self) -> None:
        self.ref.load_state_dict(self.model.state_dict())

    def train(self, mode: bool = True) -> ToyPolicy:
        self.model.train(mode)
        return self

    def save(self, path: str, *, format: str | None = None) -> None:
        os.makedirs(path, exist_ok=True)
        torch.save(self.model.state_dict(), os.path.join(path, "toy.pt"))
        with open(os.path.join(path, "config.json"), "w", encoding="utf-8") as fh:
            json.dump({"model_type": "dmpo-toy"}, fh)


def load_toy_policy(model: str = "", seed: int = 0) -> ToyPolicy:
    """A fresh :class:`ToyPolicy`, with the weights of ``model`` when it is a folder :meth:`ToyPolicy.save` wrote."""
    policy = ToyPolicy(seed=seed)
    weights = os.path.join(model, "toy.pt") if model else ""
    if weights and os.path.exists(weights):
        policy.model.load_state_dict(torch.load(weights, weights_only=True))
        policy.sync_reference()
    return policy


def copied_fraction(completion: str, digits: str) -> float:
    """Fraction of ``digits`` that ``completion`` repeats in place: ``("1294", "1234") -> 0.75``."""
    return sum(a == b for a, b in zip(completion, digits)) / len(digits)


class CopyDigitsTask:
    """Copy the prompt's digits: ``"4071="`` should be completed with ``"4071"``."""

    name = "toy-copy"

    def __init__(self, length: int = 4, n_train: int = 32, n_test: int = 8) -> None:
        gen = torch.Generator().manual_seed(1)
        rows = torch.randint(0, 10, (n_train + n_test, length), generator=gen).tolist()
        digits = ["".join(map(str, r)) for r in rows]
        self._train = [{"digits": d} for d in digits[:n_train]]
        self._test = [{"digits": d} for d in digits[n_train:]]

    def train_items(self) -> Sequence[Mapping[str, Any]]:
        return self._train

    def test_items(self) -> Sequence[Mapping[str, Any]]:
        return self._test

    def prompt(self, item: Mapping[str, Any], tokenizer: Any) -> str:
        return item["digits"] + "="

    def _reward(self, prompts: Sequence[str], completions: Sequence[str],
                items: Sequence[Mapping[str, Any]]) -> list[float | None]:
        return [copied_fraction(c, it["digits"]) for c, it in zip(completions, items)]

    def reward_components(self) -> Sequence[Any]:
        return [RewardComponent(name="copy", weight=1.0, fn=self._reward)]

    def extract_answer(self, completion: str) -> str | None:
        return completion or None

    def correctness(self, completion: str, item: Mapping[str, Any]) -> float:
        return copied_fraction(completion, item["digits"])

    def score(self, completion: str, item: Mapping[str, Any]) -> float:
        return copied_fraction(completion, item["digits"])

    def completion_prefill(self, item: Mapping[str, Any], tokenizer: Any, gen_length: int,
                           mask_id: int) -> Sequence[int] | None:
        return None

    def relevant_positions(self, item: Mapping[str, Any], length: int) -> Sequence[bool] | None:
        return None

    def metric(self, completions: Sequence[str], items: Sequence[Mapping[str, Any]]) -> dict[str, float]:
        scores = [self.score(c, it) for c, it in zip(completions, items)]
        return {"accuracy": sum(scores) / max(len(scores), 1)}


@hookimpl
def _register_backends(register: Any) -> None:
    register("toy", load_toy_policy, help="a one-layer byte-level toy model (dmpo_core.testing.toys)")


@hookimpl
def _register_tasks(register: Any) -> None:
    register("toy-copy", CopyDigitsTask, help="copy the prompt's digits (dmpo_core.testing.toys)")


#: A plugin object registering backend ``toy`` and task ``toy-copy``.
TOY_PLUGIN = SimpleNamespace(register_backends=_register_backends, register_tasks=_register_tasks)
