"""Small stand-ins for a backend and a task, so the loop is tested without transformers.

FakePolicy: a bidirectional one-layer model (embedding, mean-pooled context, linear head)
that satisfies the Policy contract. DigitTask: copy the prompt's digits (reward = fraction
of digits copied).
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping, Sequence

import torch

from dmpo_core.rewards import RewardComponent

CHARS = "0123456789=?"
MASK, EOS, PAD = len(CHARS), len(CHARS) + 1, len(CHARS) + 2
VOCAB = len(CHARS) + 3


class CharTokenizer:
    """One token per character of CHARS; MASK/EOS/PAD are special."""

    chat_template = None

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [CHARS.index(c) for c in text]}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "".join(CHARS[i] for i in ids if i < len(CHARS))


class TinyNet(torch.nn.Module):
    def __init__(self, dim: int = 16, length: int = 16) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(VOCAB, dim)
        self.pos = torch.nn.Embedding(length, dim)
        self.mix = torch.nn.Linear(2 * dim, dim)
        self.head = torch.nn.Linear(dim, VOCAB)

    def forward(self, ids: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        s = ids.shape[1]
        h = self.emb(ids) + self.pos(torch.arange(s) % self.pos.num_embeddings)  # [N, S, D]
        w = attn.float()[..., None]  # [N, S, 1]
        ctx = (h * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1)  # [N, 1, D]
        h = torch.tanh(self.mix(torch.cat([h, ctx.expand_as(h)], dim=-1)))  # [N, S, D]
        return self.head(h)  # [N, S, V]


class FakePolicy:
    mask_id, eos_id, pad_id, eot_id = MASK, EOS, PAD, None
    stop_ids = (EOS,)

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = TinyNet()
        self.ref = copy.deepcopy(self.model).requires_grad_(False)
        self.tokenizer = CharTokenizer()
        self.training = False

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def logits(self, input_ids, attention_mask, *, last=None):
        out = self.model(input_ids, attention_mask)
        return out[:, -last:] if last else out

    @torch.no_grad()
    def reference_logits(self, input_ids, attention_mask, *, last=None):
        out = self.ref(input_ids, attention_mask)
        return out[:, -last:] if last else out

    def trainable_parameters(self):
        return iter(self.model.parameters())

    def sync_reference(self) -> None:
        self.ref.load_state_dict(self.model.state_dict())

    def train(self, mode: bool = True):
        self.training = mode
        self.model.train(mode)
        return self

    def save(self, path: str, *, format=None) -> None:
        os.makedirs(path, exist_ok=True)
        torch.save(self.model.state_dict(), os.path.join(path, "model.pt"))
        with open(os.path.join(path, "config.json"), "w") as fh:
            json.dump({"fake": True}, fh)


def _copied(completion: str, item: Mapping) -> float:
    want = item["digits"]
    return sum(a == b for a, b in zip(completion, want)) / len(want)


class DigitTask:
    name = "digits"

    def __init__(self, length: int = 4, n_train: int = 32, n_test: int = 8, bad_reward_every: int = 0) -> None:
        g = torch.Generator().manual_seed(1)
        all_items = ["".join(str(int(d)) for d in torch.randint(0, 10, (length,), generator=g)) for _ in range(n_train + n_test)]
        self._train = [{"digits": d} for d in all_items[:n_train]]
        self._test = [{"digits": d} for d in all_items[n_train:]]
        self.bad_reward_every = bad_reward_every
        self._calls = 0

    def train_items(self):
        return self._train

    def test_items(self):
        return self._test

    def prompt(self, item, tokenizer) -> str:
        return item["digits"] + "="

    def _reward(self, prompts, completions, items):
        out = []
        for c, it in zip(completions, items):
            self._calls += 1
            if self.bad_reward_every and self._calls % self.bad_reward_every == 0:
                raise RuntimeError("reward bug on this completion")
            out.append(_copied(c, it))
        return out

    def reward_components(self):
        return [RewardComponent(name="copy", weight=1.0, fn=self._reward)]

    def extract_answer(self, completion: str):
        return completion or None

    def correctness(self, completion, item) -> float:
        return _copied(completion, item)

    def score(self, completion, item) -> float:
        return _copied(completion, item)

    def completion_prefill(self, item, tokenizer, gen_length, mask_id):
        return None

    def relevant_positions(self, item, length):
        return None

    def metric(self, completions, items):
        scores = [self.score(c, it) for c, it in zip(completions, items)]
        return {"accuracy": sum(scores) / max(len(scores), 1), "n": float(len(scores))}
